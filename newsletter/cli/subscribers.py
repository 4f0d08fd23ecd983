"""`newsletter subscribers ...`."""

from __future__ import annotations

from .root import main


@main.group()
def subscribers() -> None:
    """Import, export and change the subscriber list."""
