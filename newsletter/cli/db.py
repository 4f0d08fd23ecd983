"""`newsletter db copy URL`."""

from __future__ import annotations

import click
from sqlalchemy.engine import make_url

from newsletter.cli.context import CliContext, pass_context
from newsletter.cli.root import main
from newsletter.db.copy import copy_database
from newsletter.db.session import make_engine


@main.group()
def db() -> None:
    """Move the stored data to another database."""


@db.command()
@click.argument("url")
@pass_context
def copy(ctx: CliContext, url: str) -> None:
    """Copy everything into the empty database at URL (migrated first), e.g. from SQLite to
    PostgreSQL; then point [database] url at it."""
    source = ctx.app()
    target = make_engine(url)
    try:
        report = copy_database(source.engine, target)
    finally:
        target.dispose()
    for table, count in report.counts.items():
        click.echo(f"{table:16} {count:>9}")
    shown = make_url(url).render_as_string(hide_password=True)
    click.echo(f"Copied {sum(report.counts.values())} rows into {shown}.")
