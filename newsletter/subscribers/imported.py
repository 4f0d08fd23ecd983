"""What an imported row changes for a reader already held, and the subscriptions of new ones.

A new reader gets a subscription to each newsletter the row names (none named: the default
newsletter, or the import's `--newsletter`), starting as the row's status means
(`subscriptions.STARTS_AS`), with the sections the row gives. A reader already held gains the
newsletters a row names and takes its sections; a file never ends a subscription it does not
name, and never restarts one the reader left: that, like the address's own unsubscribe, is the
reader's alone to undo. When a row confirms or unsubscribes the address, its subscriptions
follow, as they do when the reader does it.

New readers' subscriptions are made by the database from the rows just inserted, one statement
per distinct choice (usually one per file), so that importing stays a few statements a batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, case, insert, literal, select, update
from sqlalchemy.orm import Session

from newsletter.db.models import (
    EventKind,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
)
from newsletter.subscribers.columns import Row
from newsletter.subscribers.subscriptions import STARTS_AS, pack_sections

ACTIVE, PENDING = SubscriptionStatus.ACTIVE, SubscriptionStatus.PENDING
UNSUBSCRIBED = SubscriptionStatus.UNSUBSCRIBED
_SUBSCRIPTIONS = cast(Table, Subscription.__table__)


@dataclass(frozen=True)
class Held:
    """A subscription as stored: the columns an import compares, without the ORM's cost."""

    id: int
    status: SubscriptionStatus
    sections: str


def held_by(session: Session, subscriber_ids: Iterable[int]) -> dict[int, dict[str, Held]]:
    """The subscriptions of these subscribers, by subscriber and newsletter, in one query."""
    found: dict[int, dict[str, Held]] = {}
    ids = list(subscriber_ids)
    if not ids:
        return found
    rows = session.execute(
        select(
            Subscription.id,
            Subscription.subscriber_id,
            Subscription.newsletter,
            Subscription.status,
            Subscription.sections,
        ).where(Subscription.subscriber_id.in_(ids))
    )
    for sid, subscriber_id, newsletter, status, sections in rows:
        found.setdefault(subscriber_id, {})[newsletter] = Held(sid, status, sections)
    return found


@dataclass
class Outcome:
    """The statements one existing reader's row needs, and what the report says of it."""

    inserts: list[dict[str, Any]] = field(default_factory=list)
    updates: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    events: list[tuple[EventKind, str]] = field(default_factory=list)  # kind, newsletter

    @property
    def changed(self) -> bool:
        return bool(self.inserts or self.updates)


def follow(
    subscriber_id: int,
    held: Mapping[str, Held],
    *,
    before: SubscriberStatus,
    after: SubscriberStatus,
    chosen: Mapping[str, Sequence[str]] | None,
    sections_given: bool,
    now: datetime,
) -> Outcome:
    """What a row changes in an existing reader's subscriptions: the address's new status
    (`before` to `after`) first, then the newsletters and sections it names (`chosen`). A
    file without a sections column leaves the sections readers chose as they are."""
    outcome = Outcome()
    state = {slug: (h.status, h.sections) for slug, h in held.items()}
    if after is not before:
        for slug, h in held.items():
            if after is SubscriberStatus.ACTIVE and h.status is PENDING:
                state[slug] = (ACTIVE, h.sections)
            elif after is SubscriberStatus.UNSUBSCRIBED and h.status is not UNSUBSCRIBED:
                state[slug] = (UNSUBSCRIBED, h.sections)
    wanted = STARTS_AS[after]
    named: set[str] = set()
    for slug, sections in (chosen or {}).items():
        packed = pack_sections(sections)
        if slug not in state:
            outcome.inserts.append(_new(subscriber_id, slug, wanted, packed, now))
            outcome.events.append((EventKind.SUBSCRIBED, slug))
            continue
        status = state[slug][0]
        if status is UNSUBSCRIBED and wanted is not UNSUBSCRIBED:
            continue  # the reader left it: theirs alone to undo
        kept = packed if sections_given else state[slug][1]
        # A file's `pending` never takes back a confirmation.
        state[slug] = (ACTIVE if status is ACTIVE and wanted is PENDING else wanted, kept)
        named.add(slug)
    for slug, h in held.items():
        status, sections = state[slug]
        if (status, sections) == (h.status, h.sections):
            continue
        values: dict[str, Any] = {"status": status, "sections": sections, "updated_at": now}
        if status is not h.status:
            values["unsubscribed_at"] = now if status is UNSUBSCRIBED else None
        outcome.updates.append((h.id, values))
        if slug in named:  # one that only followed the address is in the address's event
            left = status is UNSUBSCRIBED and h.status is not UNSUBSCRIBED
            outcome.events.append((EventKind.UNSUBSCRIBED if left else EventKind.UPDATED, slug))
    return outcome


