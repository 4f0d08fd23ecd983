"""`newsletter send`: confirm, send (or resume) with a progress bar, report, exit status."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import click

from newsletter.cli.context import CliContext, newsletter_option, pass_context
from newsletter.cli.issue import echo_changes, week_option
from newsletter.cli.root import main
from newsletter.db.models import IssueStatus
from newsletter.delivery import send as delivery
from newsletter.delivery.send import (
    Progress,
    ProgressCallback,
    SendOptions,
    SendPlan,
    SendReport,
    prepare_send,
    send_issue,
    send_test,
)
from newsletter.errors import StateError, UsageError
from newsletter.issue.listing import last_closed, periods
from newsletter.issue.live import refresh_draft
from newsletter.issue.periods import Week
from newsletter.untrusted import for_terminal


@main.command()
@newsletter_option
@week_option
@click.option(
    "--test",
    "test_addresses",
    multiple=True,
    metavar="ADDR",
    help="Send the real message to ADDR only (repeatable); nothing is recorded as sent.",
)
@click.option("--dry-run", is_flag=True, help="Build every message and send none.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--rate",
    type=click.FloatRange(min=0),
    help="Messages per second across all connections (0: no limit; default from config).",
)
@click.option(
    "--connections",
    type=click.IntRange(min=1),
    help="SMTP connections in parallel (default from config).",
)
@click.option(
    "--resend-uncertain",
    is_flag=True,
    help="Send again to recipients whose earlier delivery had an unknown outcome.",
)
@click.option(
    "--if-new",
    is_flag=True,
    help="Do nothing (exit 0) if the issue was already sent or has no articles; for cron.",
)
@pass_context
def send(
    ctx: CliContext,
    *,
    week: Week | None,
    test_addresses: tuple[str, ...],
    dry_run: bool,
    yes: bool,
    rate: float | None,
    connections: int | None,
    resend_uncertain: bool,
    if_new: bool,
) -> None:
    """Send (or resume sending) an issue to all active subscribers.

    Without --week: the issue of the period that closed most recently. An issue that is not
    approved is re-selected first, keeping every override, and what changed is listed.

    Exit status: 0 when everyone was reached, 1 when some deliveries failed, remain in doubt
    or there was nothing to send, 2 for usage errors.
    """
    if test_addresses and dry_run:
        raise UsageError("--test and --dry-run cannot be combined")
    app = ctx.app()
    ctx.warn_about_templates()
    if not dry_run:
        # An unusable transport is refused before the draft is re-selected or anything else
        # changes.
        app.transport  # noqa: B018
    chosen = week or last_closed(app)
    closes = periods(app).close(chosen)
    if closes > app.clock.now() and not (test_addresses or dry_run):
        click.echo(
            f"note: the period of {chosen} is open until {closes:%Y-%m-%d %H:%M} UTC; articles "
            f"published later in it will go into {chosen.next()}, marked late."
        )
    refresh = refresh_draft(app, chosen, reselect_approved=yes)
    echo_changes(refresh)
    if refresh.withdrawn and not refresh.stored and not (test_addresses or dry_run):
        if not sys.stdin.isatty():
            raise UsageError(
                "refusing to send a withdrawn approval without confirmation; add --yes to "
                "re-select and send"
            )
        click.confirm("Re-select the issue with these changes?", abort=True)
        refresh = refresh_draft(app, chosen, reselect_approved=True)
    if refresh.approved:
        click.echo(f"Sending {chosen} as approved.")
    plan = prepare_send(app, chosen)
    if if_new and (plan is None or not plan.articles or plan.status is IssueStatus.SENT):
        why = "was already sent" if plan and plan.status is IssueStatus.SENT else "has no articles"
        click.echo(f"Nothing to do: the issue for {chosen} {why}.")
        return
    if plan is None or not plan.articles:
        raise StateError(
            f"the issue for {chosen} has no articles; there is nothing to send",
            hint="fetch articles or include some, then run `newsletter send` again",
        )
    if test_addresses:
        _finish(send_test(app, chosen, test_addresses))
        return
    if dry_run:
        _finish(_with_progress(plan, "Building", lambda cb: delivery.dry_run(app, chosen, cb)))
        return
    if not yes:
        _confirm(plan, resend_uncertain)
    options = SendOptions(rate=rate, connections=connections, resend_uncertain=resend_uncertain)
    try:
        report = _with_progress(plan, "Sending", lambda cb: send_issue(app, chosen, options, cb))
    except KeyboardInterrupt:
        raise click.ClickException(
            "interrupted; every message sent so far is recorded: run `newsletter send` again "
            "to resume"
        ) from None
    _finish(report)


def _confirm(plan: SendPlan, resend_uncertain: bool) -> None:
    if not sys.stdin.isatty():
        raise UsageError("refusing to send without confirmation; add --yes to send from a script")
    resuming = " (resuming)" if plan.status is not IssueStatus.DRAFT else ""
    extra = f", plus {plan.uncertain} uncertain" if resend_uncertain and plan.uncertain else ""
    click.echo(f"Issue:      {plan.week}{resuming}")
    click.echo(f"Subject:    {for_terminal(plan.subject)}")
    click.echo(f"Recipients: {plan.recipients}{extra}")
    click.confirm("Send it now?", abort=True)


def _with_progress(
    plan: SendPlan, label: str, run: Callable[[ProgressCallback], SendReport]
) -> SendReport:
    """Runs `run(callback)` under a progress bar (on stderr) fed by the engine's snapshots.

    Without a terminal there is no bar at all, so logs and cron mail carry only the report.
    """
    if not sys.stderr.isatty():
        return run(lambda _progress: None)
    total = max(plan.recipients, 1)
    started = time.monotonic()
    with click.progressbar(
        length=total,
        label=label,
        show_eta=True,
        show_percent=True,
        file=sys.stderr,
        item_show_func=lambda note: note,
    ) as bar:
        shown = 0

        def update(progress: Progress) -> None:
            nonlocal shown
            elapsed = time.monotonic() - started
            rate = f"{progress.done / elapsed:.0f} msg/s" if elapsed > 0 else ""
            step = max(min(progress.done, total) - shown, 0)
            bar.update(step, "waiting to retry" if progress.waiting else rate)
            shown += step

        report = run(update)
        # The last word is the outcome, not a retry wait that is long over.
        bar.update(0, "done")
        bar.render_progress()
        return report


def _finish(report: SendReport) -> None:
    verb = {"send": "Sent", "test": "Sent (test)", "dry-run": "Built"}[report.mode]
    click.echo(
        f"{verb} {report.sent} message(s) for {report.week} in {report.elapsed:.1f} s"
        f" ({report.rate:.1f} msg/s)."
    )
    if report.mode == "send":
        click.echo(
            f"Recipients {report.recipients}: sent earlier {report.already_sent}, "
            f"skipped {report.skipped}, failed {report.failed_total}, "
            f"deferred {report.deferred}, uncertain {report.uncertain}."
        )
    if report.nothing_in_sections:
        readers = "reader" if report.nothing_in_sections == 1 else "readers"
        click.echo(f"{report.nothing_in_sections} {readers}: nothing in their sections.")
    if report.renders:
        click.echo(f"Copies rendered for readers' sections: {report.renders}.")
    for reason, count in report.failed.items():
        click.echo(f"  failed {count:>6}  {for_terminal(reason)}")
    if report.uncertain:
        click.echo(
            f"{report.uncertain} message(s) may or may not have been delivered; "
            "`newsletter send --resend-uncertain` sends them again."
        )
    if report.deferred:
        click.echo(f"{report.deferred} message(s) wait for a retry: run `newsletter send` again.")
    if report.error:
        raise click.ClickException(for_terminal(report.error))
    if not report.complete:
        click.get_current_context().exit(1)
