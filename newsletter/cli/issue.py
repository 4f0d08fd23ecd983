"""`newsletter issue ...`: build, show and adjust the week's issue.

Other modules add their own subcommands to the `issue` group (`preview`) and may reuse
`week_option`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from newsletter.cli.context import CliContext, pass_context
from newsletter.cli.root import main
from newsletter.db.models import OverrideKind
from newsletter.issue.build import OverrideReport, add_override, build_issue, show_issue
from newsletter.issue.periods import Week

F = TypeVar("F", bound=Callable[..., Any])


def _parse_week(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Week | None:
    return Week.parse(value) if value else None


def week_option(function: F) -> F:
    """`--week 2024-W47`, parsed into a `Week` (None means the current week)."""
    return click.option(
        "--week",
        callback=_parse_week,
        metavar="WEEK",
        help="ISO week such as 2024-W47, in the configured time zone (default: this week).",
    )(function)


@main.group()
def issue() -> None:
    """Build, review and adjust the week's issue."""


@issue.command()
@week_option
@pass_context
def build(ctx: CliContext, week: Week | None) -> None:
    """Select the week's articles and render the draft."""
    ctx.warn_about_templates()
    report = build_issue(ctx.app(), week)
    click.echo(
        f"Built {report.week}: {report.articles} article(s), {report.featured} featured, "
        f"HTML {report.html_bytes / 1024:.1f} KB."
    )
    if report.articles:
        click.echo(f"Subject: {report.subject}")
    else:
        click.echo("No articles this week: `newsletter send` will refuse an empty issue.")
    for problem in report.problems:
        click.echo(f"warning: {problem}", err=True)


@issue.command()
@week_option
@pass_context
def show(ctx: CliContext, week: Week | None) -> None:
    """The selection, in order, with the editors' overrides."""
    view = show_issue(ctx.app(), week)
    built = f"built {view.built_at:%Y-%m-%d %H:%M} UTC" if view.built_at else "never built"
    click.echo(f"{view.week}  [{view.status.value}]  {built}")
    if view.subject:
        click.echo(f"Subject: {view.subject}")
    if not view.articles:
        click.echo("No articles selected.")
    for row in view.articles:
        star = "*" if row.featured else " "
        click.echo(
            f"{row.position:>3}. {star} [{row.article_id}] {row.section or '-'} / "
            f"{row.kicker or '-'}  {row.published_at:%Y-%m-%d %H:%M}Z  {row.title}"
        )
    if view.overrides:
        click.echo("Overrides:")
    for override in view.overrides:
        where = f" to {override.position}" if override.position else ""
        click.echo(f"  {override.kind.value}{where}: [{override.article_id}] {override.title}")


def _print_override(report: OverrideReport) -> None:
    click.echo(
        f"{report.kind.value}: [{report.article_id}] {report.title}. Rebuilt {report.build.week}: "
        f"{report.build.articles} article(s)."
    )


def _override_command(kind: OverrideKind, summary: str) -> None:
    @issue.command(name=kind.value, help=summary)
    @click.argument("article")
    @week_option
    @pass_context
    def command(ctx: CliContext, article: str, week: Week | None) -> None:
        _print_override(add_override(ctx.app(), week, article, kind))


_override_command(OverrideKind.FEATURE, "Put ARTICLE (id or URL) at the top, as a featured story.")
_override_command(OverrideKind.EXCLUDE, "Leave ARTICLE (id or URL) out of the issue.")
_override_command(
    OverrideKind.INCLUDE, "Add ARTICLE (id or URL) to the issue, even from outside the week."
)


@issue.command()
@click.argument("article")
@click.argument("position", type=click.IntRange(min=1))
@week_option
@pass_context
def move(ctx: CliContext, article: str, position: int, week: Week | None) -> None:
    """Put ARTICLE (id or URL) at POSITION (1 is the top)."""
    _print_override(add_override(ctx.app(), week, article, OverrideKind.MOVE, position))
