"""`newsletter init`."""

from __future__ import annotations

import click

from ..db.session import upgrade
from .context import CliContext, pass_context
from .root import main


@main.command()
@pass_context
def init(ctx: CliContext) -> None:
    """Create the database, or migrate it to the current schema."""
    app = ctx.app(check_schema=False)
    before, after = upgrade(app.engine)
    if before == after:
        click.echo(f"Database is up to date (schema {after}).")
    else:
        click.echo(f"Database migrated from {before or 'empty'} to schema {after}.")
