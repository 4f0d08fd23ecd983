"""`newsletter articles fetch|list`."""

from __future__ import annotations

import click

from newsletter.cli.context import CliContext, newsletter_option, pass_context
from newsletter.cli.issue import week_option
from newsletter.cli.root import main
from newsletter.cli.tables import print_table, when
from newsletter.errors import UsageError
from newsletter.feeds.store import FeedReport, fetch_sources
from newsletter.issue.listing import list_articles
from newsletter.issue.periods import Week
from newsletter.untrusted import for_terminal


@main.group()
def articles() -> None:
    """Read the publication's feeds and look at the stored articles."""


@articles.command()
@click.argument("sources", nargs=-1, metavar="[SOURCE]...")
@pass_context
def fetch(ctx: CliContext, sources: tuple[str, ...]) -> None:
    """Ingest feeds: each SOURCE is a URL or a file (default: [feeds] urls).

    Exits with status 1 when any feed failed; the others are still stored.
    """
    chosen = sources or ctx.settings.feeds.urls
    if not chosen:
        raise UsageError("no SOURCE given and [feeds] urls is empty")
    reports = fetch_sources(ctx.app(), chosen)
    for report in reports:
        if report.ok:
            click.echo(_summary(report))
        else:
            click.echo(
                f"error: {for_terminal(report.source)}: {for_terminal(report.error)}", err=True
            )
    if not all(report.ok for report in reports):
        raise click.exceptions.Exit(1)


def _summary(report: FeedReport) -> str:
    source = for_terminal(report.source)
    if report.not_modified:
        return f"{source}: not modified"
    parts = [f"{report.new} new", f"{report.updated} updated", f"{report.unchanged} unchanged"]
    if report.kept:
        parts.append(f"{report.kept} already sent (left as sent)")
    if report.skipped:
        parts.append(f"{report.skipped} skipped (no link or title)")
    return f"{source}: {', '.join(parts)}"


@articles.command(name="list")
@newsletter_option
@week_option
@pass_context
def list_command(ctx: CliContext, week: Week | None) -> None:
    """The articles published in the week, newest first."""
    chosen, rows = list_articles(ctx.app(), week)
    zone = ctx.settings.newsletter.zone
    if not rows:
        click.echo(f"No articles published in {chosen}.")
        return
    print_table(
        ("ID", "PUBLISHED", "SECTION", "KICKER", "TITLE", "URL"),
        (
            (
                str(r.id),
                when(r.published_at, zone),
                r.section or "-",
                r.kicker or "-",
                r.title,
                r.url,
            )
            for r in rows
        ),
        zone=zone,
    )
