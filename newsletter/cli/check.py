"""`newsletter check`: one line per finding about the setup, before the first send."""

from __future__ import annotations

import click

from newsletter.cli.context import CliContext, newsletter_option, pass_context
from newsletter.cli.root import main
from newsletter.preflight import Level, run_checks

_STYLE = {Level.OK: "green", Level.WARNING: "yellow", Level.ERROR: "red"}


@main.command()
@newsletter_option
@pass_context
def check(ctx: CliContext) -> None:
    """Check configuration, secrets, DKIM, transport, database and templates before a send.

    Exit status 1 if any finding is an error. Nothing is sent or stored.
    """
    findings = run_checks(ctx.app(check_schema=False))
    for finding in findings:
        level = click.style(f"{finding.level.value:<7}", fg=_STYLE[finding.level])
        click.echo(f"{level} {finding.topic}: {finding.message}")
    errors = sum(f.level is Level.ERROR for f in findings)
    warnings = sum(f.level is Level.WARNING for f in findings)
    click.echo(f"{errors} error(s), {warnings} warning(s).")
    if errors:
        raise click.exceptions.Exit(1)
