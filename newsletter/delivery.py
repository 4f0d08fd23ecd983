"""Sending an issue: the audience snapshot, N connections working the ledger, the report.

`send_issue` is safe to interrupt and to re-run: the ledger (`ledger.py`) records each
recipient's state in small commits, a second run picks up what the first left, and nobody is
sent a second copy unless the operator asks for the uncertain ones again. On PostgreSQL any
number of processes may run it for the same issue at once; on SQLite one sender at a time
holds a lock on the database file, which the kernel releases however the process ends.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError

from .app import App
from .db.models import DeliveryStatus, Issue, IssueStatus, Subscriber, SubscriberStatus
from .errors import DatabaseError, DeliveryError, NewsletterError, StateError
from .ledger import Claimed, Ledger
from .message import DkimKey, IssueParts, MessageFactory
from .mime import Recipient
from .ratelimit import TokenBucket
from .subscribers import find, normalise_email
from .tokens import Tokens
from .transports import (
    Connection,
    PermanentFailure,
    PolicyFailure,
    ServerUnavailable,
    TransientFailure,
    UncertainOutcome,
)
from .weeks import Week

log = logging.getLogger(__name__)

BATCH = 100
HEARTBEAT_SECONDS = 2.0
CONNECT_RETRIES = 4
POLL_SECONDS = 1.0
OPEN = (DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED, DeliveryStatus.SENDING)


@dataclass(frozen=True)
class SendOptions:
    rate: float | None = None  # messages per second across connections; 0 = unlimited
    connections: int | None = None
    resend_uncertain: bool = False
    stop: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    sent: int
    failed: int
    waiting: bool = False


ProgressCallback = Callable[[Progress], None]


@dataclass
class SendReport:
    week: str
    recipients: int = 0
    sent: int = 0
    already_sent: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    deferred: int = 0
    uncertain: int = 0
    skipped: int = 0
    elapsed: float = 0.0
    error: str = ""
    mode: str = "send"  # "send", "test" or "dry-run"

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def complete(self) -> bool:
        """Everyone who could be reached was, and nothing is left in doubt."""
        return not (self.error or self.failed or self.deferred or self.uncertain)


@dataclass(frozen=True)
class SendPlan:
    week: Week
    issue_id: int
    subject: str
    articles: int
    recipients: int
    status: IssueStatus
    uncertain: int


def prepare_send(app: App, week: Week, *, build: Callable[[App, Week], object]) -> SendPlan:
    """The issue as it stands before a send, built first (with `build`) if it never was."""
    plan = _plan(app, week)
    if plan is None:
        build(app, week)
        plan = _plan(app, week)
    if plan is None:  # pragma: no cover - build always stores the issue
        raise StateError(f"the issue for {week} could not be built")
    return plan


def _plan(app: App, week: Week) -> SendPlan | None:
    with app.transaction() as session:
        issue = session.scalars(select(Issue).where(Issue.week == str(week))).one_or_none()
        if issue is None or issue.built_at is None:
            return None
        active = session.scalar(
            select(func.count())
            .select_from(Subscriber)
            .where(Subscriber.status == SubscriberStatus.ACTIVE)
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


def _factory(app: App, issue: Issue) -> MessageFactory:
    settings = app.settings
    return MessageFactory(
        settings,
        Tokens(settings.secrets.secret_keys, settings.list_id),
        IssueParts(issue.id, issue.week, issue.subject, issue.html, issue.text),
        DkimKey.from_settings(settings),
    )


def _sendable(app: App, week: Week) -> Issue:
    with app.transaction() as session:
        issue = session.scalars(select(Issue).where(Issue.week == str(week))).one_or_none()
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
    app: App,
    week: Week,
    options: SendOptions,
    progress: ProgressCallback | None = None,
) -> SendReport:
    """Send (or resume sending) the week's issue to its snapshot of active subscribers."""
    try:
        return _send_issue(app, week, options, progress)
    except DBAPIError as exc:
        raise _database_error(exc) from None


def _database_error(exc: DBAPIError) -> DatabaseError:
    """Every sent message is already recorded, so a database failure is a pause, not a loss."""
    text = str(exc.orig or exc).strip().splitlines()
    return DatabaseError(
        f"the database failed during the send: {text[0] if text else type(exc).__name__}",
        hint="check that the database is reachable, then run `newsletter send` again to resume",
    )


