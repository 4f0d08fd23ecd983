"""A subscriber's standing and every change to it, each recorded as an event.

These rules are shared by the command line, the web endpoints, the delivery engine and the
bounce reader, so that "an unsubscribed or bounced address is never made active again except
by the reader's own request" holds whichever door a change comes through.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .app import App
from .db.models import Event, EventKind, Subscriber, SubscriberStatus
from .errors import InputError, NotFoundError
from .untrusted import person_name

MAX_NAME = 200


def normalise_email(raw: str) -> str:
    """Validate syntax (no DNS) and return the canonical, lower-cased form used as the key."""
    text = raw.strip()
    if not text:
        raise InputError("the address is empty")
    if any(ch in text for ch in "\r\n\0"):
        raise InputError("the address contains a line break or NUL")
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InputError(f"{text[:80]!r} is not a valid address: {exc}") from None
    return result.normalized.lower()


def clean_name(raw: str) -> str:
    """A name as it arrives at any door (CSV import, `subscribers add`, the subscribe form),
    made plain text for people; the message builder cleans it the same way again."""
    name = person_name(raw)
    if len(name) > MAX_NAME:
        raise InputError(f"the name is longer than {MAX_NAME} characters")
    return name


def record(
    session: Session,
    subscriber: Subscriber,
    kind: EventKind,
    *,
    at: datetime,
    source: str,
    detail: str = "",
    issue_id: int | None = None,
    dedupe_key: str | None = None,
) -> None:
    """`dedupe_key` marks an event that must be recorded once only (a report read twice)."""
    session.add(
        Event(
            subscriber_id=subscriber.id,
            kind=kind,
            at=at,
            source=source,
            detail=detail,
            issue_id=issue_id,
            dedupe_key=dedupe_key,
        )
    )


def find(session: Session, email: str) -> Subscriber | None:
    return session.scalars(
        select(Subscriber).where(Subscriber.email == normalise_email(email))
    ).one_or_none()


def get(session: Session, email: str) -> Subscriber:
    subscriber = find(session, email)
    if subscriber is None:
        raise NotFoundError(f"no subscriber with address {email.strip()!r}")
    return subscriber


def create(
    session: Session,
    email: str,
    *,
    name: str,
    status: SubscriberStatus,
    at: datetime,
    source: str,
    ip: str = "",
) -> Subscriber:
    """A new subscriber row and the event that says where its consent came from."""
    subscriber = Subscriber(
        email=normalise_email(email),
        name=clean_name(name),
        status=status,
        subscribed_at=at,
        created_at=at,
        updated_at=at,
        confirmed_at=at if status is SubscriberStatus.ACTIVE else None,
        unsubscribed_at=at if status.suppressed else None,
        consent_source=source,
        consent_ip=ip,
        soft_bounces=0,
    )
    session.add(subscriber)
    session.flush()
    record(session, subscriber, EventKind.SUBSCRIBED, at=at, source=source)
    if status is SubscriberStatus.UNSUBSCRIBED:
        record(session, subscriber, EventKind.UNSUBSCRIBED, at=at, source=source)
    elif status is SubscriberStatus.BOUNCED:
        record(session, subscriber, EventKind.BOUNCED, at=at, source=source)
    return subscriber


@dataclass(frozen=True)
class Change:
    subscriber: Subscriber
    changed: bool


def add(session: Session, email: str, *, name: str, at: datetime, source: str = "cli") -> Change:
    """Add an active subscriber; an existing suppressed one is left suppressed."""
    existing = find(session, email)
    if existing is None:
        return Change(
            create(session, email, name=name, status=SubscriberStatus.ACTIVE, at=at, source=source),
            True,
        )
    changed = False
    if name and clean_name(name) != existing.name:
        existing.name = clean_name(name)
        existing.updated_at = at
        changed = True
    if existing.status is SubscriberStatus.PENDING:
        confirm(session, existing, at=at, source=source)
        changed = True
    return Change(existing, changed)


def unsubscribe(
    session: Session,
    subscriber: Subscriber,
    *,
    at: datetime,
    source: str,
    detail: str = "",
    issue_id: int | None = None,
    dedupe_key: str | None = None,
) -> bool:
    """Idempotent: a second request changes nothing and records nothing."""
    if subscriber.status in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED):
        return False
    subscriber.status = SubscriberStatus.UNSUBSCRIBED
    subscriber.unsubscribed_at = at
    subscriber.updated_at = at
    record(
        session,
        subscriber,
        EventKind.UNSUBSCRIBED,
        at=at,
        source=source,
        detail=detail,
        issue_id=issue_id,
        dedupe_key=dedupe_key,
    )
    return True


def resubscribe(session: Session, subscriber: Subscriber, *, at: datetime, source: str) -> bool:
    """Undo the reader's own unsubscribe; a bounced address stays bounced."""
    if subscriber.status is not SubscriberStatus.UNSUBSCRIBED:
        return False
    subscriber.status = SubscriberStatus.ACTIVE
    subscriber.unsubscribed_at = None
    subscriber.updated_at = at
    record(session, subscriber, EventKind.RESUBSCRIBED, at=at, source=source)
    return True


def confirm(session: Session, subscriber: Subscriber, *, at: datetime, source: str) -> bool:
    if subscriber.status is not SubscriberStatus.PENDING:
        return False
    subscriber.status = SubscriberStatus.ACTIVE
    subscriber.confirmed_at = at
    subscriber.updated_at = at
    record(session, subscriber, EventKind.CONFIRMED, at=at, source=source)
    return True


def mark_bounced(
    session: Session,
    subscriber: Subscriber,
    *,
    at: datetime,
    source: str,
    detail: str,
    issue_id: int | None = None,
    dedupe_key: str | None = None,
) -> bool:
    if subscriber.status is SubscriberStatus.BOUNCED:
        return False
    subscriber.status = SubscriberStatus.BOUNCED
    subscriber.updated_at = at
    record(
        session,
        subscriber,
        EventKind.BOUNCED,
        at=at,
        source=source,
        detail=detail,
        issue_id=issue_id,
        dedupe_key=dedupe_key,
    )
    return True


def list_subscribers(
    session: Session, status: SubscriberStatus | None = None, batch: int = 1000
) -> Iterator[Subscriber]:
    """Streams in id order, so a million rows never sit in memory at once."""
    query = select(Subscriber).order_by(Subscriber.id)
    if status is not None:
        query = query.where(Subscriber.status == status)
    yield from session.scalars(query.execution_options(yield_per=batch))


def count_by_status(session: Session) -> dict[SubscriberStatus, int]:
    rows = session.execute(
        select(Subscriber.status, func.count()).group_by(Subscriber.status)
    ).all()
    counts = dict.fromkeys(SubscriberStatus, 0)
    counts.update(dict(rows))
    return counts


def add_address(app: App, email: str, name: str = "") -> Change:
    with app.transaction() as session:
        return add(session, email, name=name, at=app.clock.now())


def unsubscribe_address(app: App, email: str, source: str = "cli") -> bool:
    with app.transaction() as session:
        return unsubscribe(session, get(session, email), at=app.clock.now(), source=source)


@dataclass(frozen=True)
class Listing:
    email: str
    name: str
    status: SubscriberStatus
    subscribed_at: datetime


def listing(app: App, status: SubscriberStatus | None = None) -> Iterator[Listing]:
    with app.sessions() as session:
        for s in list_subscribers(session, status):
            yield Listing(s.email, s.name, s.status, s.subscribed_at)
