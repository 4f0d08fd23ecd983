"""The connections of one send as tasks on one event loop, sharing a rate limit, the ledger
and the counters the progress bar and the final report are made from.

One thread does everything: it builds each message, speaks SMTP on every connection and
writes the ledger. The ledger is synchronous SQLAlchemy and its statements run in that
thread too; while one runs, the servers are reading what was last written to them. The
steps every message needs (`Ledger.advance`) are queued by the connections and committed
together once per turn of the loop (`GroupCommit`), so N connections cost one commit per turn
rather than N.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from newsletter.clock import pause
from newsletter.delivery.group_commit import GroupCommit
from newsletter.delivery.ledger import Claimed, Ledger, Step
from newsletter.delivery.options import (
    Progress,
    ProgressCallback,
    Sending,
    SendOptions,
    SendReport,
    database_error,
)
from newsletter.delivery.rate import TokenBucket
from newsletter.delivery.rate_share import HEARTBEAT_SECONDS, RateShare
from newsletter.delivery.variants import Variants
from newsletter.errors import DeliveryError, NewsletterError
from newsletter.mail.headers import Recipient
from newsletter.mail.message import Envelope, MessageFactory
from newsletter.transport.base import AsyncConnection
from newsletter.transport.failures import (
    PermanentFailure,
    PolicyFailure,
    ServerUnavailable,
    TransientFailure,
    UncertainOutcome,
)

log = logging.getLogger(__name__)

BATCH = 100
CONNECT_RETRIES = 4
POLL_SECONDS = 1.0
PROGRESS_SECONDS = 0.2


class Limiter(Protocol):
    async def acquire(self) -> None: ...


@dataclass(frozen=True)
class _Lane:
    """What one connection's task holds for the whole send."""

    claimer: str  # the name its claims on ledger rows go by
    outbound: AsyncConnection


