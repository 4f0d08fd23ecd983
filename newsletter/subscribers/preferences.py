"""A reader's own choices: which newsletters, which of their sections, the name, or leaving.

The preferences page is opened from a link in a message, by whoever holds it: its token is
the only authority, so every change here is one the reader could also make by unsubscribing
and subscribing again, and nothing here can make an address active that was never confirmed
or lift a bounce. Every value arrives as a plain string from a form and is checked against
the settings before anything is written; a request with one bad value changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from newsletter.config import Settings
from newsletter.db.models import EventKind, Subscriber, SubscriberStatus, SubscriptionStatus
from newsletter.errors import InputError
from newsletter.runtime import Runtime
from newsletter.subscribers import rules, subscriptions
from newsletter.subscribers.addresses import clean_name

SOURCE = "preferences"
_LIVE = (SubscriptionStatus.ACTIVE, SubscriptionStatus.PENDING)


class NotOurs(InputError):
    """The page's link names nobody: forged, cut short, or its subscriber was erased."""


@dataclass(frozen=True)
class Choice:
    """One newsletter as the page shows it to a reader."""

    slug: str
    name: str
    subscribed: bool  # active or pending
    pending: bool
    carried: tuple[str, ...]  # the sections this newsletter carries, in the feed's order
    chosen: tuple[str, ...]  # the reader's choice; empty: every section

    def receives(self, section: str) -> bool:
        return not self.chosen or section in self.chosen


@dataclass(frozen=True)
class Preferences:
    subscriber_id: int
    masked_email: str
    name: str
    status: SubscriberStatus
    newsletters: tuple[Choice, ...]

    @property
    def suppressed(self) -> bool:
        """Mail to the address is refused: nothing but the name can change here."""
        return self.status is SubscriberStatus.BOUNCED


@dataclass(frozen=True)
class Wanted:
    """What the form asks for, exactly as posted.

    `offered`: the newsletters the form showed (only those change); `joined`: those ticked;
    `sections`: the sections ticked under each newsletter; `name`: the name field (None:
    the form had none, and the name stays as it is).
    """

    offered: Sequence[str]
    joined: Sequence[str]
    sections: Mapping[str, Sequence[str]]
    name: str | None


def mask(email: str) -> str:
    """`jane@example.org` -> `j***@example.org`: enough to recognise, too little to harvest."""
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}***@{domain}"


def newsletter_name(settings: Settings, slug: str) -> str:
    return settings.for_newsletter(slug).newsletter.name


def known(settings: Settings, slug: str) -> str:
    """`slug` if it names a newsletter of this install, else the reason it is refused."""
    if slug not in settings.slugs:
        shown = slug[:40] or "(none)"
        raise InputError(f"there is no newsletter called {shown!r}")
    return slug


def carried_sections(settings: Settings, slug: str, wanted: Iterable[str]) -> tuple[str, ...]:
    """The `wanted` sections of newsletter `slug` in the feed's order, as the settings spell
    them; () for "every section", which is also what ticking them all means, so that a
    section the newsletter adds later reaches the reader too. A section the newsletter does
    not carry is refused."""
    carried = settings.for_newsletter(known(settings, slug)).sections
    by_key = {section.casefold(): section for section in carried}
    picked: set[str] = set()
    for raw in wanted:
        section = by_key.get(raw.strip().casefold())
        if section is None:
            name = newsletter_name(settings, slug)
            raise InputError(f"{name} has no section called {raw.strip()[:60]!r}")
        picked.add(section)
    if len(picked) == len(carried):
        return ()
    return tuple(section for section in carried if section in picked)


def _subscriber(session: Session, subscriber_id: int, *, lock: bool = False) -> Subscriber:
    subscriber = session.get(Subscriber, subscriber_id, with_for_update=lock)
    if subscriber is None:
        raise NotOurs("this link is not valid", hint="open it again from one of our emails")
    return subscriber


def _view(session: Session, settings: Settings, subscriber: Subscriber) -> Preferences:
    held = {s.newsletter: s for s in subscriptions.of(session, subscriber)}
    choices = []
    for slug in settings.slugs:
        subscription = held.get(slug)
        status = subscription.status if subscription is not None else None
        choices.append(
            Choice(
                slug=slug,
                name=newsletter_name(settings, slug),
                subscribed=status in _LIVE,
                pending=status is SubscriptionStatus.PENDING,
                carried=settings.for_newsletter(slug).sections,
                chosen=subscription.section_list if subscription is not None else (),
            )
        )
    return Preferences(
        subscriber_id=subscriber.id,
        masked_email=mask(subscriber.email),
        name=subscriber.name,
        status=subscriber.status,
        newsletters=tuple(choices),
    )


