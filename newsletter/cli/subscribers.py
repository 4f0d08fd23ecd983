"""`newsletter subscribers ...`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from newsletter.bounces.reports import neutralise
from newsletter.cli.context import CliContext, pass_context
from newsletter.cli.root import main
from newsletter.db.models import SubscriberStatus
from newsletter.errors import InputError
from newsletter.subscribers.csv import ImportReport, export_csv, import_csv
from newsletter.subscribers.rules import Suppression, add_address, listing, unsubscribe_address


@main.group()
def subscribers() -> None:
    """Import, export and change the subscriber list."""


@subscribers.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check the file and report; change nothing.")
@pass_context
def import_(ctx: CliContext, file: Path, dry_run: bool) -> None:
    """Import subscribers from a CSV file (email, name, status, subscribed_at)."""
    report = import_csv(ctx.app(), file, dry_run=dry_run)
    _print_import(report)
    if not report.valid:
        # A file of rejected rows is most likely the wrong file: a script must notice.
        raise InputError(f"{file}: no valid row was found; nothing was imported")


def _print_import(report: ImportReport) -> None:
    for notice in report.notices:
        click.echo(f"Notice: {notice}", err=True)
    for line, reason in report.reasons:
        click.echo(f"line {line}: {reason}", err=True)
    if report.invalid > len(report.reasons):
        click.echo(f"... and {report.invalid - len(report.reasons)} more invalid rows", err=True)
    prefix = "Dry run, nothing written: " if report.dry_run else ""
    click.echo(
        f"{prefix}added {report.added}, updated {report.updated}, "
        f"unchanged {report.unchanged}, suppressed {report.suppressed}, "
        f"invalid {report.invalid}"
        + (f", duplicates merged {report.merged}" if report.merged else "")
    )


@subscribers.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="File.")
@pass_context
def export(ctx: CliContext, output: Path | None) -> None:
    """Write all subscribers as CSV (to standard output without -o)."""
    if output is None:
        export_csv(ctx.app(), sys.stdout)
        return
    with open(output, "w", encoding="utf-8", newline="") as handle:
        count = export_csv(ctx.app(), handle)
    click.echo(f"Wrote {count} subscribers to {output}.", err=True)


@subscribers.command()
@click.argument("email")
@click.option("--name", default="", help="Display name.")
@click.option("--force", is_flag=True, help="Lift a bounce or complaint judged wrong.")
@pass_context
def add(ctx: CliContext, email: str, name: str, force: bool) -> None:
    """Add one subscriber, active (an unsubscribed or bounced one stays so).

    A bounce or complaint report may be wrong: --force lifts the suppression it made. A
    reader's own unsubscribe is never lifted; only the reader can subscribe again.
    """
    change = add_address(ctx.app(), email, name, force=force)
    subscriber, held = change.subscriber, change.suppression
    if change.lifted and held is not None:
        click.echo(f"{subscriber.email} is active again; lifted: {_describe(held)}.")
    elif held is not None and held.by_report:
        click.echo(f"{subscriber.email} stays {held.status.value}: {_describe(held)}.")
        click.echo(
            f"If that was wrong, lift it with: newsletter subscribers add {subscriber.email} "
            "--force",
            err=True,
        )
    elif subscriber.status.suppressed:
        click.echo(f"{subscriber.email} is {subscriber.status.value}; left unchanged.")
    elif change.changed:
        click.echo(f"{subscriber.email} is {subscriber.status.value}.")
    else:
        click.echo(f"{subscriber.email} was already {subscriber.status.value}.")


@subscribers.command()
@click.argument("email")
@click.option("--force", is_flag=True, help="Record a bounced address as unsubscribed instead.")
@pass_context
def unsubscribe(ctx: CliContext, email: str, force: bool) -> None:
    """Unsubscribe one address.

    A bounced address stays bounced unless --force lifts the bounce (judged wrong) and records
    it as unsubscribed, which, unlike a bounce, the reader can undo.
    """
    change = unsubscribe_address(ctx.app(), email, force=force)
    subscriber, held = change.subscriber, change.suppression
    if change.lifted and held is not None:
        click.echo(f"Unsubscribed {subscriber.email}; lifted: {_describe(held)}.")
    elif held is not None:
        click.echo(f"{subscriber.email} stays bounced: {_describe(held)}; nothing changed.")
        click.echo(
            "If the bounce was wrong, lift it with --force (here: record it as unsubscribed; "
            f"or make it active with: newsletter subscribers add {subscriber.email} --force)",
            err=True,
        )
    elif change.changed:
        click.echo(f"Unsubscribed {email.strip()}.")
    else:
        click.echo(f"{email.strip()} was not subscribed; nothing changed.")


def _describe(held: Suppression) -> str:
    """The suppression's record, whose detail and evidence were written by a stranger."""
    return neutralise(held.describe(), limit=600)


@subscribers.command("list")
@click.option(
    "--status",
    type=click.Choice([s.value for s in SubscriberStatus]),
    help="Only subscribers with this status.",
)
@pass_context
def list_(ctx: CliContext, status: str | None) -> None:
    """Show subscribers as a table."""
    rows = listing(ctx.app(), SubscriberStatus(status) if status else None)
    click.echo(f"{'EMAIL':40} {'NAME':28} {'STATUS':12} SUBSCRIBED")
    count = 0
    for row in rows:
        click.echo(
            f"{row.email[:40]:40} {row.name[:28]:28} {row.status.value:12} "
            f"{row.subscribed_at:%Y-%m-%d}"
        )
        count += 1
    click.echo(f"{count} subscriber(s)", err=True)
