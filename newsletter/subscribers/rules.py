"""A subscriber's standing and every change to it, each recorded as an event.

These rules are shared by the command line, the web endpoints, the delivery engine and the
bounce reader, so that "an unsubscribed or bounced address is never made active again except
by the reader's own request" holds whichever door a change comes through. The one exception is
a suppression made by a report (a bounce or a complaint), which may be wrong: the operator can
lift it, explicitly, and the lifting is recorded too.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from newsletter.config import DEFAULT_SLUG
from newsletter.db.models import (
    Event,
    EventKind,
    Subscriber,
    SubscriberStatus,
    SubscriptionStatus,
)
from newsletter.errors import NotFoundError, StateError
from newsletter.runtime import Runtime
from newsletter.subscribers import subscriptions
from newsletter.subscribers.addresses import clean_name, normalise_email
from newsletter.subscribers.forgotten import forgotten_among


class Roster(Runtime, Protocol):
    """What the subscriber list needs beyond the runtime: plain sessions for long reads."""

    sessions: sessionmaker[Session]


MAX_DETAIL = 500


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
    evidence: dict[str, str] | None = None,
    newsletter: str = "",
) -> None:
    """`dedupe_key` marks an event that must be recorded once only (a report read twice);
    `evidence` is what a report-driven event rests on; `newsletter` names the subscription
    a change concerns ("" for the address as a whole)."""
    session.add(
        Event(
            subscriber_id=subscriber.id,
            kind=kind,
            at=at,
            newsletter=newsletter,
            source=source,
            detail=detail,
            issue_id=issue_id,
            dedupe_key=dedupe_key,
            evidence=evidence,
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
    newsletter: str = DEFAULT_SLUG,
    ip: str = "",
    sections: Sequence[str] = (),
) -> Subscriber:
    """A new subscriber row, its subscription to `newsletter`, and the event that says where
    its consent came from."""
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
    subscriptions.join(
        session,
        subscriber,
        newsletter,
        status=subscriptions.starting_status(status),
        at=at,
        source=source,
        sections=sections,
    )
    record(session, subscriber, EventKind.SUBSCRIBED, at=at, source=source, newsletter=newsletter)
    if status is SubscriberStatus.UNSUBSCRIBED:
        record(
            session, subscriber, EventKind.UNSUBSCRIBED, at=at, source=source, newsletter=newsletter
        )
    elif status is SubscriberStatus.BOUNCED:
        record(session, subscriber, EventKind.BOUNCED, at=at, source=source)
    return subscriber


@dataclass(frozen=True)
class Suppression:
    """The event that took an address off the list, and the report evidence it rests on."""

    status: SubscriberStatus
    source: str
    at: datetime
    detail: str
    evidence: dict[str, str]

    @property
    def by_report(self) -> bool:
        """A bounce (from a report or a send) or a complaint may be wrong, even forged, so the
        operator may lift it; a reader's own unsubscribe is theirs alone to undo."""
        return self.status is SubscriberStatus.BOUNCED or self.source == "complaint"

    def describe(self) -> str:
        parts = [f"{self.status.value} on {self.at:%Y-%m-%d %H:%M} UTC by {self.source}"]
        if self.detail:
            parts.append(self.detail)
        report, date = self.evidence.get("report"), self.evidence.get("date")
        if report:
            parts.append(f"report {report}" + (f" of {date}" if date else ""))
        if self.evidence.get("matched"):
            parts.append(f"matched by {self.evidence['matched']}")
        return "; ".join(parts)


@dataclass(frozen=True)
class Change:
    subscriber: Subscriber
    changed: bool
    suppression: Suppression | None = None
    lifted: bool = False
    left: bool = False  # the reader had left the newsletter, and so stays


def add(
    session: Session,
    email: str,
    *,
    name: str,
    at: datetime,
    newsletter: str = DEFAULT_SLUG,
    source: str = "cli",
    sections: Sequence[str] | None = None,
) -> Change:
    """Add an active subscriber to `newsletter`; an existing suppressed one is left
    suppressed, and one who left `newsletter` is left out of it: only the reader can undo
    their own unsubscribe."""
    existing = find(session, email)
    if existing is None:
        created = create(
            session,
            email,
            name=name,
            status=SubscriberStatus.ACTIVE,
            at=at,
            source=source,
            newsletter=newsletter,
            sections=sections or (),
        )
        return Change(created, True)
    changed = False
    if existing.status.suppressed:  # left as it is, name included: nothing to say it changed
        return Change(existing, changed)
    current = subscriptions.find(session, existing, newsletter)
    if current is not None and current.status is SubscriptionStatus.UNSUBSCRIBED:
        return Change(existing, changed, left=True)
    _subscription, joined = subscriptions.join(
        session,
        existing,
        newsletter,
        status=subscriptions.starting_status(existing.status),
        at=at,
        source=source,
        sections=sections,
    )
    if joined:
        existing.updated_at = at
        changed = True
        kind = EventKind.SUBSCRIBED if current is None else EventKind.UPDATED
        record(session, existing, kind, at=at, source=source, newsletter=newsletter)
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
    evidence: dict[str, str] | None = None,
    newsletter: str | None = None,
) -> bool:
    """Leave `newsletter` (None: every newsletter, the address included).

    Idempotent: a second request changes nothing and records nothing. A bounced address
    stays as it is: it receives nothing anyway.
    """
    if subscriber.status is SubscriberStatus.BOUNCED:
        return False
    if not subscriptions.leave(session, subscriber, newsletter, at):
        return False
    record(
        session,
        subscriber,
        EventKind.UNSUBSCRIBED,
        at=at,
        source=source,
        detail=detail,
        issue_id=issue_id,
        dedupe_key=dedupe_key,
        evidence=evidence,
        newsletter=newsletter or "",
    )
    return True