def change(
    session: Session,
    current: Subscriber,
    row: Row,
    *,
    held: Mapping[str, Held],
    now: datetime,
    events: list[dict[str, Any]],
) -> Outcome | None:
    """Change an existing reader as the row says, adding the events to `events`; None when
    nothing changed."""
    changes = _changes(current, row, now)
    outcome = follow(
        current.id,
        held,
        before=current.status,
        after=changes.get("status", current.status),
        chosen=row.chosen,
        sections_given="sections" in row.given,
        now=now,
    )
    if changes:
        session.execute(update(Subscriber).where(Subscriber.id == current.id).values(**changes))
        kind = _STATUS_EVENTS.get(changes.get("status"), EventKind.UPDATED)
        events.append(_event(current.id, kind, now))
    events.extend(_event(current.id, k, now, slug) for k, slug in outcome.events)
    return outcome if changes or outcome.changed else None


def restarts_left(held: Mapping[str, Held], chosen: Mapping[str, Sequence[str]]) -> bool:
    """The row names a newsletter the reader left: the reader's choice stands."""
    return any(held[slug].status is UNSUBSCRIBED for slug in chosen if slug in held)


_STATUS_EVENTS: dict[object, EventKind] = {
    SubscriberStatus.ACTIVE: EventKind.CONFIRMED,
    SubscriberStatus.UNSUBSCRIBED: EventKind.UNSUBSCRIBED,
    SubscriberStatus.BOUNCED: EventKind.BOUNCED,
}


def _changes(current: Subscriber, row: Row, now: datetime) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if row.name and row.name != current.name:
        changes["name"] = row.name
    # A file's `pending` never takes back a confirmation.
    if row.status is not current.status and row.status is not SubscriberStatus.PENDING:
        changes["status"] = row.status
        if row.status is SubscriberStatus.ACTIVE:
            changes["confirmed_at"] = row.confirmed_at or now
        else:
            changes["unsubscribed_at"] = row.unsubscribed_at or now
    if row.subscribed_at is not None and row.subscribed_at != current.subscribed_at:
        changes["subscribed_at"] = row.subscribed_at
    if changes:
        changes["updated_at"] = now
    return changes


def _event(
    subscriber_id: int, kind: EventKind, at: datetime, newsletter: str = ""
) -> dict[str, Any]:
    return {
        "subscriber_id": subscriber_id,
        "kind": kind,
        "at": at,
        "newsletter": newsletter,
        "source": "import",
        "detail": "",
        "issue_id": None,
        "dedupe_key": None,
    }


def _new(
    subscriber_id: int, newsletter: str, status: SubscriptionStatus, sections: str, now: datetime
) -> dict[str, Any]:
    return {
        "subscriber_id": subscriber_id,
        "newsletter": newsletter,
        "status": status,
        "sections": sections,
        "created_at": now,
        "updated_at": now,
        "unsubscribed_at": now if status is UNSUBSCRIBED else None,
        "consent_source": "import",
        "consent_text": "",
    }


def apply(session: Session, outcomes: Iterable[Outcome]) -> None:
    inserts: list[dict[str, Any]] = []
    for outcome in outcomes:
        inserts.extend(outcome.inserts)
        for subscription_id, values in outcome.updates:
            session.execute(
                update(_SUBSCRIPTIONS).where(_SUBSCRIPTIONS.c.id == subscription_id).values(values)
            )
    if inserts:
        session.execute(insert(_SUBSCRIPTIONS), inserts)


def insert_for_new(
    session: Session, chosen: Mapping[tuple[str, str], list[str]], now: datetime
) -> None:
    """Subscriptions for the subscribers just inserted: `chosen` maps (newsletter, packed
    sections) to the addresses that chose them; each starts as its address's status means."""
    starts = case(*((Subscriber.status == a, b.value) for a, b in STARTS_AS.items()))
    for (newsletter, sections), emails in chosen.items():
        session.execute(
            insert(Subscription).from_select(
                [
                    "subscriber_id",
                    "newsletter",
                    "status",
                    "sections",
                    "created_at",
                    "updated_at",
                    "unsubscribed_at",
                    "consent_source",
                    "consent_text",
                ],
                select(
                    Subscriber.id,
                    literal(newsletter),
                    starts,
                    literal(sections),
                    Subscriber.subscribed_at,
                    literal(now, Subscription.updated_at.type),
                    Subscriber.unsubscribed_at,
                    Subscriber.consent_source,
                    Subscriber.consent_text,
                ).where(Subscriber.email.in_(emails)),
            )
        )
