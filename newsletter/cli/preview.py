"""`newsletter issue preview`: write the rendered issue for a look before sending."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from newsletter.cli.context import CliContext, newsletter_option, pass_context
from newsletter.cli.issue import echo_changes, issue, week_option
from newsletter.issue.periods import Week
from newsletter.issue.preview import preview_issue
from newsletter.untrusted import for_terminal


@issue.command()
@newsletter_option
@week_option
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write to this file instead of standard output.",
)
@click.option("--text", is_flag=True, help="The plain-text part instead of the HTML.")
@click.option(
    "--open", "open_it", is_flag=True, help="Open the result in the default browser or viewer."
)
@pass_context
def preview(
    ctx: CliContext, week: Week | None, output: Path | None, text: bool, open_it: bool
) -> None:
    """Re-select the draft and write it, filled in for a sample reader."""
    ctx.warn_about_templates()
    chosen, rendered, refresh, rerendered = preview_issue(ctx.app(), week, text=text)
    if rerendered:
        click.echo(f"Templates changed since {chosen} was built: rendered it again.", err=True)
    if refresh.withdrawn:
        click.echo(f"Showing {chosen} as approved; `newsletter send` will re-select it.", err=True)
    echo_changes(refresh, err=True)
    if output is None and open_it:
        suffix = ".txt" if text else ".html"
        output = Path(tempfile.gettempdir()) / f"newsletter-preview-{chosen}{suffix}"
    if output is None:  # for a terminal: the file keeps the feed's characters as they are
        click.echo("\n".join(map(for_terminal, rendered.split("\n"))), nl=False)
        return
    output.write_text(rendered, encoding="utf-8")
    click.echo(f"Wrote the {'text part' if text else 'HTML'} of {chosen} to {output}", err=True)
    if open_it:
        click.launch(str(output))
