"""`newsletter issue ...`: build, show, adjust and approve the next issue.

Other modules add their own subcommands to the `issue` group (`preview`) and may reuse
`week_option` and `echo_changes`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from newsletter.cli.context import CliContext, newsletter_option, pass_context
from newsletter.cli.root import main
from newsletter.cli.tables import print_table, when
from newsletter.db.models import OverrideKind
from newsletter.issue.build import (
    BuildReport,
    Note,
    build_issue,
    show_issue,
)
from newsletter.issue.live import Refresh
from newsletter.issue.overrides import OverrideReport, add_override, approve, reset, unfeature
from newsletter.issue.periods import Week
from newsletter.untrusted import for_terminal

F = TypeVar("F", bound=Callable[..., Any])


def _parse_week(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Week | None:
    return Week.parse(value) if value else None


def week_option(function: F) -> F:
    """`--week 2024-W47`, parsed into a `Week` (None: the command's own default)."""
    return click.option(
        "--week",
        callback=_parse_week,
        metavar="WEEK",
        help="The issue named by the ISO week its period ends in, such as 2024-W47 "
        "(default: the next issue).",
    )(function)


def _echo_notes(heading: str, notes: Sequence[Note]) -> None:
    if notes:
        click.echo(heading)
    for note in notes:
        click.echo(f"  [{note.article_id}] {for_terminal(note.title)}: {note.why}")


def echo_changes(refresh: Refresh, *, err: bool = False) -> None:
    """What changed in a live draft since it was last built or previewed."""
    if refresh.withdrawn:
        click.echo(f"The approval of {refresh.week} is withdrawn: {refresh.withdrawn}.", err=err)
    for change in refresh.changes:
        sign = "added" if change.added else "dropped"
        click.echo(
            f"  {sign} [{change.article_id}] {for_terminal(change.title)}: {change.why}", err=err
        )


@main.group()
def issue() -> None:
    """Build, review, adjust and approve the next issue."""


def _echo_build(report: BuildReport) -> None:
    late = f", {report.late} late" if report.late else ""
    click.echo(
        f"Built {report.week}: {report.articles} article(s){late}, {report.featured} featured, "
        f"HTML {report.html_bytes / 1024:.1f} KB."
    )
    if report.articles:
        click.echo(f"Subject: {for_terminal(report.subject)}")
    else:
        click.echo("No articles yet: `newsletter send` sends nothing until some arrive.")
    _echo_notes("Came in for excluded articles:", report.replacements)
    _echo_notes("Left out:", report.left_out)
    for problem in report.problems:
        click.echo(f"warning: {for_terminal(problem)}", err=True)


@issue.command()
@newsletter_option
@week_option
@pass_context
def build(ctx: CliContext, week: Week | None) -> None:
    """Select the issue's articles and render the draft, saying what was left out."""
    ctx.warn_about_templates()
    _echo_build(build_issue(ctx.app(), week))


@issue.command()
@newsletter_option
@week_option
@pass_context
def show(ctx: CliContext, week: Week | None) -> None:
    """The selection, in order, with the overrides and what was left out and why."""
    view = show_issue(ctx.app(), week)
    zone = ctx.settings.newsletter.zone
    built = f"built {when(view.built_at, zone)}" if view.built_at else "never built"
    click.echo(f"{view.week}  [{view.status.value}]  {built}")
    if view.period:
        start, end = view.period
        click.echo(f"Period: {when(start, zone)} to {when(end, zone)} ({zone.key})")
    if view.approved_at:
        click.echo(f"Approved {when(view.approved_at, zone)}")
    if view.withdrawn:
        click.echo(f"The approval is withdrawn: {view.withdrawn}; `newsletter send` re-selects.")
    if view.new_since_build:
        click.echo(f"{view.new_since_build} new since build: `newsletter send` will add them.")
    if view.subject:
        click.echo(f"Subject: {for_terminal(view.subject)}")
    if not view.articles:
        click.echo("No articles selected.")
    else:
        print_table(
            ("#", "", "ID", "SECTION", "KICKER", "PUBLISHED", "TITLE"),
            (
                (
                    f"{row.position}.",
                    "*" if row.featured else "",
                    str(row.article_id),
                    row.section or "-",
                    row.kicker or "-",
                    when(row.published_at, zone),
                    row.title + ("  (late)" if row.late else ""),
                )
                for row in view.articles
            ),
            zone=zone,
        )
    if view.overrides:
        click.echo("Overrides:")
    for override in view.overrides:
        where = f" to {override.position}" if override.position else ""
        where += f" in {for_terminal(override.section)}" if override.section else ""
        click.echo(
            f"  {override.kind}{where}: [{override.article_id}] {for_terminal(override.title)}"
        )
    _echo_notes("Came in for excluded articles:", view.replacements)
    _echo_notes("Left out:", view.left_out)


def _print_override(report: OverrideReport) -> None:
    click.echo(
        f"{report.kind}: [{report.article_id}] {for_terminal(report.title)}. "
        f"Rebuilt {report.build.week}: {report.build.articles} article(s)."
    )
    _echo_notes("Came in for excluded articles:", report.build.replacements)


def _override_command(kind: OverrideKind, summary: str) -> None:
    @issue.command(name=kind.value, help=summary)
    @newsletter_option
    @click.argument("article")
    @week_option
    @pass_context
    def command(ctx: CliContext, article: str, week: Week | None) -> None:
        _print_override(add_override(ctx.app(), week, article, kind))


_override_command(OverrideKind.EXCLUDE, "Leave ARTICLE (id or URL) out of the issue.")
_override_command(
    OverrideKind.INCLUDE, "Add ARTICLE (id or URL) to the issue, even from outside the period."
)


@issue.command()
@newsletter_option
@click.argument("article")
@click.option("--also", is_flag=True, help="Keep the current top stories and add this one.")
@week_option
@pass_context
def feature(ctx: CliContext, article: str, also: bool, week: Week | None) -> None:
    """Make ARTICLE (id or URL) the top story; the one before stays in the issue."""
    _print_override(add_override(ctx.app(), week, article, OverrideKind.FEATURE, also=also))


@issue.command(name="unfeature")
@newsletter_option
@click.argument("article")
@week_option
@pass_context
def unfeature_command(ctx: CliContext, article: str, week: Week | None) -> None:
    """ARTICLE (id or URL) stops being a top story and stays in the issue."""
    _print_override(unfeature(ctx.app(), week, article))


@issue.command()
@newsletter_option
@click.argument("article")
@click.argument("position", type=click.IntRange(min=1))
@week_option
@pass_context
def move(ctx: CliContext, article: str, position: int, week: Week | None) -> None:
    """Put ARTICLE (id or URL) at POSITION (1 is the top)."""
    _print_override(add_override(ctx.app(), week, article, OverrideKind.MOVE, position))


@issue.command()
@newsletter_option
@click.argument("article")
@click.argument("section")
@week_option
@pass_context
def section(ctx: CliContext, article: str, section: str, week: Week | None) -> None:
    """Put ARTICLE (id or URL) in SECTION, whatever its feed says."""
    report = add_override(ctx.app(), week, article, OverrideKind.SECTION, section=section)
    _print_override(report)


@issue.command(name="reset")
@newsletter_option
@week_option
@pass_context
def reset_command(ctx: CliContext, week: Week | None) -> None:
    """Drop every override of the issue and rebuild it."""
    dropped, report = reset(ctx.app(), week)
    click.echo(f"Dropped {dropped} override(s).")
    _echo_build(report)


@issue.command(name="approve")
@newsletter_option
@week_option
@pass_context
def approve_command(ctx: CliContext, week: Week | None) -> None:
    """Freeze the selection: `send` sends it as it is now, unless it changes first."""
    report = approve(ctx.app(), week)
    click.echo(
        f"Approved {report.week}: {report.articles} article(s). An override or a new article "
        "in the period withdraws the approval."
    )
