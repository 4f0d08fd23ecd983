"""A person's data rights: everything held about an address, and erasing it.

`held` gathers the subscriber row (the consent record), its subscriptions (each newsletter's
standing and chosen sections), its events, its deliveries and, in `per-reader` mode, its
clicks. `forget` deletes all of them in one transaction and leaves a
keyed hash (see `forgotten`). Click counts per article name nobody and stay.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from newsletter.db.models import (
    Article,
    ClickEvent,
    Delivery,
    Event,
    ForgottenAddress,
    Issue,
    Subscription,
)
from newsletter.errors import ConfigError, NotFoundError
from newsletter.runtime import Runtime
from newsletter.subscribers.addresses import normalise_email
from newsletter.subscribers.forgotten import digest, forgotten_among
from newsletter.subscribers.rules import find

_RECORD = (
    "email",
    "name",
    "status",
    "subscribed_at",
    "confirmed_at",
    "unsubscribed_at",
    "consent_source",
    "consent_ip",
    "consent_text",
    "soft_bounces",
    "created_at",
    "updated_at",
)


def held(app: Runtime, email: str) -> dict[str, Any]:
    """Everything stored about `email`, as plain values (times as datetimes)."""
    address = normalise_email(email)
    with app.transaction() as session:
        subscriber = find(session, address)
        if subscriber is None:
            if forgotten_among(session, app.settings.secrets.secret_keys, [address]):
                return {"email": address, "erased": True}
            raise NotFoundError(f"nothing is held about {address}")
        return {
            "email": address,
            "erased": False,
            "record": {key: _plain(getattr(subscriber, key)) for key in _RECORD},
            "subscriptions": _subscriptions(session, subscriber.id),
            "events": _events(session, subscriber.id),
            "deliveries": _deliveries(session, subscriber.id),
            "clicks": _clicks(session, subscriber.id),
        }


def forget(app: Runtime, email: str) -> None:
    """Erase everything about `email`, keeping only a keyed hash of the address."""
    keys = app.settings.secrets.secret_keys
    if not keys:
        raise ConfigError("NEWSLETTER_SECRET_KEY is not set; it keys the hash that is kept")
    address = normalise_email(email)
    now = app.clock.now()
    with app.transaction() as session:
        subscriber = find(session, address)
        if subscriber is None:
            if forgotten_among(session, keys, [address]):
                return
            raise NotFoundError(f"nothing is held about {address}")
        for table in (ClickEvent, Delivery, Event, Subscription):
            session.execute(delete(table).where(table.subscriber_id == subscriber.id))
        session.delete(subscriber)
        session.flush()
        if not forgotten_among(session, keys, [address]):
            session.add(ForgottenAddress(digest=digest(keys[0], address), forgotten_at=now))


def _plain(value: object) -> object:
    return getattr(value, "value", value)


def _subscriptions(session: Session, subscriber_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Subscription)
        .where(Subscription.subscriber_id == subscriber_id)
        .order_by(Subscription.id)
    )
    return [
        {
            "newsletter": s.newsletter,
            "status": s.status.value,
            "sections": ", ".join(s.section_list) or "all sections",
            "since": s.created_at,
            "unsubscribed_at": s.unsubscribed_at,
            "consent_source": s.consent_source,
            "consent_text": s.consent_text,
        }
        for s in rows
    ]


def _events(session: Session, subscriber_id: int) -> list[dict[str, Any]]:
    rows = session.execute(
        select(
            Event.kind,
            Event.at,
            Event.newsletter,
            Event.source,
            Event.detail,
            Issue.week,
            Event.evidence,
        )
        .outerjoin(Issue, Issue.id == Event.issue_id)
        .where(Event.subscriber_id == subscriber_id)
        .order_by(Event.at, Event.id)
    )
    return [
        {
            "kind": kind.value,
            "at": at,
            "newsletter": newsletter,
            "source": source,
            "detail": detail,
            "issue": week,
            "evidence": evidence,
        }
        for kind, at, newsletter, source, detail, week, evidence in rows
    ]


def _deliveries(session: Session, subscriber_id: int) -> list[dict[str, Any]]:
    rows = session.execute(
        select(
            Issue.newsletter,
            Issue.week,
            Delivery.status,
            Delivery.attempts,
            Delivery.sent_at,
            Delivery.last_reply,
        )
        .join(Issue, Issue.id == Delivery.issue_id)
        .where(Delivery.subscriber_id == subscriber_id)
        .order_by(Issue.week, Issue.newsletter)
    )
    return [
        {
            "newsletter": newsletter,
            "issue": week,
            "status": status.value,
            "attempts": n,
            "sent_at": sent,
            "reply": reply,
        }
        for newsletter, week, status, n, sent, reply in rows
    ]


def _clicks(session: Session, subscriber_id: int) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Issue.week, ClickEvent.at, ClickEvent.reason, Article.url)
        .join(Issue, Issue.id == ClickEvent.issue_id)
        .outerjoin(Article, Article.id == ClickEvent.article_id)
        .where(ClickEvent.subscriber_id == subscriber_id)
        .order_by(ClickEvent.at)
    )
    return [
        {"issue": week, "at": at, "machine": reason or None, "article": url or "(deleted)"}
        for week, at, reason, url in rows
    ]
