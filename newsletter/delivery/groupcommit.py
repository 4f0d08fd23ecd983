"""The connections of one sender commit their ledger steps together.

Every message needs a commit before its body goes out, and SQLite takes one writer at a
time. With several connections in one process the writers queued for the lock while each
held it through the interpreter lock's hand-overs, and four connections sent fewer
messages than one. Here the connection that gets the lock commits the steps of every
connection waiting behind it, in one transaction; they find their step done when their
turn comes. A lone connection commits its own step, as before, at no extra cost.

Since only the one holding the turn commits, the sender needs a single database
connection for all these commits, held for the whole send: a checkout from the pool per
message cost a third of the commit, and one held per SMTP connection would use up the
pool at 16 connections.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy import Connection, Engine

from newsletter.delivery.ledger import Ledger, Step


@dataclass
class _Waiting:
    step: Step
    result: bool | None = None
    error: BaseException | None = None
    done: bool = False


class GroupCommit:
    def __init__(self, ledger: Ledger, engine: Engine) -> None:
        self.ledger = ledger
        self.engine = engine
        self._connection: Connection | None = None
        self._turn = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Waiting] = []

    def advance(self, step: Step) -> bool | None:
        """`Ledger.advance` for one step, committed by whichever waiting connection goes first.

        Returns only once the step is committed, so the message it marks `sending` is still
        never transmitted before the ledger says so.
        """
        mine = _Waiting(step)
        with self._queue_lock:
            self._queue.append(mine)
        with self._turn:
            if not mine.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                try:
                    if self._connection is None:
                        self._connection = self.engine.connect()
                    results = self.ledger.advance(self._connection, [w.step for w in batch])
                except BaseException as exc:
                    self._discard()  # the next commit, if any, starts on a fresh connection
                    for waiting in batch:
                        waiting.error, waiting.done = exc, True
                else:
                    for waiting, result in zip(batch, results, strict=True):
                        waiting.result, waiting.done = result, True
        if mine.error is not None:
            raise mine.error
        return mine.result

    def close(self) -> None:
        with self._turn:
            self._discard()

    def _discard(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
