"""Sending an issue: the audience snapshot, N connections working the ledger, the report.

`send_issue` is safe to interrupt and to re-run: the ledger (`ledger.py`) records each
recipient's state in small commits, a second run picks up what the first left, and nobody is
sent a second copy unless the operator asks for the uncertain ones again. On PostgreSQL any
number of processes may run it for the same issue at once; on SQLite one sender at a time
holds a lock on the database file, which the kernel releases however the process ends.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.exc import SQLAlchemyError

from newsletter.db.models import DeliveryStatus, Issue, IssueStatus, Subscriber, Subscription
from newsletter.delivery.ledger import Ledger
from newsletter.delivery.loop import SendLoop
from newsletter.delivery.options import (
    Progress,
    ProgressCallback,
    Sending,
    SendOptions,
    SendReport,
    database_error,
)
from newsletter.delivery.stats import count_nothing_in_sections
from newsletter.delivery.variants import Variants
from newsletter.errors import NewsletterError, StateError
from newsletter.issue.build import find_issue, issue_content
from newsletter.issue.periods import Week
from newsletter.issue.render import IssueContent, archive_url, draft_url, render_for_sections
from newsletter.mail.headers import Recipient
from newsletter.mail.message import DkimKey, IssueParts, MessageFactory
from newsletter.mail.tokens import Tokens
from newsletter.subscribers.addresses import normalise_email
from newsletter.subscribers.rules import find
from newsletter.subscribers.subscriptions import receiving
from newsletter.transport.outbox import (
    PermanentFailure,
    TransientFailure,
    UncertainOutcome,
)

__all__ = [
    "Progress",
    "ProgressCallback",
    "SendOptions",
    "SendPlan",
    "SendReport",
    "dry_run",
    "prepare_send",
    "send_issue",
    "send_test",
]


OPEN = (DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED, DeliveryStatus.SENDING)


@dataclass(frozen=True)
class SendPlan:
    week: Week
    issue_id: int
    subject: str
    articles: int
    recipients: int
    status: IssueStatus
    uncertain: int


def prepare_send(app: Sending, week: Week) -> SendPlan | None:
    """The issue as it stands before a send (the caller re-selects a live draft first), or
    None when no issue is stored: nothing was ever selected for the period."""
    with app.transaction() as session:
        issue = find_issue(session, app.settings.newsletter.slug, week)
        if issue is None or issue.built_at is None:
            return None
        active = session.scalar(
            select(func.count())
            .select_from(Subscriber)
            .join(Subscription, receiving(app.settings.newsletter.slug))
        )
        issue_id, subject, status = issue.id, issue.subject, issue.status
        articles = len(issue.articles)
    # After the session: SQLite allows one open transaction per database at a time.
    counts = Ledger(app, issue_id).counts()
    return SendPlan(
        week=week,
        issue_id=issue_id,
        subject=subject,
        articles=articles,
        recipients=int(active or 0)
        if status is IssueStatus.DRAFT
        else sum(counts[s] for s in OPEN),
        status=status,
        uncertain=counts[DeliveryStatus.UNCERTAIN],
    )


def _factory(
    app: Sending, issue: Issue, *, ask_relay: bool = True, test: bool = False
) -> MessageFactory:
    """The issue's messages, addressed as the relay can take them (a dry run asks no relay).

    Test copies say so in the subject, so a forwarded or misfiled one is never taken for the
    issue readers received, and their "View in browser" leads to the signed draft page, since
    the archive shows only sent issues.
    """
    settings = app.settings
    tokens = Tokens(settings.secrets.secret_keys, settings.list_id)
    subject = f"[TEST] {issue.subject}" if test else issue.subject
    parts = IssueParts(issue.id, issue.week, subject, issue.html, issue.text)
    if test:
        token = tokens.draft(issue.id, app.clock.now())
        week = Week.parse(issue.week)
        parts = parts.linking(archive_url(settings, week), draft_url(settings, token))
    return MessageFactory(
        settings,
        tokens,
        parts,
        DkimKey.from_settings(settings),
        utf8_relay=app.transport.takes_utf8_addresses if ask_relay else None,
    )


def _variants(
    app: Sending, issue: Issue, full: MessageFactory, content: IssueContent | None = None
) -> Variants:
    """The send's copies: `full` for readers of every section, and a copy rendered on first
    use for each combination of sections the send meets, from the issue's stories (read
    when first needed unless given)."""

    def render(sections: tuple[str, ...]) -> MessageFactory | None:
        nonlocal content
        if content is None:
            with app.transaction() as session:
                content = issue_content(app, session, session.get_one(Issue, issue.id))
        copy = render_for_sections(content, app.settings, app.templates_dirs, sections)
        return None if copy is None else full.variant(copy.html, copy.text)

    return Variants(full, render, app.settings.feeds.sections)


def _sendable(app: Sending, week: Week) -> Issue:
    with app.transaction() as session:
        issue = find_issue(session, app.settings.newsletter.slug, week)
        if issue is None or issue.built_at is None:
            raise StateError(
                f"the issue for {week} has not been built",
                hint=f"run `newsletter issue build --week {week}`",
            )
        if not issue.articles:
            raise StateError(
                f"the issue for {week} has no articles; there is nothing to send",
                hint="fetch articles or include some, then run `newsletter issue build`",
            )
        session.expunge(issue)
        return issue


def send_issue(
    app: Sending,
    week: Week,
    options: SendOptions,
    progress: ProgressCallback | None = None,
) -> SendReport:
    """Send (or resume sending) the week's issue to its snapshot of active subscribers."""
    try:
        return _send_issue(app, week, options, progress)
    except SQLAlchemyError as exc:
        raise database_error(exc) from None


