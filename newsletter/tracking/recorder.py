"""Counting clicks behind the redirect: a queue and one writer thread per web process.

The request only queues the click; the writer takes whatever has queued (up to `BATCH`) and
counts it in one transaction, so a thousand clicks a second cost a few commits, not a
thousand. If the process dies, at most the clicks of the last moment go uncounted; a click
is never lost from a reader's point of view, because the redirect never waited for it. A
batch that fails is logged and dropped: counting must never take the redirects down.
"""

from __future__ import annotations

import logging
import queue
import threading

from sqlalchemy.exc import SQLAlchemyError

from newsletter.runtime import Runtime
from newsletter.tracking.clicks import Limiter, Pending, count

log = logging.getLogger(__name__)
BATCH = 500


class Recorder:
    def __init__(self, app: Runtime, limiter: Limiter) -> None:
        self.app = app
        self.limiter = limiter
        self._queue: queue.Queue[Pending | None] = queue.Queue(maxsize=100_000)
        self._thread = threading.Thread(target=self._run, name="click-recorder", daemon=True)
        self._thread.start()

    def record(self, click: Pending) -> None:
        try:
            self._queue.put_nowait(click)
        except queue.Full:
            log.warning("click not counted: the counting queue is full")

    def flush(self) -> None:
        """Wait until every click queued so far is counted."""
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            batch = [first]
            while len(batch) < BATCH and batch[-1] is not None:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            clicks = [click for click in batch if click is not None]
            try:
                if clicks:
                    count(self.app, self.limiter, clicks)
            except SQLAlchemyError as exc:
                log.error("%d clicks not counted: %s", len(clicks), exc)
            finally:
                for _ in batch:
                    self._queue.task_done()
            if batch[-1] is None:
                return
