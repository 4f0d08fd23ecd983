"""Listings on the terminal: one table renderer, one way to show a time, and text from
strangers made harmless first.

rich measures each cell in terminal columns, so wide (CJK) characters line up and a long
kicker wraps inside its own column instead of pushing the next ones along. Titles, names and
kickers come from feeds and forms: control characters could drive the terminal and bidi
overrides could make a line read other than it is, so every cell goes through
`untrusted.for_terminal`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

import click
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from newsletter.untrusted import for_terminal

WIDTH = 1000  # not a terminal (a pipe, a file): one line per row, for grep and scripts


def when(moment: datetime, zone: ZoneInfo) -> str:
    """A stored (UTC) time in the publication's zone, which the listing names once."""
    return f"{moment.astimezone(zone):%a %Y-%m-%d %H:%M}"


def print_table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], *, zone: ZoneInfo | None = None
) -> None:
    """A header row and the rows, aligned; `zone` names the time zone of the times shown."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, highlight=False)
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*(Text(for_terminal(cell)) for cell in row))
    console = Console(file=sys.stdout, width=None if sys.stdout.isatty() else WIDTH)
    console.print(table)
    if zone is not None:
        click.echo(f"Times are {zone.key}.")
