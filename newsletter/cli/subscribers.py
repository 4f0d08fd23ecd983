"""`newsletter subscribers ...`."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import click

from newsletter.bounces.reports import neutralise
from newsletter.cli.context import CliContext, newsletter_option, pass_context
from newsletter.cli.root import main
from newsletter.db.models import SubscriberStatus
from newsletter.errors import InputError, UsageError
from newsletter.subscribers import privacy
from newsletter.subscribers.choices import Catalogue, split
from newsletter.subscribers.csv import ImportReport, import_csv
from newsletter.subscribers.export import export_csv
from newsletter.subscribers.roster import listing
from newsletter.subscribers.rules import Suppression, add_address, unsubscribe_address
from newsletter.untrusted import for_terminal


@main.group()
def subscribers() -> None:
    """Import, export and change the subscriber list."""


@subscribers.command("import")
@newsletter_option
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check the file and report; change nothing.")
@pass_context
def import_(ctx: CliContext, file: Path, dry_run: bool) -> None:
    """Import subscribers from a CSV file (email, name, status, subscribed_at, newsletters,
    sections).

    Rows that name no newsletter go to --newsletter; without it, new readers get the default
    newsletter and those already held keep what they have.
    """
    report = import_csv(ctx.app(), file, dry_run=dry_run, newsletter=ctx.newsletter)
    _print_import(report)
    if not report.valid:
        # A file of rejected rows is most likely the wrong file: a script must notice.
        raise InputError(f"{file}: no valid row was found; nothing was imported")


def _print_import(report: ImportReport) -> None:
    click.echo(f"Read as {report.encoding}.", err=True)
    if report.mapped:
        click.echo(f"Columns: {', '.join(report.mapped)}.", err=True)
    for notice in report.notices:
        click.echo(f"Notice: {for_terminal(notice)}", err=True)
    for line, reason in report.reasons:
        click.echo(f"line {line}: {for_terminal(reason)}", err=True)
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
@newsletter_option
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="File (- for standard output).",
)
@pass_context
def export(ctx: CliContext, output: Path | None) -> None:
    """Write all subscribers as CSV (to standard output without -o, or with -o -).

    With --newsletter, only the readers who get or await that newsletter.

    A file gets the values exactly as stored; on standard output, which usually ends at a
    terminal, control and bidi characters are written as escapes (\\x1b, \\u202e).
    """
    if output is None or str(output) == "-":
        export_csv(ctx.app(), sys.stdout, terminal=True, newsletter=ctx.newsletter)
        return
    with open(output, "w", encoding="utf-8", newline="") as handle:
        count = export_csv(ctx.app(), handle, newsletter=ctx.newsletter)
    click.echo(f"Wrote {count} subscribers to {output}.", err=True)


@subscribers.command()
@newsletter_option
@click.argument("email")
@click.option("--name", default="", help="Display name.")
@click.option(
    "--sections",
    metavar='"A;B"',
    help="Only these of the newsletter's sections, separated by ; (default: all of them).",
)
@click.option("--force", is_flag=True, help="Lift a bounce or complaint judged wrong.")
@pass_context
def add(ctx: CliContext, email: str, name: str, sections: str | None, force: bool) -> None:
    """Add one subscriber to the newsletter, active (an unsubscribed or bounced one stays so).

    A bounce or complaint report may be wrong: --force lifts the suppression it made. A
    reader's own unsubscribe is never lifted; only the reader can subscribe again.
    """
    chosen = _sections(ctx, sections)
    change = add_address(ctx.app(), email, name, force=force, sections=chosen)
    subscriber, held = change.subscriber, change.suppression
    shown = for_terminal(subscriber.email)
    if change.lifted and held is not None:
        click.echo(f"{shown} is active again; lifted: {_describe(held)}.")
    elif held is not None and held.by_report:
        click.echo(f"{shown} stays {held.status.value}: {_describe(held)}.")
        click.echo(
            f"If that was wrong, lift it with: newsletter subscribers add {shown} --force",
            err=True,
        )
    elif subscriber.status.suppressed:
        click.echo(f"{shown} is {subscriber.status.value}; left unchanged.")
    elif change.left:
        slug = ctx.settings.newsletter.slug
        click.echo(f"{shown} unsubscribed from {slug}; left unchanged.")
        click.echo(
            "Only the reader can subscribe again, e.g. from their preferences page.", err=True
        )
    elif change.changed:
        click.echo(f"{shown} is {subscriber.status.value}.")
    else:
        click.echo(f"{shown} was already {subscriber.status.value}.")


@subscribers.command()
@newsletter_option
@click.argument("email")
@click.option("--all", "everything", is_flag=True, help="From every newsletter.")
@click.option("--force", is_flag=True, help="Record a bounced address as unsubscribed instead.")
@pass_context
def unsubscribe(ctx: CliContext, email: str, everything: bool, force: bool) -> None:
    """Unsubscribe one address from the newsletter (--all: from every newsletter).

    A bounced address stays bounced unless --force lifts the bounce (judged wrong) and records
    it as unsubscribed, which, unlike a bounce, the reader can undo.
    """
    if everything and ctx.newsletter is not None:
        raise UsageError("--newsletter and --all cannot be used together: choose one")
    change = unsubscribe_address(ctx.app(), email, force=force, everything=everything)
    left = "every newsletter" if everything else ctx.settings.newsletter.slug
    subscriber, held = change.subscriber, change.suppression
    shown = for_terminal(subscriber.email)
    if change.lifted and held is not None:
        click.echo(f"Unsubscribed {shown}; lifted: {_describe(held)}.")
    elif held is not None:
        click.echo(f"{shown} stays bounced: {_describe(held)}; nothing changed.")
        click.echo(
            "If the bounce was wrong, lift it with --force (here: record it as unsubscribed; "
            f"or make it active with: newsletter subscribers add {shown} --force)",
            err=True,
        )
    elif change.changed:
        click.echo(f"Unsubscribed {for_terminal(email.strip())} from {left}.")
    else:
        click.echo(f"{shown} was not subscribed to {left}; nothing changed.")


def _sections(ctx: CliContext, option: str | None) -> tuple[str, ...] | None:
    """`--sections` checked against the sections the newsletter carries."""
    if option is None:
        return None
    slug = ctx.settings.newsletter.slug
    choice, problems = Catalogue.of(ctx.settings).choose([slug], split(option))
    if problems:
        raise UsageError(f"--sections: {'; '.join(problems)}")
    return choice[slug]


def _describe(held: Suppression) -> str:
    """The suppression's record, whose detail and evidence were written by a stranger."""
    return neutralise(held.describe(), limit=600)


