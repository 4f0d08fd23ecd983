"""The delivery ledger of one issue: one row per recipient, moved through its states in
small transactions so that a crash at any point loses nobody and sends nobody a second copy.

    queued --claim--> (queued, claimed) --mark_sending--> sending --> sent
                                                                 \\-> deferred (retry later)
                                                                 \\-> failed (with reply)
                                                                 \\-> uncertain (outcome unknown)
    (queued, claimed) --subscriber no longer active--> skipped
    (queued, claimed) --nothing in the reader's sections--> skipped

A claim is a lease (`claimed_by`, `lease_until`) on a batch of queued rows, taken with
`FOR UPDATE SKIP LOCKED` on PostgreSQL so that any number of senders share a send. A row is
marked `sending` in its own commit just before its SMTP transaction and `sent` right after the
server accepts it, so at most one row per connection is ever in doubt. A row still `sending`
when its lease has run out belonged to a sender that died: it becomes `uncertain`, and only
an explicit request sends it again.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import (
    Connection,
    Table,
    bindparam,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)

from newsletter.db.driver import DriverStatement, driver_transaction
from newsletter.db.models import (
    CLAIMABLE_STATUSES,
    Delivery,
    DeliveryStatus,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
)
from newsletter.delivery.options import Sending
from newsletter.delivery.variants import NOTHING_IN_SECTIONS
from newsletter.subscribers.rules import mark_bounced
from newsletter.subscribers.subscriptions import receiving

TABLE = cast(Table, Delivery.__table__)
D = TABLE.c
PENDING = CLAIMABLE_STATUSES
MAX_REPLY = 1000

# The two statements run once per message, built once: Core on the table, fixed parameters.
_MARK_SENT = (
    update(TABLE)
    .where(D.id == bindparam("row"))
    .values(
        status=DeliveryStatus.SENT,
        sent_at=bindparam("now"),
        lease_until=None,
        updated_at=bindparam("now"),
    )
)
_IS_OURS = (
    D.id == bindparam("row"),
    D.claimed_by == bindparam("claimer"),
    or_(D.status == DeliveryStatus.QUEUED, D.status == DeliveryStatus.DEFERRED),
)
_MARK_SENDING = (
    update(TABLE)
    .where(
        *_IS_OURS,
        exists().where(
            Subscriber.id == bindparam("subscriber"),
            Subscriber.status == SubscriberStatus.ACTIVE,
        ),
        # The reader may have left this newsletter alone since the send was queued.
        exists().where(
            Subscription.subscriber_id == bindparam("subscriber"),
            Subscription.newsletter == bindparam("newsletter"),
            Subscription.status == SubscriptionStatus.ACTIVE,
        ),
    )
    .values(
        status=DeliveryStatus.SENDING,
        attempts=D.attempts + 1,
        lease_until=bindparam("lease"),
        updated_at=bindparam("now"),
    )
)
# A claim's two statements, built once: built per claim, with the ids as literals,
# SQLAlchemy spent longer on them than the database did. The due rows come with their
# subscriber's address, so the claim reads them in the statement that finds them.
_CLAIM_DUE = (
    select(D.id, D.subscriber_id, Subscriber.email, Subscriber.name, D.attempts, D.sections)
    .join(Subscriber, Subscriber.id == D.subscriber_id)
    .where(
        D.issue_id == bindparam("issue"),
        # As literals, the statuses match the claim index's own condition; bound values
        # would leave the database unable to use it.
        D.status.in_(bindparam("pending", list(PENDING), expanding=True, literal_execute=True)),
        or_(D.next_attempt_at.is_(None), D.next_attempt_at <= bindparam("now")),
        or_(D.lease_until.is_(None), D.lease_until < bindparam("now")),
    )
    .limit(bindparam("limit"))
    .with_for_update(of=TABLE, skip_locked=True)
)
_CLAIM_TAKE = (
    update(TABLE)
    .where(D.id.in_(bindparam("ids", expanding=True)))
    .values(claimed_by=bindparam("claimer"), lease_until=bindparam("lease"))
)
_MARK_SKIPPED = (
    update(TABLE)
    .where(*_IS_OURS)
    .values(
        status=DeliveryStatus.SKIPPED,
        lease_until=None,
        last_reply="the subscriber was no longer active at send time",
        updated_at=bindparam("now"),
    )
)
_MARK_NOTHING_TO_SEND = (
    update(TABLE)
    .where(
        D.id.in_(bindparam("rows", expanding=True)),
        D.claimed_by == bindparam("claimer"),
        D.status.in_(PENDING),
    )
    .values(
        status=DeliveryStatus.SKIPPED,
        lease_until=None,
        last_reply=NOTHING_IN_SECTIONS,
        updated_at=bindparam("now"),
    )
)


@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    subscriber_id: int
    email: str
    name: str
    attempts: int
    sections: str = ""  # as chosen when the send was queued: which copy the reader gets


@dataclass(frozen=True)
class Step:
    """One connection moving on: `sent` was accepted, `next_row` is about to go."""

    claimer: str
    sent: int | None
    next_row: Claimed | None
    now: datetime


class Ledger:
    def __init__(self, app: Sending, issue_id: int) -> None:
        self.app = app
        self.issue_id = issue_id
        self.newsletter = app.settings.newsletter.slug
        self.delivery = app.settings.delivery
        dialect = app.engine.dialect
        self._mark_sent = DriverStatement(_MARK_SENT, dialect)
        self._mark_sending = DriverStatement(_MARK_SENDING, dialect)
        self._mark_skipped = DriverStatement(_MARK_SKIPPED, dialect)

    def _lease(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.delivery.lease_seconds)

    def snapshot(self, connection: Connection, now: datetime) -> int:
        """One queued row per reader of the newsletter, with the sections they chose, in a
        single INSERT ... SELECT."""
        audience = select(
            literal(self.issue_id),
            Subscriber.id,
            literal(DeliveryStatus.QUEUED.value),
            literal(0),
            literal(""),
            literal(""),
            literal(now, type_=Delivery.updated_at.type),
            Subscription.sections,
        ).join(Subscription, receiving(self.app.settings.newsletter.slug))
        result = connection.execute(
            insert(Delivery).from_select(
                [
                    "issue_id",
                    "subscriber_id",
                    "status",
                    "attempts",
                    "claimed_by",
                    "last_reply",
                    "updated_at",
                    "sections",
                ],
                audience,
            )
        )
        return int(result.rowcount or 0)

    def recover(self, now: datetime, *, sole_sender: bool, requeue: bool = False) -> int:
        """Rows left `sending` by a sender that died become `uncertain`, or `queued` again
        when the operator asked for uncertain rows to be resent; returns how many.

        As the sole sender (the SQLite lock is ours) every such row is orphaned at once;
        otherwise only those whose lease has run out, since their sender may be alive.
        """
        mine = D.issue_id == self.issue_id
        stale = [mine, D.status == DeliveryStatus.SENDING]
        if not sole_sender:
            stale.append(D.lease_until < now)
        with self.app.engine.begin() as connection:
            result = connection.execute(
                update(TABLE)
                .where(*stale)
                .values(
                    status=DeliveryStatus.QUEUED if requeue else DeliveryStatus.UNCERTAIN,
                    lease_until=None,
                    last_reply="the sender stopped during this message's SMTP transaction",
                    updated_at=now,
                )
            )
            if sole_sender:
                connection.execute(
                    update(TABLE)
                    .where(mine, D.status.in_(PENDING), D.lease_until.is_not(None))
                    .values(lease_until=None)
                )
        return int(result.rowcount or 0)

    def requeue_uncertain(self, now: datetime) -> int:
        with self.app.engine.begin() as connection:
            result = connection.execute(
                update(TABLE)
                .where(D.issue_id == self.issue_id, D.status == DeliveryStatus.UNCERTAIN)
                .values(status=DeliveryStatus.QUEUED, lease_until=None, updated_at=now)
            )
        return int(result.rowcount or 0)

    def claim(self, claimer: str, limit: int, now: datetime) -> list[Claimed]:
        with self.app.engine.begin() as connection:
            # No ORDER BY: the claim index then yields the first `limit` due rows at once,
            # where ordering made the database sort every pending row on every claim (32 ms
            # per claim with 170,000 rows pending, growing with the list).
            due = {"issue": self.issue_id, "now": now, "limit": limit}
            found = connection.execute(_CLAIM_DUE, due)
            rows = sorted((Claimed(*row) for row in found), key=lambda row: row.delivery_id)
            if not rows:
                return []
            ids = [row.delivery_id for row in rows]
            take = {"ids": ids, "claimer": claimer, "lease": self._lease(now)}
            connection.execute(_CLAIM_TAKE, take)
        return rows

    def advance(self, connection: Connection, steps: Sequence[Step]) -> list[bool | None]:
        """For each step, record the previous row as sent and mark the next one `sending`;
        all in one commit.

        Each result says whether the step's next row may be sent: False if its subscriber
        is no longer active (the row is skipped), None if the row is no longer ours.
        `connection` is held by the caller for the whole send, and the statements and their
        transaction go straight to the driver (`db/driver.py`): this runs once per turn of
        the send's event loop, and SQLAlchemy's execution path cost more than the database.
        """
        with driver_transaction(connection):
            return [self._step(connection, step) for step in steps]

    def _step(self, connection: Connection, step: Step) -> bool | None:
        if step.sent is not None:
            self._mark_sent.execute(connection, {"row": step.sent, "now": step.now})
        if step.next_row is None:
            return None
        ours = {"row": step.next_row.delivery_id, "claimer": step.claimer, "now": step.now}
        marked = self._mark_sending.execute(
            connection,
            {
                **ours,
                "subscriber": step.next_row.subscriber_id,
                "newsletter": self.newsletter,
                "lease": self._lease(step.now),
            },
        )
        if marked:
            return True
        return False if self._mark_skipped.execute(connection, ours) else None

    def skip_empty(self, claimer: str, rows: Sequence[Claimed], now: datetime) -> int:
        """Skip claimed rows whose readers' sections have nothing in this issue, in one
        commit; returns how many were still ours (the others are another sender's now,
        after our lease ran out)."""
        ours = {"rows": [row.delivery_id for row in rows], "claimer": claimer, "now": now}
        with self.app.engine.begin() as connection:
            return int(connection.execute(_MARK_NOTHING_TO_SEND, ours).rowcount or 0)

    def put_back(self, row: Claimed, now: datetime) -> None:
        """Undo `advance` for a row that was never offered to the server."""
        self._finish(
            row, now, status=DeliveryStatus.QUEUED, attempts=D.attempts - 1, lease_until=None
        )

    def defer(self, row: Claimed, reply: str, now: datetime) -> bool:
        """Schedule a retry with exponential backoff and jitter; returns False when the
        attempts are used up and the row has failed instead."""
        attempts = row.attempts + 1
        if attempts >= self.delivery.max_attempts:
            self.fail(row, f"gave up after {attempts} attempts: {reply}", bounce=False, now=now)
            return False
        delay = self.delivery.retry_base_seconds * 2 ** (attempts - 1)
        delay *= 1 + random.random() / 2
        self._finish(
            row,
            now,
            status=DeliveryStatus.DEFERRED,
            next_attempt_at=now + timedelta(seconds=delay),
            lease_until=None,
            last_reply=reply[:MAX_REPLY],
        )
        return True

    def uncertain(self, row: Claimed, reply: str, now: datetime) -> None:
        self._finish(
            row,
            now,
            status=DeliveryStatus.UNCERTAIN,
            lease_until=None,
            last_reply=reply[:MAX_REPLY],
        )

    def fail(self, row: Claimed, reply: str, *, bounce: bool, now: datetime) -> None:
        """A permanent failure; a bad address also marks the subscriber bounced."""
        with self.app.transaction() as session:
            session.execute(
                update(TABLE)
                .where(D.id == row.delivery_id)
                .values(
                    status=DeliveryStatus.FAILED,
                    lease_until=None,
                    last_reply=reply[:MAX_REPLY],
                    updated_at=now,
                )
            )
            if bounce:
                subscriber = session.get(Subscriber, row.subscriber_id)
                if subscriber is not None:
                    mark_bounced(
                        session,
                        subscriber,
                        at=now,
                        source="smtp",
                        detail=reply[:MAX_REPLY],
                        issue_id=self.issue_id,
                    )

    def _finish(self, row: Claimed, now: datetime, **values: object) -> None:
        with self.app.engine.begin() as connection:
            connection.execute(
                update(TABLE).where(D.id == row.delivery_id).values(updated_at=now, **values)
            )

    def release(self, claimer: str, rows: Sequence[Claimed] = ()) -> None:
        """Give back claimed rows not yet sent, so another sender (or the next run) takes them."""
        where = [D.issue_id == self.issue_id, D.claimed_by == claimer, D.status.in_(PENDING)]
        if rows:
            where.append(D.id.in_([r.delivery_id for r in rows]))
        with self.app.engine.begin() as connection:
            connection.execute(update(TABLE).where(*where).values(lease_until=None))

    def seconds_until_due(self, now: datetime, own_prefix: str) -> float | None:
        """How long until there may be work for this sender; None when there will be none.

        Rows leased by this process's own connections are left to them. Rows leased by
        another sender count from the end of their lease, in case that sender has died.
        """
        unleased = (
            D.issue_id == self.issue_id,
            D.status.in_(PENDING),
            or_(D.lease_until.is_(None), D.lease_until < now),
        )
        others = (
            D.issue_id == self.issue_id,
            D.status.in_((*PENDING, DeliveryStatus.SENDING)),
            D.lease_until >= now,
            ~D.claimed_by.startswith(own_prefix, autoescape=True),
        )
        with self.app.engine.connect() as connection:
            due_now = connection.execute(
                select(
                    exists().where(
                        *unleased, or_(D.next_attempt_at.is_(None), D.next_attempt_at <= now)
                    )
                )
            ).scalar()
            if due_now:
                return 0.0
            times = connection.execute(
                select(
                    select(func.min(D.next_attempt_at)).where(*unleased).scalar_subquery(),
                    select(func.min(D.lease_until)).where(*others).scalar_subquery(),
                )
            ).one()
        candidates = [_aware(t, now) for t in times if t is not None]
        if not candidates:
            return None
        return max((min(candidates) - now).total_seconds(), 0.0)

    def counts(self) -> dict[DeliveryStatus, int]:
        with self.app.engine.connect() as connection:
            rows = connection.execute(
                select(D.status, func.count()).where(D.issue_id == self.issue_id).group_by(D.status)
            ).all()
        counts = dict.fromkeys(DeliveryStatus, 0)
        for status, count in rows:
            counts[DeliveryStatus(status)] = count
        return counts

    def failures(self) -> list[str]:
        with self.app.engine.connect() as connection:
            return list(
                connection.execute(
                    select(D.last_reply).where(
                        D.issue_id == self.issue_id, D.status == DeliveryStatus.FAILED
                    )
                ).scalars()
            )


def _aware(value: datetime | str, now: datetime) -> datetime:
    """Aggregates bypass the column type on SQLite, which hands back naive text."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=now.tzinfo)
