"""Several connections stepping through their claims at once, committed together."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.exc import OperationalError

from newsletter.app import App
from newsletter.db.models import Delivery, DeliveryStatus, Issue
from newsletter.delivery.group_commit import GroupCommit
from newsletter.delivery.ledger import Claimed, Ledger, Step

from .test_delivery import built, subscribe


def claimed_ledger(app: App, claimers: list[str], each: int) -> tuple[Ledger, list[list[Claimed]]]:
    built(app)
    subscribe(app, len(claimers) * each)
    with app.transaction() as session:
        issue_id = session.scalars(select(Issue.id)).one()
    ledger = Ledger(app, issue_id)
    with app.engine.begin() as connection:
        ledger.snapshot(connection, app.clock.now())
    return ledger, [ledger.claim(claimer, each, app.clock.now()) for claimer in claimers]


def test_concurrent_steps_each_commit_once_with_their_own_result(app: App) -> None:
    claimers = [f"sender/{n}" for n in range(4)]
    ledger, claims = claimed_ledger(app, claimers, 15)
    commits = GroupCommit(ledger, app.engine)
    results: dict[str, list[bool | None]] = {}
    batches: list[int] = []
    advance = ledger.advance

    def counted(connection: object, steps: list[Step]) -> list[bool | None]:
        batches.append(len(steps))
        return advance(connection, steps)  # type: ignore[arg-type]

    ledger.advance = counted  # type: ignore[method-assign]

    async def work(claimer: str, rows: list[Claimed]) -> None:
        mine = results.setdefault(claimer, [])
        previous = None
        for row in [*rows, None]:
            mine.append(await commits.advance(Step(claimer, previous, row, app.clock.now())))
            previous = row.delivery_id if row else None

    async def main() -> None:
        await asyncio.gather(*(work(c, rows) for c, rows in zip(claimers, claims, strict=True)))

    asyncio.run(main())
    commits.close()
    assert all(results[c] == [True] * 15 + [None] for c in claimers)
    assert sum(batches) == 4 * 16
    assert max(batches) == 4, "the connections' steps were not committed together"
    with app.transaction() as session:
        assert set(session.scalars(select(Delivery.status))) == {DeliveryStatus.SENT}


def test_a_row_claimed_by_another_connection_is_not_marked(app: App) -> None:
    ledger, (first, _second) = claimed_ledger(app, ["sender/0", "sender/1"], 2)
    commits = GroupCommit(ledger, app.engine)

    async def step() -> bool | None:
        return await commits.advance(Step("sender/1", None, first[0], app.clock.now()))

    assert asyncio.run(step()) is None
    commits.close()


def test_a_failed_commit_reaches_the_caller(app: App, tmp_path: Path) -> None:
    ledger, (rows,) = claimed_ledger(app, ["sender/0"], 1)
    unreachable = create_engine(f"sqlite:///{tmp_path / 'missing' / 'folder' / 'x.db'}")
    commits = GroupCommit(ledger, unreachable)

    async def step() -> bool | None:
        return await commits.advance(Step("sender/0", None, rows[0], app.clock.now()))

    with pytest.raises(OperationalError):
        asyncio.run(step())
    commits.close()
    unreachable.dispose()
