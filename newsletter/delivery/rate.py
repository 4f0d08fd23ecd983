"""A token bucket shared by every connection of one sending process.

When several processes share one send, each bucket holds that process's part of the rate
(`rate_share.py`), which keeps the total within the rate without a coordinator.
"""

from __future__ import annotations

from newsletter.clock import Clock, pause


class TokenBucket:
    """At most `rate` acquisitions per second on average, with bursts of at most `burst`.

    A caller that finds the bucket empty reserves the next token and waits until it is due,
    so waiting callers are served in turn and the rate holds however many connections ask.
    All callers are tasks of one event loop, so no lock is needed between them.
    """

    def __init__(self, rate: float, clock: Clock, burst: float = 1.0) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.clock = clock
        self._tokens = 1.0
        self._last = clock.monotonic()

    async def acquire(self) -> None:
        now = self.clock.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= 1.0
        if self._tokens < 0:
            await pause(self.clock, -self._tokens / self.rate)

    def set_rate(self, rate: float) -> None:
        """Change the rate from now on (a sender's share when others join or leave)."""
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
