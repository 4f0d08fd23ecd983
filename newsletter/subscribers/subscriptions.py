"""A subscriber's standing with each newsletter, and the sections they chose.

The address (`Subscriber.status`) and the subscription are two levels on purpose: a bounce or
a complaint is about the address, so it suppresses every newsletter at once, while a reader's
unsubscribe from one message leaves only the newsletter that message came from. A reader
receives a newsletter when both are active. When a reader has left every newsletter, the
address itself becomes unsubscribed, so that an install with one newsletter behaves as a
single list always did.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.orm import Session

from newsletter.db.models import (
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
)

# What a subscription starts as, given the address's standing when it is made: a suppression
# is the address's, so the subscription under it stays active and comes back with it.
STARTS_AS = {
    SubscriberStatus.ACTIVE: SubscriptionStatus.ACTIVE,
    SubscriberStatus.PENDING: SubscriptionStatus.PENDING,
    SubscriberStatus.UNSUBSCRIBED: SubscriptionStatus.UNSUBSCRIBED,
    SubscriberStatus.BOUNCED: SubscriptionStatus.ACTIVE,
}
_LIVE = (SubscriptionStatus.ACTIVE, SubscriptionStatus.PENDING)


def starting_status(status: SubscriberStatus) -> SubscriptionStatus:
    return STARTS_AS[status]


def pack_sections(sections: Iterable[str]) -> str:
    """Sections as stored: one per line, in the order given, without repeats."""
    return "\n".join(dict.fromkeys(s.strip() for s in sections if s.strip()))


def receiving(newsletter: str) -> ColumnElement[bool]:
    """The join condition for readers who get `newsletter`: address and subscription active.

    Use as `select(...).join(Subscription, receiving(slug))` from `Subscriber`.
    """
    return and_(
        Subscription.subscriber_id == Subscriber.id,
        Subscription.newsletter == newsletter,
        Subscription.status == SubscriptionStatus.ACTIVE,
        Subscriber.status == SubscriberStatus.ACTIVE,
    )


def of(session: Session, subscriber: Subscriber) -> list[Subscription]:
    return list(
        session.scalars(
            select(Subscription)
            .where(Subscription.subscriber_id == subscriber.id)
            .order_by(Subscription.id)
        )
    )


def find(session: Session, subscriber: Subscriber, newsletter: str) -> Subscription | None:
    return session.scalars(
        select(Subscription).where(
            Subscription.subscriber_id == subscriber.id, Subscription.newsletter == newsletter
        )
    ).one_or_none()


def join(
    session: Session,
    subscriber: Subscriber,
    newsletter: str,
    *,
    status: SubscriptionStatus,
    at: datetime,
    source: str,
    sections: Sequence[str] | None = None,
    consent_text: str = "",
) -> tuple[Subscription, bool]:
    """Subscribe to `newsletter`, or bring a left subscription back to `status`.

    `sections` None keeps what was chosen before (all, for a new subscription). An active
    subscription is never made pending again. Returns the subscription and whether it changed.
    """
    current = find(session, subscriber, newsletter)
    if current is None:
        current = Subscription(
            subscriber_id=subscriber.id,
            newsletter=newsletter,
            status=status,
            sections=pack_sections(sections or ()),
            created_at=at,
            updated_at=at,
            unsubscribed_at=at if status is SubscriptionStatus.UNSUBSCRIBED else None,
            consent_source=source,
            consent_text=consent_text,
        )
        session.add(current)
        session.flush()
        return current, True
    changed = False
    if current.status is not status and not (
        current.status is SubscriptionStatus.ACTIVE and status is SubscriptionStatus.PENDING
    ):
        current.status = status
        current.unsubscribed_at = at if status is SubscriptionStatus.UNSUBSCRIBED else None
        if status is not SubscriptionStatus.UNSUBSCRIBED:
            current.consent_source, current.consent_text = source, consent_text
        changed = True
    if sections is not None and pack_sections(sections) != current.sections:
        current.sections = pack_sections(sections)
        changed = True
    if changed:
        current.updated_at = at
    return current, changed


def leave(session: Session, subscriber: Subscriber, newsletter: str | None, at: datetime) -> bool:
    """End one subscription (None: all of them); the address becomes unsubscribed when none is
    left. Returns whether anything changed; the caller records the event."""
    changed = False
    for subscription in of(session, subscriber):
        if newsletter in (None, subscription.newsletter) and subscription.status in _LIVE:
            subscription.status = SubscriptionStatus.UNSUBSCRIBED
            subscription.unsubscribed_at = at
            subscription.updated_at = at
            changed = True
    live = [s for s in of(session, subscriber) if s.status in _LIVE]
    if not live and subscriber.status in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING):
        subscriber.status = SubscriberStatus.UNSUBSCRIBED
        subscriber.unsubscribed_at = at
        changed = True
    if changed:
        subscriber.updated_at = at
    return changed


def activate_pending(session: Session, subscriber: Subscriber, at: datetime) -> bool:
    """A confirmed address: every subscription it asked for starts."""
    changed = False
    for subscription in of(session, subscriber):
        if subscription.status is SubscriptionStatus.PENDING:
            subscription.status = SubscriptionStatus.ACTIVE
            subscription.updated_at = at
            changed = True
    return changed


def restore(session: Session, subscriber: Subscriber, since: datetime, at: datetime) -> None:
    """Bring back the subscriptions that an address-wide suppression at `since` ended."""
    for subscription in of(session, subscriber):
        ended = subscription.unsubscribed_at
        if subscription.status is SubscriptionStatus.UNSUBSCRIBED and ended and ended >= since:
            subscription.status = SubscriptionStatus.ACTIVE
            subscription.unsubscribed_at = None
            subscription.updated_at = at