@subscribers.command("list")
@newsletter_option
@click.option(
    "--status",
    type=click.Choice([s.value for s in SubscriberStatus]),
    help="Only subscribers with this status.",
)
@pass_context
def list_(ctx: CliContext, status: str | None) -> None:
    """Show subscribers as a table, each with the newsletters they get or await.

    With --newsletter, only that newsletter's readers.
    """
    rows = listing(ctx.app(), SubscriberStatus(status) if status else None, ctx.newsletter)
    click.echo(f"{'EMAIL':40} {'NAME':28} {'STATUS':12} {'SUBSCRIBED':10}  NEWSLETTERS")
    count = 0
    for row in rows:
        email, name = for_terminal(row.email), for_terminal(row.name)
        click.echo(
            f"{email[:40]:40} {name[:28]:28} {row.status.value:12} {row.subscribed_at:%Y-%m-%d}"
            f"  {'; '.join(row.newsletters) or '-'}"
        )
        count += 1
    click.echo(f"{count} subscriber(s)", err=True)


@subscribers.command()
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@pass_context
def show(ctx: CliContext, email: str, as_json: bool) -> None:
    """Everything held about one address: consent, history, deliveries, clicks."""
    data = privacy.held(ctx.app(), email)
    if as_json:
        click.echo(json.dumps(data, default=_iso, indent=2))
        return
    if data["erased"]:
        click.echo(f"{data['email']}: erased; only a keyed hash of the address is kept.")
        return
    click.echo("Consent record:")
    for key, value in data["record"].items():
        click.echo(f"  {key:16} {neutralise(str(_iso(value) if value is not None else '-'))}")
    for title, rows in (
        ("Subscriptions", data["subscriptions"]),
        ("Status history", data["events"]),
        ("Deliveries", data["deliveries"]),
        ("Clicks", data["clicks"]),
    ):
        click.echo(f"{title}: {len(rows) or 'none'}")
        for row in rows:
            cells = (str(_iso(v)) for v in row.values() if v not in (None, "", {}))
            click.echo("  " + neutralise("  ".join(cells)))


def _iso(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


@subscribers.command()
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def forget(ctx: CliContext, email: str, yes: bool) -> None:
    """Erase an address and all that is held about it, keeping only a keyed hash."""
    app = ctx.app()
    if not yes:
        click.confirm(f"Erase {email.strip()} and everything held about it?", abort=True)
    privacy.forget(app, email)
    click.echo(
        f"Erased {email.strip()}; a keyed hash of the address is kept so that an import or "
        "`subscribers add` does not bring it back."
    )
