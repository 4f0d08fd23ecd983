"""`newsletter init`."""

from __future__ import annotations

import click

from newsletter.cli.context import CliContext, pass_context
from newsletter.cli.root import main
from newsletter.db.session import upgrade


@main.command()
@pass_context
def init(ctx: CliContext) -> None:
    """Create the database, or migrate it to the current schema."""
    app = ctx.app(check_schema=False)
    before, after = upgrade(app.engine, app.settings.default_newsletter.slug)
    if before == after:
        click.echo(f"Database is up to date (schema {after}).")
    else:
        click.echo(f"Database migrated from {before or 'empty'} to schema {after}.")