class SendLoop:
    """The tasks of one send: one connection each, sharing a rate limit and counters."""

    def __init__(
        self,
        app: Sending,
        ledger: Ledger,
        variants: Variants,
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
        self.clock = app.clock
        self.transport = app.transport
        self.ledger = ledger
        self.commits = GroupCommit(ledger, app.engine)
        self.variants = variants
        self.stop = options.stop
        self.resend_uncertain = options.resend_uncertain
        self.connections = max(options.connections or delivery.connections, 1)
        rate = delivery.rate if options.rate is None else options.rate
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.share = (
            RateShare(ledger, self.worker_id, rate, app.clock) if shared and rate > 0 else None
        )
        self.limiter: Limiter | None = self.share or (
            TokenBucket(rate, app.clock) if rate > 0 else None
        )
        per_connection = rate / self.connections if rate > 0 else float("inf")
        lease_share = per_connection * delivery.lease_seconds / 4
        self.batch = int(max(1, min(BATCH, lease_share)))
        self.total = total
        self.sent = 0
        self.failed = 0
        self.skipped = 0
        self.done = 0
        # Claimers of the connections with nothing to send now: all of them until they claim.
        self.idle = {f"{self.worker_id}/{n}" for n in range(self.connections)}
        self.errors: list[BaseException] = []

    def execute(self, progress: ProgressCallback | None) -> SendReport:
        started = self.clock.monotonic()
        try:
            asyncio.run(self._run(progress))
        finally:
            self.commits.close()
            if self.share is not None:
                self.share.leave()
        if progress is not None:
            progress(self._progress())
        report = SendReport(
            week="",
            sent=self.sent,
            skipped=self.skipped,
            elapsed=self.clock.monotonic() - started,
            renders=self.variants.renders,
        )
        for failure in self.errors:
            error = database_error(failure) if isinstance(failure, SQLAlchemyError) else failure
            if isinstance(error, NewsletterError):
                report.error = str(error)
                break
            raise error
        return report

    async def _run(self, progress: ProgressCallback | None) -> None:
        """Run the connections to their end, showing progress and beating meanwhile.

        Interrupted (Ctrl-C cancels this task), the connections are asked to stop and each
        finishes and records the message it has on the wire before the interrupt goes on.
        """
        tasks = {asyncio.create_task(self._work(n)) for n in range(self.connections)}
        beat = self.clock.monotonic()
        try:
            pending = tasks
            while pending:
                _, pending = await asyncio.wait(pending, timeout=PROGRESS_SECONDS)
                if progress is not None:
                    progress(self._progress())
                if self.clock.monotonic() - beat >= HEARTBEAT_SECONDS:
                    beat = self.clock.monotonic()
                    self._share()
        except asyncio.CancelledError:
            self.stop.set()
            await asyncio.wait(tasks)
            raise

    def _share(self) -> None:
        """Record how many connections have work, for this sender's part of the rate."""
        if self.share is None:
            return
        try:
            self.share.beat(self.connections - len(self.idle))
        except DBAPIError as exc:
            self._fail_run(exc)

    def _set_idle(self, claimer: str, idle: bool) -> None:
        was_idle = len(self.idle) == self.connections
        if idle:
            self.idle.add(claimer)
        else:
            self.idle.discard(claimer)
        if was_idle and not idle:
            self._share()  # this sender starts sending again: the others must know at once

    def _progress(self) -> Progress:
        waiting = len(self.idle) == self.connections
        return Progress(self.done, self.total, self.sent, self.failed, waiting)

    def _count(self, outcome: str) -> None:
        self.done += 1
        if outcome == "sent":
            self.sent += 1
        elif outcome == "failed":
            self.failed += 1
        elif outcome == "skipped":
            self.skipped += 1

    def _fail_run(self, error: BaseException) -> None:
        self.errors.append(error)
        self.stop.set()

    async def _work(self, number: int) -> None:
        claimer = f"{self.worker_id}/{number}"  # as in `self.idle`
        try:
            connection = self.transport.stream()
            try:
                await self._loop(_Lane(claimer, connection))
            finally:
                await connection.close()
        except Exception as exc:
            self._fail_run(exc)
        finally:
            try:
                self.ledger.release(claimer)
            except Exception as exc:
                self._fail_run(exc)

    async def _loop(self, lane: _Lane) -> None:
        unreachable = 0
        while not self.stop.is_set():
            now = self.clock.now()
            batch = self.ledger.claim(lane.claimer, self.batch, now)
            if not batch:
                # A sender that dies during this run leaves rows that only now become
                # uncertain; with --resend-uncertain they are sent again in this run.
                found = self.ledger.recover(now, sole_sender=False, requeue=self.resend_uncertain)
                if found and self.resend_uncertain:
                    self.total += found
                    continue
                self._set_idle(lane.claimer, True)
                wait = self.ledger.seconds_until_due(now, self.worker_id)
                if wait is None:
                    return
                await pause(self.clock, min(wait, POLL_SECONDS) if wait else 0.05)
                continue
            self._set_idle(lane.claimer, False)
            try:
                await self._send_batch(lane, batch)
                unreachable = 0
            except ServerUnavailable as exc:
                unreachable += 1
                if unreachable > CONNECT_RETRIES:
                    raise DeliveryError(exc.message) from None  # its own hint, once
                await pause(self.clock, 2.0**unreachable)

    async def _send_batch(self, lane: _Lane, batch: list[Claimed]) -> None:
        """Send a claimed batch, overlapping the ledger's work with the server's.

        Each message is built while the server reads the one before, and its row is marked
        `sending` (together with the previous row's `sent`, in one commit) while the
        envelope's replies are on their way. At most one row per connection is ever
        `sending`, so a crash leaves at most one message per connection in doubt.
        """
        work = self._with_copies(lane, batch)
        accepted: Claimed | None = None  # the server has it; not yet recorded
        in_flight: Claimed | None = None  # transmitted; the server's verdict not yet read
        try:
            for index, (row, factory) in enumerate(work):
                if self.stop.is_set():
                    break
                envelope = self._build(row, factory)
                if in_flight is not None:
                    accepted = in_flight if await self._verdict(in_flight, lane) else None
                    in_flight = None
                if envelope is None:
                    continue
                try:
                    if await self._start(lane, row, envelope, accepted):
                        in_flight = row
                except ServerUnavailable:
                    self.ledger.release(lane.claimer, [row for row, _ in work[index + 1 :]])
                    raise
                finally:
                    accepted = None
        finally:
            if in_flight is not None and await self._verdict(in_flight, lane):
                accepted = in_flight
            if accepted is not None:
                await self._advance(lane, accepted, None)

    async def _start(
        self, lane: _Lane, row: Claimed, envelope: Envelope, accepted: Claimed | None
    ) -> bool:
        """Offer `row`'s message, record the one before it, then transmit; True once the
        message is with the server, awaiting its verdict."""
        if self.limiter is not None:
            await self.limiter.acquire()
        failure = await _attempt(lane.outbound.offer(envelope.sender, envelope.recipient))
        if not await self._advance(lane, accepted, row):
            if failure is None:
                await lane.outbound.abandon()
            return False
        failure = failure or await _attempt(lane.outbound.transmit(envelope.message, envelope.data))
        if failure is None:
            return True
        self._settle(row, failure)
        if isinstance(failure, ServerUnavailable):
            raise failure
        return False

    async def _advance(self, lane: _Lane, accepted: Claimed | None, row: Claimed | None) -> bool:
        """Record `accepted` as sent and mark `row` sending; False if `row` is not to go."""
        step = Step(
            lane.claimer, None if accepted is None else accepted.delivery_id, row, self.clock.now()
        )
        go = await self.commits.advance(step)
        if accepted is not None:
            self._count("sent")
        if go is False:
            self._count("skipped")
        return bool(go)

    def _with_copies(
        self, lane: _Lane, batch: list[Claimed]
    ) -> list[tuple[Claimed, MessageFactory]]:
        """Each row of a claimed batch with the factory of its reader's copy; the rows whose
        readers' sections have nothing in this issue are skipped, together in one commit.

        A copy that cannot be rendered stops the send: it is no reader's fault.
        """
        work: list[tuple[Claimed, MessageFactory]] = []
        empty: list[Claimed] = []
        for row in batch:
            factory = self.variants.factory(row.sections)
            if factory is None:
                empty.append(row)
            else:
                work.append((row, factory))
        if empty:
            for _ in range(self.ledger.skip_empty(lane.claimer, empty, self.clock.now())):
                self._count("skipped")
        return work

    def _build(self, row: Claimed, factory: MessageFactory) -> Envelope | None:
        """The row's message, in its reader's copy; a row whose message cannot be made fails
        on its own."""
        recipient = Recipient(row.subscriber_id, row.email, row.name)
        try:
            return factory.build(recipient, self.clock.now())
        except NewsletterError as exc:
            self.ledger.fail(row, exc.message, bounce=False, now=self.clock.now())
            self._count("failed")
            return None

    async def _verdict(self, row: Claimed, lane: _Lane) -> bool:
        """Whether the server accepted the message transmitted for `row`."""
        failure = await _attempt(lane.outbound.confirm())
        if failure is None:
            return True
        self._settle(row, failure)
        return False

    def _settle(self, row: Claimed, failure: DeliveryError) -> None:
        """Record a row the server did not take, by the kind of its failure."""
        now = self.clock.now()
        if isinstance(failure, PolicyFailure | ServerUnavailable):
            self.ledger.put_back(row, now)
            if isinstance(failure, PolicyFailure):
                self._fail_run(failure)
        elif isinstance(failure, PermanentFailure):
            self.ledger.fail(row, failure.message, bounce=failure.bounce, now=now)
            self._count("failed")
        elif isinstance(failure, TransientFailure):
            retried = self.ledger.defer(row, failure.message, now)
            self._count("deferred" if retried else "failed")
        elif isinstance(failure, UncertainOutcome):
            self.ledger.uncertain(row, failure.message, now)
            self._count("uncertain")
        else:
            self.ledger.fail(row, failure.message, bounce=False, now=now)
            self._count("failed")


async def _attempt(step: Awaitable[None]) -> DeliveryError | None:
    try:
        await step
    except DeliveryError as exc:
        return exc
    return None
