"""`newsletter demo`: the weekly job on the bundled example data, then where to look."""

from __future__ import annotations

import os
from pathlib import Path

import click

from newsletter.cli.root import main
from newsletter.demo import run_demo


@main.command()
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("newsletter-demo"),
    show_default=True,
    help="Folder to run in (created; an earlier demo's files there are replaced).",
)
def demo(folder: Path) -> None:
    """Run init, import, fetch, build and send on example data, into an outbox folder."""
    report = run_demo(folder, secret_key=os.environ.get("NEWSLETTER_SECRET_KEY", ""))
    subs = report.subscribers
    click.echo(f"Demo folder: {report.folder}")
    click.echo(f"Subscribers: {subs.added} added, {subs.suppressed} kept unsubscribed or bounced.")
    click.echo(f"Articles:    {report.articles} read from the example feed.")
    click.echo(
        f"Issue:       {report.issue.week}, {report.issue.articles} articles, "
        f"subject {report.issue.subject!r}."
    )
    click.echo(f"Sent:        {report.send.sent} messages to the outbox.")
    click.echo("")
    click.echo(f"Preview (HTML): {report.preview_html}")
    click.echo(f"Text part:      {report.preview_text}")
    click.echo(f"Messages:       {report.outbox}{os.sep}*.eml")
    if report.generated_key:
        click.echo(
            "\nNEWSLETTER_SECRET_KEY is not set, so a random key was made for this run only; "
            "set it for real use."
        )