def resubscribe(
    session: Session,
    subscriber: Subscriber,
    *,
    at: datetime,
    source: str,
    newsletter: str = DEFAULT_SLUG,
) -> bool:
    """Undo the reader's own unsubscribe from `newsletter`; a bounced address stays bounced,
    and a pending one still needs its confirmation."""
    if subscriber.status not in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.ACTIVE):
        return False
    _subscription, changed = subscriptions.join(
        session, subscriber, newsletter, status=SubscriptionStatus.ACTIVE, at=at, source=source
    )
    if subscriber.status is SubscriberStatus.UNSUBSCRIBED:
        subscriber.status = SubscriberStatus.ACTIVE
        subscriber.unsubscribed_at = None
        changed = True
    if not changed:
        return False
    subscriber.updated_at = at
    record(session, subscriber, EventKind.RESUBSCRIBED, at=at, source=source, newsletter=newsletter)
    return True


def confirm(session: Session, subscriber: Subscriber, *, at: datetime, source: str) -> bool:
    """The reader confirmed the address: it, and every subscription it asked for, start."""
    if subscriber.status not in (SubscriberStatus.PENDING, SubscriberStatus.ACTIVE):
        return False
    changed = subscriptions.activate_pending(session, subscriber, at)
    if subscriber.status is SubscriberStatus.PENDING:
        subscriber.status = SubscriberStatus.ACTIVE
        subscriber.confirmed_at = at
        changed = True
    if not changed:
        return False
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
    evidence: dict[str, str] | None = None,
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
        evidence=evidence,
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


def suppression(session: Session, subscriber: Subscriber) -> Suppression | None:
    """Why a suppressed subscriber is off the list: its latest bounce or unsubscribe event."""
    kind = {
        SubscriberStatus.BOUNCED: EventKind.BOUNCED,
        SubscriberStatus.UNSUBSCRIBED: EventKind.UNSUBSCRIBED,
    }.get(subscriber.status)
    if kind is None:
        return None
    event = session.scalars(
        select(Event)
        .where(Event.subscriber_id == subscriber.id, Event.kind == kind)
        .order_by(Event.at.desc(), Event.id.desc())
        .limit(1)
    ).first()
    if event is None:
        return Suppression(subscriber.status, "unknown", subscriber.updated_at, "", {})
    return Suppression(
        subscriber.status, event.source, event.at, event.detail, event.evidence or {}
    )


def lift(
    session: Session,
    subscriber: Subscriber,
    held: Suppression,
    *,
    to: SubscriberStatus,
    at: datetime,
    source: str,
) -> None:
    """Undo a suppression the operator judged wrong, recording what was lifted; the soft
    bounce count starts again, since the reports behind it are no longer trusted."""
    subscriber.status = to
    subscriber.soft_bounces = 0
    subscriber.updated_at = at
    subscriber.unsubscribed_at = at if to is SubscriberStatus.UNSUBSCRIBED else None
    if to is SubscriberStatus.UNSUBSCRIBED:
        subscriptions.leave(session, subscriber, None, at)
    else:
        subscriptions.restore(session, subscriber, held.at, at)
    kind = EventKind.RESUBSCRIBED if to is SubscriberStatus.ACTIVE else EventKind.UNSUBSCRIBED
    detail = f"suppression lifted by the operator: {held.describe()}"[:MAX_DETAIL]
    record(session, subscriber, kind, at=at, source=source, detail=detail)


def add_address(
    app: Roster,
    email: str,
    name: str = "",
    *,
    force: bool = False,
    sections: Sequence[str] | None = None,
) -> Change:
    """Add an active subscriber to the current newsletter; with `force`, a suppression made
    by a report is lifted."""
    with app.transaction() as session:
        now = app.clock.now()
        address = normalise_email(email)
        keys = app.settings.secrets.secret_keys
        if find(session, address) is None and forgotten_among(session, keys, [address]):
            raise StateError(
                f"{address} was erased at its owner's request and is not added again",
                hint="the person can subscribe again through the subscribe form",
            )
        newsletter = app.settings.newsletter.slug
        change = add(session, email, name=name, at=now, newsletter=newsletter, sections=sections)
        subscriber = change.subscriber
        held = suppression(session, subscriber)
        if held is None:
            return change
        if not force:
            return Change(subscriber, change.changed, held)
        if not held.by_report:
            raise StateError(
                f"{subscriber.email} unsubscribed by request ({held.source}), not by a report",
                hint="--force lifts only a bounce or a complaint; the reader can subscribe again",
            )
        lift(session, subscriber, held, to=SubscriberStatus.ACTIVE, at=now, source="cli")
        return Change(subscriber, True, held, lifted=True)


def unsubscribe_address(
    app: Roster, email: str, source: str = "cli", *, force: bool = False, everything: bool = False
) -> Change:
    """Unsubscribe an address from the current newsletter (`everything`: from all of them);
    a bounced one is recorded as unsubscribed only with `force` (the bounce was wrong, and
    unlike a bounce the reader can undo an unsubscribe)."""
    with app.transaction() as session:
        subscriber = get(session, email)
        now = app.clock.now()
        if subscriber.status is not SubscriberStatus.BOUNCED:
            newsletter = None if everything else app.settings.newsletter.slug
            changed = unsubscribe(session, subscriber, at=now, source=source, newsletter=newsletter)
            return Change(subscriber, changed)
        held = suppression(session, subscriber)
        assert held is not None
        if not force:
            return Change(subscriber, False, held)
        lift(session, subscriber, held, to=SubscriberStatus.UNSUBSCRIBED, at=now, source=source)
        return Change(subscriber, True, held, lifted=True)
