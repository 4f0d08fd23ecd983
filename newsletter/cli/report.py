"""`newsletter report [--week WEEK] [-o FILE] [--json]`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from newsletter.cli.context import CliContext, newsletter_option, pass_context
from newsletter.cli.root import main
from newsletter.delivery.report import issue_report
from newsletter.issue.periods import Week
from newsletter.tracking.page import render_page
from newsletter.tracking.retention import purge


@main.command()
@newsletter_option
@click.option("--week", help="The ISO week's issue, e.g. 2024-W47 (default: the latest sent).")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE."
)
@click.option("--json", "as_json", is_flag=True, help="The same figures as JSON, for scripts.")
@pass_context
def report(ctx: CliContext, week: str | None, output: Path | None, as_json: bool) -> None:
    """An issue's report as one HTML page: deliveries, clicks per article, list growth."""
    app = ctx.app()
    purge(app)
    figures = issue_report(app, Week.parse(week) if week else None)
    text = (
        json.dumps(dataclasses.asdict(figures), indent=2, ensure_ascii=False) + "\n"
        if as_json
        else render_page(figures)
    )
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"{output}: cannot write: {exc.strerror}") from None
    click.echo(f"Wrote the report of {figures.week} to {output}.", err=True)