def _send_issue(
    app: App,
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
    with _sole_sender(app, week) as sole:
        ledger = Ledger(app, issue.id)
        now = app.clock.now()
        _start(app, ledger, issue.id, now)
        ledger.recover(now, sole_sender=sole)
        if options.resend_uncertain and ledger.requeue_uncertain(now):
            _reopen(app, issue.id)
        before = ledger.counts()
        pending = before[DeliveryStatus.QUEUED] + before[DeliveryStatus.DEFERRED]
        run = _Run(app, ledger, _factory(app, issue), options, pending, shared=not sole)
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
    return report


def _start(app: App, ledger: Ledger, issue_id: int, now: datetime) -> None:
    """Draft -> sending with the audience snapshot, once, whoever gets there first."""
    with app.engine.begin() as connection:
        started = connection.execute(
            update(Issue)
            .where(Issue.id == issue_id, Issue.status == IssueStatus.DRAFT)
            .values(status=IssueStatus.SENDING, send_started_at=now)
        )
        if started.rowcount:
            ledger.snapshot(connection, now)


def _reopen(app: App, issue_id: int) -> None:
    with app.engine.begin() as connection:
        connection.execute(
            update(Issue)
            .where(Issue.id == issue_id, Issue.status == IssueStatus.SENT)
            .values(status=IssueStatus.SENDING)
        )


def _finish(app: App, issue_id: int) -> None:
    with app.engine.begin() as connection:
        connection.execute(
            update(Issue)
            .where(Issue.id == issue_id, Issue.status == IssueStatus.SENDING)
            .values(status=IssueStatus.SENT, sent_at=app.clock.now())
        )


@contextmanager
def _sole_sender(app: App, week: Week) -> Iterator[bool]:
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


class _Run:
    """The threads of one send: one connection each, sharing a rate limit and counters."""

    def __init__(
        self,
        app: App,
        ledger: Ledger,
        factory: MessageFactory,
        options: SendOptions,
        total: int,
        *,
        shared: bool,
    ) -> None:
        delivery = app.settings.delivery
        if delivery.lease_seconds < 3 * delivery.timeout:
            log.warning(
                "delivery.lease_seconds (%g) is under three SMTP timeouts (%g): another sender "
                "may declare a slow but live message uncertain",
                delivery.lease_seconds,
                3 * delivery.timeout,
            )
        self.app = app
        self.transport = app.transport
        self.ledger = ledger
        self.factory = factory
        self.stop = options.stop
        self.connections = max(options.connections or delivery.connections, 1)
        rate = delivery.rate if options.rate is None else options.rate
        self.rate = rate
        self.limiter = TokenBucket(rate, app.clock) if rate > 0 else None
        self.shared = shared and self.limiter is not None
        per_connection = rate / self.connections if rate > 0 else float("inf")
        lease_share = per_connection * delivery.lease_seconds / 4
        self.batch = int(max(1, min(BATCH, lease_share)))
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.total = total
        self.lock = threading.Lock()
        self.sent = 0
        self.failed = 0
        self.skipped = 0
        self.done = 0
        self.waiting = False
        self.errors: list[BaseException] = []

    def execute(self, progress: ProgressCallback | None) -> SendReport:
        started = self.app.clock.monotonic()
        threads = [
            threading.Thread(target=self._work, args=(n,), name=f"send-{n}", daemon=True)
            for n in range(self.connections)
        ]
        self._share()
        for thread in threads:
            thread.start()
        beat = self.app.clock.monotonic()
        try:
            while any(t.is_alive() for t in threads):
                threads[0].join(0.2)
                if progress is not None:
                    progress(self._progress())
                if self.app.clock.monotonic() - beat >= HEARTBEAT_SECONDS:
                    beat = self.app.clock.monotonic()
                    self._share()
        except KeyboardInterrupt:
            self.stop.set()
            for thread in threads:
                thread.join()
            raise
        finally:
            if self.shared:
                self.ledger.leave(self.worker_id)
        if progress is not None:
            progress(self._progress())
        report = SendReport(
            week="",
            sent=self.sent,
            skipped=self.skipped,
            elapsed=self.app.clock.monotonic() - started,
        )
        for failure in self.errors:
            error = _database_error(failure) if isinstance(failure, DBAPIError) else failure
            if isinstance(error, NewsletterError):
                report.error = str(error)
                break
            raise error
        return report

    def _share(self) -> None:
        """Take this sender's part of the global rate, given who else is sending now."""
        if not self.shared or self.limiter is None:
            return
        try:
            total = self.ledger.heartbeat(self.worker_id, self.connections, self.app.clock.now())
        except DBAPIError as exc:
            self._fail_run(exc)
            return
        self.limiter.set_rate(self.rate * self.connections / total)

    def _progress(self) -> Progress:
        with self.lock:
            return Progress(self.done, self.total, self.sent, self.failed, self.waiting)

    def _count(self, outcome: str) -> None:
        with self.lock:
            self.done += 1
            if outcome == "sent":
                self.sent += 1
            elif outcome == "failed":
                self.failed += 1
            elif outcome == "skipped":
                self.skipped += 1

    def _fail_run(self, error: BaseException) -> None:
        with self.lock:
            self.errors.append(error)
        self.stop.set()

    def _work(self, number: int) -> None:
        claimer = f"{self.worker_id}/{number}"
        connection = self.transport.connect()
        try:
            self._loop(claimer, connection)
        except BaseException as exc:
            self._fail_run(exc)
        finally:
            connection.close()
            try:
                self.ledger.release(claimer)
            except Exception as exc:
                self._fail_run(exc)

    def _loop(self, claimer: str, connection: Connection) -> None:
        unreachable = 0
        while not self.stop.is_set():
            now = self.app.clock.now()
            batch = self.ledger.claim(claimer, self.batch, now)
            if not batch:
                self.ledger.recover(now, sole_sender=False)
                wait = self.ledger.seconds_until_due(now, self.worker_id)
                if wait is None:
                    return
                with self.lock:
                    self.waiting = True
                self.app.clock.sleep(min(wait, POLL_SECONDS) if wait else 0.05)
                continue
            with self.lock:
                self.waiting = False
            try:
                self._send_batch(claimer, connection, batch)
                unreachable = 0
            except ServerUnavailable as exc:
                unreachable += 1
                if unreachable > CONNECT_RETRIES:
                    raise DeliveryError(str(exc)) from None
                self.app.clock.sleep(2.0**unreachable)

    def _send_batch(self, claimer: str, connection: Connection, batch: list[Claimed]) -> None:
        sent: int | None = None
        try:
            for index, row in enumerate(batch):
                if self.stop.is_set():
                    return
                if self.limiter is not None:
                    self.limiter.acquire()
                go = self.ledger.advance(claimer, sent, row, self.app.clock.now())
                if sent is not None:
                    self._count("sent")
                sent = None
                if go is False:
                    self._count("skipped")
                if not go:
                    continue
                try:
                    if self._deliver(row, connection):
                        sent = row.delivery_id
                except ServerUnavailable:
                    self.ledger.release(claimer, batch[index + 1 :])
                    raise
        finally:
            if sent is not None:
                self.ledger.advance(claimer, sent, None, self.app.clock.now())
                self._count("sent")

    def _deliver(self, row: Claimed, connection: Connection) -> bool:
        """Offer one message; True once the server has accepted it (recorded by the caller
        together with the next row, to keep to one commit per message)."""
        recipient = Recipient(row.subscriber_id, row.email, row.name)
        try:
            envelope = self.factory.build(recipient, self.app.clock.now())
            connection.send(envelope.sender, envelope.recipient, envelope.message)
        except ServerUnavailable:
            self.ledger.put_back(row, self.app.clock.now())
            raise
        except PolicyFailure as exc:
            self.ledger.put_back(row, self.app.clock.now())
            self._fail_run(exc)
        except PermanentFailure as exc:
            self.ledger.fail(row, exc.message, bounce=exc.bounce, now=self.app.clock.now())
            self._count("failed")
        except TransientFailure as exc:
            retried = self.ledger.defer(row, exc.message, self.app.clock.now())
            self._count("deferred" if retried else "failed")
        except UncertainOutcome as exc:
            self.ledger.uncertain(row, exc.message, self.app.clock.now())
            self._count("uncertain")
        except NewsletterError as exc:
            self.ledger.fail(row, exc.message, bounce=False, now=self.app.clock.now())
            self._count("failed")
        else:
            return True
        return False


def send_test(app: App, week: Week, addresses: Sequence[str]) -> SendReport:
    """The real message to these addresses only; the ledger and the issue are left alone."""
    issue = _sendable(app, week)
    factory = _factory(app, issue)
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


def dry_run(app: App, week: Week, progress: ProgressCallback | None = None) -> SendReport:
    """Build every active subscriber's message, as a send would, and send none."""
    issue = _sendable(app, week)
    factory = _factory(app, issue)
    report = SendReport(week=str(week), mode="dry-run")
    started = app.clock.monotonic()
    failures: list[str] = []
    with app.transaction() as session:
        total = int(
            session.scalar(
                select(func.count())
                .select_from(Subscriber)
                .where(Subscriber.status == SubscriberStatus.ACTIVE)
            )
            or 0
        )
        query = (
            select(Subscriber.id, Subscriber.email, Subscriber.name)
            .where(Subscriber.status == SubscriberStatus.ACTIVE)
            .order_by(Subscriber.id)
            .execution_options(yield_per=1000)
        )
        for number, (subscriber_id, email, name) in enumerate(session.execute(query), 1):
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
    report.elapsed = app.clock.monotonic() - started
    if progress is not None:
        progress(Progress(total, total, report.sent, len(failures)))
    return report
