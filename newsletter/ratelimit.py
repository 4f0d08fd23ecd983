"""A token bucket shared by every connection of one sending process.

The budget is per process: several processes sharing one send each take their share of the
configured rate (`rate / processes`), which keeps the total within it without a coordinator.
"""

from __future__ import annotations

import threading

from .clock import Clock


class TokenBucket:
    """At most `rate` acquisitions per second on average, with bursts of at most `burst`.

    A caller that finds the bucket empty reserves the next token and sleeps until it is due,
    so waiting callers are served in turn and the rate holds however many threads ask.
    """

    def __init__(self, rate: float, clock: Clock, burst: float = 1.0) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.clock = clock
        self._tokens = 1.0
        self._last = clock.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = self.clock.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1.0
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self.clock.sleep(wait)
