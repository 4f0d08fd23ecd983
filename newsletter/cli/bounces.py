"""`newsletter bounces process SOURCE`."""

from __future__ import annotations

import click

from newsletter.bounces.apply import BounceReport, process_bounces
from newsletter.bounces.reports import neutralise
from newsletter.cli.context import CliContext, pass_context
from newsletter.cli.root import main


@main.group()
def bounces() -> None:
    """Read bounce reports, complaints and mailto unsubscribes."""


@bounces.command()
@click.argument("source")
@pass_context
def process(ctx: CliContext, source: str) -> None:
    """Process SOURCE: an mbox file, a Maildir folder, or imaps://user@host/INBOX.

    The IMAP password is read from NEWSLETTER_IMAP_PASSWORD. Running it again on the same
    mailbox changes nothing more. Messages not acted on are listed on stderr with the reason
    (auto-replies, strays, delays, and, with VERP on, reports that carry no token of ours) and
    do not change the exit status; the mailbox is left as it was.
    """
    _print(process_bounces(ctx.app(), source))


def _print(report: BounceReport) -> None:
    for problem in report.problems:
        # Both name and reason quote the report, which anyone can write.
        click.echo(
            f"not acted on: {neutralise(problem.message)}: {neutralise(problem.reason)}", err=True
        )
    counts = report.outcomes
    click.echo(
        f"Read {report.messages} message(s): {counts['hard']} hard bounce(s), "
        f"{counts['soft']} soft, {counts['policy']} policy rejection(s), "
        f"{counts['complaint']} complaint(s), {counts['unsubscribe']} unsubscribe request(s), "
        f"{counts['duplicate']} already processed, {len(report.problems)} not acted on; "
        f"{report.suppressed} address(es) newly suppressed."
    )
    if counts["policy"]:
        click.echo(
            "Policy rejections (5.7.x) are about the sender, not the address: check the "
            "sending IP's reputation and SPF/DKIM/DMARC.",
            err=True,
        )
