"""A sender's part of one global rate, when several senders share a send on PostgreSQL.

Each sender records a heartbeat with the number of its connections that have work to do,
and takes `rate x its active connections / the active connections of all live senders`.
The others learn of a change only at their own next heartbeat, so the parts are changed
in the order that never lets the total exceed the rate: a part shrinks at once but grows
one heartbeat late, and a sender that starts sending while others already are (at the
start, or after it had nothing to do) holds back for a heartbeat and a half first.
"""

from __future__ import annotations

from newsletter.clock import Clock, pause
from newsletter.delivery.ledger import Ledger
from newsletter.delivery.rate import TokenBucket

HEARTBEAT_SECONDS = 2.0
JOIN_SECONDS = 1.5 * HEARTBEAT_SECONDS


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
        total = self.ledger.heartbeat(self.worker_id, active, self.clock.now())
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
        self.ledger.leave(self.worker_id)
