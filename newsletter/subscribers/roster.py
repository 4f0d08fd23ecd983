"""The subscriber list as the operator reads it: each address with its subscriptions.

Addresses are streamed in id order and their subscriptions fetched a batch at a time, so a
large list is neither held in memory nor read with one query per reader.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from newsletter.db.models import Subscriber, SubscriberStatus, Subscription, SubscriptionStatus
from newsletter.subscribers.rules import Roster

BATCH = 1000
LIVE = (SubscriptionStatus.ACTIVE, SubscriptionStatus.PENDING)


def with_subscriptions(
    session: Session,
    *,
    status: SubscriberStatus | None = None,
    newsletter: str | None = None,
) -> Iterator[tuple[Subscriber, list[Subscription]]]:
    """Every subscriber (with `status`; with a live subscription to `newsletter`), in the
    order they joined, with all their subscriptions in the order they were made."""
    query = select(Subscriber).order_by(Subscriber.id)
    if status is not None:
        query = query.where(Subscriber.status == status)
    if newsletter is not None:
        query = query.where(
            exists().where(
                Subscription.subscriber_id == Subscriber.id,
                Subscription.newsletter == newsletter,
                Subscription.status.in_(LIVE),
            )
        )
    batch: list[Subscriber] = []
    for subscriber in session.scalars(query.execution_options(yield_per=BATCH)):
        batch.append(subscriber)
        if len(batch) >= BATCH:
            yield from _joined(session, batch)
            batch = []
    yield from _joined(session, batch)


def _joined(
    session: Session, batch: list[Subscriber]
) -> Iterator[tuple[Subscriber, list[Subscription]]]:
    if not batch:
        return
    held: dict[int, list[Subscription]] = {s.id: [] for s in batch}
    for subscription in session.scalars(
        select(Subscription).where(Subscription.subscriber_id.in_(held)).order_by(Subscription.id)
    ):
        held[subscription.subscriber_id].append(subscription)
    for subscriber in batch:
        yield subscriber, held[subscriber.id]


@dataclass(frozen=True)
class Listing:
    email: str
    name: str
    status: SubscriberStatus
    subscribed_at: datetime
    newsletters: tuple[str, ...]  # "brief", "brief (pending)", "brief: Europe, Africa"


def listing(
    app: Roster, status: SubscriberStatus | None = None, newsletter: str | None = None
) -> Iterator[Listing]:
    """One row per address; its newsletters are the subscriptions it has not left."""
    with app.sessions() as session:
        for s, held in with_subscriptions(session, status=status, newsletter=newsletter):
            yield Listing(
                s.email,
                s.name,
                s.status,
                s.subscribed_at,
                tuple(_described(sub) for sub in held if sub.status in LIVE),
            )


def _described(subscription: Subscription) -> str:
    text = subscription.newsletter
    if subscription.status is SubscriptionStatus.PENDING:
        text += " (pending)"
    if subscription.section_list:
        text += ": " + ", ".join(subscription.section_list)
    return text
