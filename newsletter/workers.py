"""The threads of one send: one SMTP connection each, sharing a rate limit, the ledger and
the counters the progress bar and the final report are made from."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.exc import DBAPIError

from .app import App
from .errors import DatabaseError, DeliveryError, NewsletterError
from .ledger import Claimed, Ledger
from .message import MessageFactory
from .mime import Recipient
from .ratelimit import TokenBucket
from .transports import (
    Connection,
    PermanentFailure,
    PolicyFailure,
    ServerUnavailable,
    TransientFailure,
    UncertainOutcome,
)

log = logging.getLogger(__name__)

BATCH = 100
HEARTBEAT_SECONDS = 2.0
CONNECT_RETRIES = 4
POLL_SECONDS = 1.0


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


def database_error(exc: DBAPIError) -> DatabaseError:
    """Every sent message is already recorded, so a database failure is a pause, not a loss."""
    text = str(exc.orig or exc).strip().splitlines()
    return DatabaseError(
        f"the database failed during the send: {text[0] if text else type(exc).__name__}",
        hint="check that the database is reachable, then run `newsletter send` again to resume",
    )


class SendWorkers:
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
            error = database_error(failure) if isinstance(failure, DBAPIError) else failure
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
