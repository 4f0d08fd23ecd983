"""A sender's part of one global rate, when several senders share a send on PostgreSQL.

Each sender records a heartbeat with the number of its connections that have work to do,
and takes `rate x its active connections / the active connections of all live senders`.
The others learn of a change only at their own next heartbeat, so the parts are changed
in the order that never lets the total exceed the rate: a part shrinks at once but grows
one heartbeat late, and a sender that starts sending while others already are (at the
start, or after it had nothing to do) holds back for a heartbeat and a half first.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, delete, func, insert, select, update

from newsletter.clock import Clock, pause
from newsletter.db.models import Issue, Sender
from newsletter.delivery.ledger import Ledger
from newsletter.delivery.rate import TokenBucket

HEARTBEAT_SECONDS = 2.0
JOIN_SECONDS = 1.5 * HEARTBEAT_SECONDS
SENDER_STALE_SECONDS = 15.0  # a sender not heard from for this long no longer takes a share
SENDERS = cast(Table, Sender.__table__)


class RateShare:
    def __init__(self, ledger: Ledger, worker_id: str, rate: float, clock: Clock) -> None:
        self.ledger = ledger
        self.worker_id = worker_id
        self.rate = rate
        self.clock = clock
        self.bucket = TokenBucket(rate, clock)
        self._part: float | None = None  # None while this sender has nothing to do
        self._hold_until = 0.0

    def beat(self, active: int) -> None:
        """Record how many of this sender's connections have work, and set its rate."""
        total = heartbeat(self.ledger, self.worker_id, active, self.clock.now())
        if not active:
            self._part = None
            return
        part = active / total
        if self._part is None and total > active:
            self._hold_until = self.clock.monotonic() + JOIN_SECONDS
        current = part if self._part is None else min(part, self._part)
        self._part = part
        self.bucket.set_rate(self.rate * current)

    async def acquire(self) -> None:
        """Wait for this sender's turn to send one message."""
        wait = self._hold_until - self.clock.monotonic()
        if wait > 0:
            await pause(self.clock, wait)
        await self.bucket.acquire()

    def leave(self) -> None:
        leave(self.ledger, self.worker_id)


def heartbeat(ledger: Ledger, worker_id: str, connections: int, now: datetime) -> int:
    """Say this sender is alive; returns the connections of every sender seen lately.

    Each sender takes `rate * its connections / that total`, so the configured rate
    holds across machines and is taken up again when a sender stops or dies.
    Heartbeats for one issue take turns on its row: two senders starting together
    would otherwise each count only itself, and both take the whole rate.
    """
    with ledger.app.engine.begin() as connection:
        connection.execute(select(Issue.id).where(Issue.id == ledger.issue_id).with_for_update())
        seen = connection.execute(
            update(SENDERS)
            .where(SENDERS.c.worker_id == worker_id)
            .values(connections=connections, seen_at=now)
        )
        if not seen.rowcount:
            connection.execute(
                insert(SENDERS).values(
                    issue_id=ledger.issue_id,
                    worker_id=worker_id,
                    connections=connections,
                    seen_at=now,
                )
            )
        total = connection.execute(
            select(func.sum(SENDERS.c.connections)).where(
                SENDERS.c.issue_id == ledger.issue_id,
                SENDERS.c.seen_at >= now - timedelta(seconds=SENDER_STALE_SECONDS),
            )
        ).scalar()
    return max(int(total or 0), connections)


def leave(ledger: Ledger, worker_id: str) -> None:
    with ledger.app.engine.begin() as connection:
        connection.execute(delete(SENDERS).where(SENDERS.c.worker_id == worker_id))