def _send_issue(
    app: Sending,
    week: Week,
    options: SendOptions,
    progress: ProgressCallback | None,
) -> SendReport:
    issue = _sendable(app, week)
    if issue.status is IssueStatus.SENT and not options.resend_uncertain:
        raise StateError(
            f"the issue for {week} was already sent",
            hint="`newsletter stats` shows how it went; --resend-uncertain retries the "
            "recipients whose outcome is unknown",
        )
    # An unusable transport is refused while the issue is still as the operator left it.
    app.transport  # noqa: B018
    with _sole_sender(app, week) as sole:
        ledger = Ledger(app, issue.id)
        now = app.clock.now()
        _start(app, ledger, issue.id, now)
        ledger.recover(now, sole_sender=sole)
        if options.resend_uncertain and ledger.requeue_uncertain(now):
            _reopen(app, issue.id)
        before = ledger.counts()
        pending = before[DeliveryStatus.QUEUED] + before[DeliveryStatus.DEFERRED]
        copies = _variants(app, issue, _factory(app, issue))
        run = SendLoop(app, ledger, copies, options, pending, shared=not sole)
        report = run.execute(progress)
        after = ledger.counts()
        if not any(after[s] for s in OPEN):
            _finish(app, issue.id)
    report.week = str(week)
    report.recipients = sum(after.values())
    report.already_sent = before[DeliveryStatus.SENT]
    report.failed = _group(ledger.failures())
    report.deferred = after[DeliveryStatus.DEFERRED]
    report.uncertain = after[DeliveryStatus.UNCERTAIN]
    with app.transaction() as session:
        report.nothing_in_sections = count_nothing_in_sections(session, issue.id)
    return report


def _start(app: Sending, ledger: Ledger, issue_id: int, now: datetime) -> None:
    """Draft -> sending with the audience snapshot, once, whoever gets there first."""
    with app.engine.begin() as connection:
        started = connection.execute(
            update(Issue)
            .where(Issue.id == issue_id, Issue.status == IssueStatus.DRAFT)
            .values(status=IssueStatus.SENDING, send_started_at=now)
        )
        if started.rowcount:
            ledger.snapshot(connection, now)


def _reopen(app: Sending, issue_id: int) -> None:
    with app.engine.begin() as connection:
        connection.execute(
            update(Issue)
            .where(Issue.id == issue_id, Issue.status == IssueStatus.SENT)
            .values(status=IssueStatus.SENDING)
        )


