"""`newsletter stats [--week WEEK] [--json]`."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime

import click

from newsletter.cli.context import CliContext, newsletter_option, pass_context
from newsletter.cli.root import main
from newsletter.delivery.stats import IssueStats, StatsReport, stats_report
from newsletter.delivery.variants import ALL_SECTIONS
from newsletter.issue.periods import Week
from newsletter.tracking.retention import purge
from newsletter.untrusted import for_terminal


@main.command()
@newsletter_option
@click.option("--week", help="Only this ISO week's issue, e.g. 2024-W47 (default: every issue).")
@click.option(
    "--weeks",
    type=click.IntRange(1, 520),
    default=8,
    show_default=True,
    help="Weeks of subscriber growth to show.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of tables.")
@pass_context
def stats(ctx: CliContext, week: str | None, weeks: int, as_json: bool) -> None:
    """Per issue: recipients, sent, failed, deferred, bounced, unsubscribed; and list growth."""
    purge(ctx.app())
    report = stats_report(ctx.app(), Week.parse(week) if week else None, weeks)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(report), default=_iso, indent=2))
    else:
        _print(report)


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _print(report: StatsReport) -> None:
    if not report.issues:
        click.echo("No issues yet.")
    for issue in report.issues:
        _print_issue(issue)
    click.echo(f"{'WEEK':10} {'ADDED':>7} {'CONFIRMED':>10} {'UNSUBSCRIBED':>13} {'BOUNCED':>8}")
    for row in report.growth:
        click.echo(
            f"{row.week:10} {row.added:>7} {row.confirmed:>10} "
            f"{row.unsubscribed:>13} {row.bounced:>8}"
        )


def _print_issue(issue: IssueStats) -> None:
    click.echo(f"{issue.week}  {for_terminal(issue.subject or '(no subject)')}  [{issue.status}]")
    rows = [
        ("recipients", issue.recipients),
        ("sent", issue.sent),
        ("failed", issue.failed),
        ("deferred", issue.deferred),
        ("uncertain", issue.uncertain),
        ("skipped", issue.skipped),
        ("not yet sent", issue.pending),
        ("hard bounces", issue.hard_bounces),
        ("soft bounces", issue.soft_bounces),
        ("complaints", issue.complaints),
        ("unsubscribed within 7 days", issue.unsubscribed_7d),
    ]
    for label, value in rows:
        click.echo(f"  {label:28} {value:>8}")
    for reason, count in issue.failed_by_reason.items():
        click.echo(f"    failed: {for_terminal(reason):40} {count:>6}")
    if issue.nothing_in_sections:
        click.echo(f"    skipped: {'nothing in their sections':39} {issue.nothing_in_sections:>6}")
    if any(row.sections != ALL_SECTIONS for row in issue.by_sections):
        click.echo(f"  {'by sections':40} {'RECIPIENTS':>10} {'SENT':>8} {'SKIPPED':>8}")
        for row in issue.by_sections:
            click.echo(
                f"    {for_terminal(row.sections):38} {row.recipients:>10} {row.sent:>8} "
                f"{row.skipped:>8}"
            )
    started = issue.started_at.isoformat(timespec="seconds") if issue.started_at else "-"
    finished = issue.finished_at.isoformat(timespec="seconds") if issue.finished_at else "-"
    rate = f"{issue.rate_per_second:.1f}/s" if issue.rate_per_second else "-"
    click.echo(f"  {'started':28} {started}")
    click.echo(f"  {'finished':28} {finished}")
    click.echo(f"  {'rate':28} {rate}")
    click.echo("")