def show(app: Runtime, subscriber_id: int) -> Preferences:
    """Read-only: what the page shows. A link scanner that opens it changes nothing."""
    with app.transaction() as session:
        return _view(session, app.settings, _subscriber(session, subscriber_id))


@dataclass(frozen=True)
class _Plan:
    offered: tuple[str, ...]
    joined: frozenset[str]
    sections: dict[str, tuple[str, ...]]
    name: str | None


def _plan(settings: Settings, wanted: Wanted) -> _Plan:
    """Every posted value checked, before anything is written."""
    offered = tuple(dict.fromkeys(known(settings, slug) for slug in wanted.offered))
    if not offered:
        raise InputError("the form named no newsletter", hint="use the form on the page")
    joined = frozenset(known(settings, slug) for slug in wanted.joined)
    for slug in list(joined) + list(wanted.sections):
        if known(settings, slug) not in offered:
            raise InputError(f"the form did not offer {newsletter_name(settings, slug)}")
    sections = {
        slug: carried_sections(settings, slug, wanted.sections.get(slug, ())) for slug in offered
    }
    name = None if wanted.name is None else clean_name(wanted.name)
    return _Plan(offered, joined, sections, name)


def save(app: Runtime, subscriber_id: int, wanted: Wanted) -> Preferences:
    """Apply the form: join or leave each offered newsletter, set its sections, set the name.

    Raises `InputError` (changing nothing) for a newsletter that does not exist or was not
    offered, a section the newsletter does not carry, or a name too long. A bounced address
    changes nothing but its name: mail to it is refused whatever it chooses.
    """
    plan = _plan(app.settings, wanted)
    now = app.clock.now()
    with app.transaction() as session:
        subscriber = _subscriber(session, subscriber_id, lock=True)
        if plan.name is not None and plan.name != subscriber.name:
            subscriber.name = plan.name
            subscriber.updated_at = now
            rules.record(
                session, subscriber, EventKind.UPDATED, at=now, source=SOURCE, detail="name"
            )
        if subscriber.status is not SubscriberStatus.BOUNCED:
            # Joins first: leaving what was the last subscription would otherwise end the
            # address for a moment, only for the join to bring it back.
            for slug in plan.offered:
                if slug in plan.joined:
                    _keep(session, subscriber, slug, plan.sections[slug], now)
            for slug in plan.offered:
                if slug not in plan.joined:
                    rules.unsubscribe(session, subscriber, at=now, source=SOURCE, newsletter=slug)
        return _view(session, app.settings, subscriber)


def _keep(
    session: Session,
    subscriber: Subscriber,
    slug: str,
    sections: tuple[str, ...],
    now: datetime,
) -> None:
    """Be subscribed to `slug` with `sections`: a confirmed address at once, one that never
    confirmed still only once it confirms, and one that had left everything comes back."""
    before = subscriptions.find(session, subscriber, slug)
    was_live = before is not None and before.status in _LIVE
    old_sections = before.sections if before is not None else ""
    came_back = False
    if subscriber.status is SubscriberStatus.UNSUBSCRIBED:
        came_back = rules.resubscribe(session, subscriber, at=now, source=SOURCE, newsletter=slug)
    status = (
        SubscriptionStatus.PENDING
        if subscriber.status is SubscriberStatus.PENDING
        else SubscriptionStatus.ACTIVE
    )
    current, changed = subscriptions.join(
        session, subscriber, slug, status=status, at=now, source=SOURCE, sections=sections
    )
    if not (was_live or came_back):
        rules.record(
            session, subscriber, EventKind.SUBSCRIBED, at=now, source=SOURCE, newsletter=slug
        )
    elif current.sections != old_sections:
        detail = "sections: " + ("; ".join(current.section_list) or "all")
        rules.record(
            session,
            subscriber,
            EventKind.UPDATED,
            at=now,
            source=SOURCE,
            detail=detail[: rules.MAX_DETAIL],
            newsletter=slug,
        )
    if changed:
        subscriber.updated_at = now


def leave_everything(app: Runtime, subscriber_id: int) -> Preferences:
    """Every newsletter and the address: what one-click unsubscribe does for one newsletter.
    A bounced address stays as it is."""
    with app.transaction() as session:
        subscriber = _subscriber(session, subscriber_id, lock=True)
        rules.unsubscribe(session, subscriber, at=app.clock.now(), source=SOURCE, newsletter=None)
        return _view(session, app.settings, subscriber)