def _finish(app: Sending, issue_id: int) -> None:
    with app.engine.begin() as connection:
        connection.execute(
            update(Issue)
            .where(Issue.id == issue_id, Issue.status == IssueStatus.SENDING)
            .values(status=IssueStatus.SENT, sent_at=app.clock.now())
        )


@contextmanager
def _sole_sender(app: Sending, week: Week) -> Iterator[bool]:
    """On SQLite, hold an exclusive lock beside the database file for the whole send."""
    url = app.engine.url
    if url.get_backend_name() != "sqlite":
        yield False
        return
    database = url.database or ""
    if database in ("", ":memory:"):
        yield True
        return
    path = Path(database).with_name(Path(database).name + ".send-lock")
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise StateError(
                f"a send is already running on this database ({holder})",
                hint="wait for it to finish; with SQLite only one sender can run at a time",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} sending {week}\n")
        handle.flush()
        try:
            yield True
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def _group(replies: Sequence[str]) -> dict[str, int]:
    """Failure replies grouped by their code, with addresses and numbers blurred out."""
    counts: Counter[str] = Counter()
    for reply in replies:
        text = re.sub(r"<[^>]*>|\S+@\S+", "<address>", reply.splitlines()[0] if reply else "")
        counts[text[:120] or "no reply recorded"] += 1
    return dict(counts.most_common())


def send_test(app: Sending, week: Week, addresses: Sequence[str]) -> SendReport:
    """The real message to these addresses only; the ledger and the issue are left alone."""
    issue = _sendable(app, week)
    factory = _factory(app, issue, test=True)
    report = SendReport(week=str(week), mode="test")
    started = app.clock.monotonic()
    failures: list[str] = []
    with app.transport.connect() as connection:
        for address in addresses:
            email = normalise_email(address)
            with app.transaction() as session:
                subscriber = find(session, email)
                recipient = (
                    Recipient(subscriber.id, subscriber.email, subscriber.name)
                    if subscriber is not None
                    else Recipient(None, email)
                )
            envelope = factory.build(recipient, app.clock.now())
            try:
                connection.send(envelope.sender, envelope.recipient, envelope.message)
            except (TransientFailure, PermanentFailure, UncertainOutcome) as exc:
                failures.append(f"{email}: {exc.message}")
            else:
                report.sent += 1
    report.recipients = len(addresses)
    report.failed = dict(Counter(failures))
    report.elapsed = app.clock.monotonic() - started
    return report


def dry_run(app: Sending, week: Week, progress: ProgressCallback | None = None) -> SendReport:
    """Build every active subscriber's message, as a send would, and send none."""
    issue = _sendable(app, week)
    full = _factory(app, issue, ask_relay=False)
    report = SendReport(week=str(week), mode="dry-run")
    started = app.clock.monotonic()
    failures: list[str] = []
    with app.transaction() as session:
        # Read now: SQLite takes one transaction at a time, and this one stays open.
        stories = issue_content(app, session, session.get_one(Issue, issue.id))
        copies = _variants(app, issue, full, stories)
        total = int(
            session.scalar(
                select(func.count())
                .select_from(Subscriber)
                .join(Subscription, receiving(app.settings.newsletter.slug))
            )
            or 0
        )
        query = (
            select(Subscriber.id, Subscriber.email, Subscriber.name, Subscription.sections)
            .join(Subscription, receiving(app.settings.newsletter.slug))
            .order_by(Subscriber.id)
            .execution_options(yield_per=1000)
        )
        readers = session.execute(query)
        for number, (subscriber_id, email, name, sections) in enumerate(readers, 1):
            factory = copies.factory(sections)
            if factory is None:
                report.nothing_in_sections += 1
                continue
            try:
                factory.build(Recipient(subscriber_id, email, name), app.clock.now())
            except NewsletterError as exc:
                failures.append(exc.message)
            else:
                report.sent += 1
            if progress is not None and number % 500 == 0:
                progress(Progress(number, total, report.sent, len(failures)))
    report.recipients = total
    report.failed = _group(failures)
    report.renders = copies.renders
    report.elapsed = app.clock.monotonic() - started
    if progress is not None:
        progress(Progress(total, total, report.sent, len(failures)))
    return report
