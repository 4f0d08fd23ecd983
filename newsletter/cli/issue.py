"""Commands for the week's issue; registered on `main` by importing this module."""

from __future__ import annotations

from .root import main


@main.group()
def issue() -> None:
    """Build, review and adjust the week's issue."""
