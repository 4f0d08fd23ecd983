"""The ledger steps of a sender's connections, committed together once per turn of its loop.

N connections would otherwise cost N commits per turn; the steps of every connection that
is ready in one turn share a single commit instead, and each connection still waits for its
own step to be committed before its message goes out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from sqlalchemy import Connection as DbConnection
from sqlalchemy import Engine

from newsletter.delivery.ledger import Ledger, Step


class GroupCommit:
    """The connections' ledger steps, committed together on one database connection.

    A step is queued and its commit scheduled for the loop's next turn, by which time every
    connection that was ready in this turn has queued its own. The database connection is
    held for the whole send: a pool checkout per commit costs a third of the commit.
    """

    def __init__(self, ledger: Ledger, engine: Engine) -> None:
        self.ledger = ledger
        self.engine = engine
        self._connection: DbConnection | None = None
        self._queue: list[tuple[Step, asyncio.Future[bool | None]]] = []

    def advance(self, step: Step) -> Awaitable[bool | None]:
        """`Ledger.advance` for one step; done only once the step is committed, so the
        message it marks `sending` is still never transmitted before the ledger says so."""
        loop = asyncio.get_running_loop()
        if not self._queue:
            loop.call_soon(self._commit)
        done: asyncio.Future[bool | None] = loop.create_future()
        self._queue.append((step, done))
        return done

    def _commit(self) -> None:
        batch, self._queue = self._queue, []
        try:
            if self._connection is None:
                self._connection = self.engine.connect()
            results = self.ledger.advance(self._connection, [step for step, _ in batch])
        except Exception as exc:
            self.close()  # the next commit, if any, starts on a fresh connection
            for _, done in batch:
                done.set_exception(exc)
        else:
            for (_, done), result in zip(batch, results, strict=True):
                done.set_result(result)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
