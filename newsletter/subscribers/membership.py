"""What a reader can do from the web: join with double opt-in, confirm, leave, come back.

Every door here is a signed token or a rate-limited form, and every change goes through the
rules in `subscribers`, so the web can never make active an address the reader did not
confirm. Answers never tell a stranger whether an address is already on the list.

Each newsletter signs its links with its own list id, so a token says which newsletter it
came from: `Keyring` tries each in turn, and a link from one newsletter's message acts on
that newsletter only.
"""

from __future__ import annotations

import enum
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from jinja2 import Environment
from sqlalchemy.orm import Session

from newsletter.config import Settings
from newsletter.db.models import EventKind, Subscriber, SubscriberStatus, SubscriptionStatus
from newsletter.errors import DeliveryError, InputError
from newsletter.mail import confirmation
from newsletter.mail.tokens import InvalidToken, Keyring, Tokens
from newsletter.runtime import Runtime
from newsletter.subscribers import rules as subscribers
from newsletter.subscribers import subscriptions, throttle
from newsletter.subscribers.addresses import clean_name, normalise_email
from newsletter.subscribers.preferences import carried_sections, known, mask
from newsletter.transport.base import Transport


class Mailing(Runtime, Protocol):
    """What joining needs beyond the runtime: a transport for the confirmation email."""

    @property
    def transport(self) -> Transport: ...


log = logging.getLogger(__name__)

CONSENT_TEMPLATE = "web/consent.html.j2"
CONFIRMATION_INTERVAL = timedelta(hours=24)
# The challenge (STANDARDS G.56): a request counts only if it carries a form we served, filled
# in no faster than a person could and not left open for days. Anything else (a bot posting
# blind, or the embeddable snippet on another site) gets our own form back, filled in, with
# one more button to press; no mail goes out and no limit is used up until then.
FORM_MIN_AGE = timedelta(seconds=2)
FORM_MAX_AGE = timedelta(hours=12)
PER_ADDRESS = throttle.Limit("address", 1, CONFIRMATION_INTERVAL)


@dataclass(frozen=True)
class Reader:
    """What a page may show about a subscriber: never the full address.

    `status` is the standing with `newsletter` (an active address that left this newsletter
    is unsubscribed from it); with `newsletter` empty it is the address's own. `joined`
    names the newsletters whose subscription is active or awaits confirmation.
    """

    id: int
    masked_email: str
    status: SubscriberStatus
    newsletter: str = ""
    joined: tuple[str, ...] = ()


class Answer(enum.Enum):
    ACCEPTED = "accepted"
    TOO_MANY_FROM_IP = "too many requests from this network"
    TOO_MANY_FOR_ADDRESS = "too many requests for this address"
    UNCHALLENGED = "the request did not come through a form we served"


class Unchallenged(enum.Enum):
    """Why a request needs one more press of the button: the page says so."""

    NO_FORM = "it did not come from a form we served"
    TOO_SOON = "it was sent sooner after the form was shown than a person could fill it in"
    TOO_OLD = "the form was shown too long ago"
    SPENT = "the form it came from was already sent once"


@dataclass(frozen=True)
class SignupResult:
    answer: Answer
    retry_after: timedelta = timedelta(0)
    unchallenged: Unchallenged | None = None


def _reader(session: Session, subscriber: Subscriber, newsletter: str = "") -> Reader:
    held = subscriptions.of(session, subscriber)
    live = (SubscriptionStatus.ACTIVE, SubscriptionStatus.PENDING)
    status = subscriber.status
    if newsletter and status is SubscriberStatus.ACTIVE:
        own = next((s for s in held if s.newsletter == newsletter), None)
        if own is None or own.status not in live:
            status = SubscriberStatus.UNSUBSCRIBED
    joined = tuple(s.newsletter for s in held if s.status in live)
    return Reader(subscriber.id, mask(subscriber.email), status, newsletter, joined)


def _subscriber(subscriber: Subscriber | None) -> Subscriber:
    if subscriber is None:
        raise InvalidToken("this link is not valid")
    return subscriber


def look_up(app: Mailing, keys: Keyring, token: str) -> Reader:
    """Read-only: what the landing page of an unsubscribe link shows."""
    newsletter, subscriber_id = keys.read(lambda t: t.read_unsubscribe(token))
    with app.transaction() as session:
        return _reader(session, _subscriber(session.get(Subscriber, subscriber_id)), newsletter)


def unsubscribe(app: Mailing, keys: Keyring, token: str, *, source: str) -> Reader:
    """Leave the newsletter whose message carried the link, and only that one.

    Idempotent: an address already unsubscribed or bounced stays as it is.
    """
    newsletter, subscriber_id = keys.read(lambda t: t.read_unsubscribe(token))
    with app.transaction() as session:
        subscriber = _subscriber(session.get(Subscriber, subscriber_id, with_for_update=True))
        subscribers.unsubscribe(
            session, subscriber, at=app.clock.now(), source=source, newsletter=newsletter
        )
        return _reader(session, subscriber, newsletter)


def resubscribe(app: Mailing, keys: Keyring, token: str) -> Reader:
    """Undo a mistaken unsubscribe from the link's newsletter; a bounced address is left
    bounced."""
    newsletter, subscriber_id = keys.read(lambda t: t.read_unsubscribe(token))
    with app.transaction() as session:
        subscriber = _subscriber(session.get(Subscriber, subscriber_id, with_for_update=True))
        subscribers.resubscribe(
            session, subscriber, at=app.clock.now(), source="page", newsletter=newsletter
        )
        return _reader(session, subscriber, newsletter)


def consent_names(settings: Settings) -> list[str]:
    """The newsletters the consent wording names: every one the form offers."""
    return [settings.for_newsletter(slug).newsletter.name for slug in settings.slugs]


def consent_version(templates: Environment, settings: Settings) -> str:
    """Which consent wording the reader saw: a digest of it as the form renders it.

    Derived rather than numbered by hand, so that an operator's edit of the template, or a
    new newsletter name in it, can never be recorded under the old wording's version.
    """
    text = templates.get_template(CONSENT_TEMPLATE).render(
        newsletter=settings.default_newsletter, names=consent_names(settings)
    )
    digest = hashlib.sha256(" ".join(text.split()).encode()).hexdigest()
    return f"form-{digest[:16]}"


def _challenge(
    tokens: Tokens, challenge: str, now: datetime
) -> tuple[str, datetime] | SignupResult:
    """The nonce and serving time of a challenge young and old enough to count, else the
    answer that says why it does not (and, for a form sent too fast, how long to wait)."""
    try:
        nonce, served_at = tokens.read_form_challenge(challenge)
    except InvalidToken:
        return SignupResult(Answer.UNCHALLENGED, unchallenged=Unchallenged.NO_FORM)
    age = now - served_at
    if age < FORM_MIN_AGE:
        wait = min(FORM_MIN_AGE - age, FORM_MIN_AGE)
        return SignupResult(Answer.UNCHALLENGED, wait, Unchallenged.TOO_SOON)
    if age > FORM_MAX_AGE:
        return SignupResult(Answer.UNCHALLENGED, unchallenged=Unchallenged.TOO_OLD)
    return nonce, served_at


def _admit(
    session: Session,
    settings: Settings,
    served: tuple[str, datetime],
    *,
    ip: str,
    address_key: str,
    now: datetime,
) -> SignupResult | None:
    """Spend the form's challenge and count the limits: the refusal, if there is one."""
    nonce, served_at = served
    if not throttle.first_use(session, nonce, served_at=served_at, stale_before=now - FORM_MAX_AGE):
        return SignupResult(Answer.UNCHALLENGED, unchallenged=Unchallenged.SPENT)
    per_ip = throttle.Limit("ip", settings.web.subscribe_per_ip_per_hour, timedelta(hours=1))
    ip_key = throttle.key_for(settings.secrets.secret_keys[0], per_ip, ip)
    for key, limit, answer in (
        (ip_key, per_ip, Answer.TOO_MANY_FROM_IP),
        (address_key, PER_ADDRESS, Answer.TOO_MANY_FOR_ADDRESS),
    ):
        verdict = throttle.hit(session, key, limit, now=now)
        if not verdict.allowed:
            return SignupResult(answer, verdict.retry_after)
    return None


def chosen(
    settings: Settings, newsletters: Sequence[str], sections: Mapping[str, Sequence[str]]
) -> dict[str, tuple[str, ...]]:
    """The newsletters asked for, each with its sections checked (() for all); `InputError`
    for none, an unknown one, or a section it does not carry."""
    for slug in sections:
        known(settings, slug)
    picked = {known(settings, slug): () for slug in newsletters}
    if not picked:
        raise InputError("choose at least one newsletter")
    return {slug: carried_sections(settings, slug, sections.get(slug, ())) for slug in picked}


@dataclass(frozen=True)
class Request:
    """The subscribe form as posted."""

    email: str
    name: str
    ip: str
    honeypot: str
    challenge: str
    newsletters: Sequence[str]
    sections: Mapping[str, Sequence[str]]


def _ask(
    session: Session,
    subscriber: Subscriber,
    newsletters: Mapping[str, tuple[str, ...]],
    *,
    now: datetime,
    consent: str,
) -> list[str]:
    """Ask for each newsletter on behalf of a pending or active address; a subscription that
    is already active is left exactly as it is (a stranger may be typing the address). The
    newsletters that await confirmation."""
    waiting = []
    for slug, sections in newsletters.items():
        current = subscriptions.find(session, subscriber, slug)
        if current is not None and current.status is SubscriptionStatus.ACTIVE:
            continue
        subscriptions.join(
            session,
            subscriber,
            slug,
            status=SubscriptionStatus.PENDING,
            at=now,
            source="form",
            sections=sections,
            consent_text=consent,
        )
        if current is None or current.status is SubscriptionStatus.UNSUBSCRIBED:
            subscribers.record(
                session, subscriber, EventKind.SUBSCRIBED, at=now, source="form", newsletter=slug
            )
        waiting.append(slug)
    return waiting


def request_subscription(
    app: Mailing, keys: Keyring, templates: Environment, form: Request
) -> SignupResult:
    """Record a pending subscription to each chosen newsletter and mail a confirmation link,
    within the rate limits.

    New, pending, active and suppressed addresses all get the same answer; a confirmation
    goes only to an address with a subscription awaiting one, at most once per
    `CONFIRMATION_INTERVAL`. Raises `InputError` for an address, name, newsletter or section
    that cannot be valid, and `DeliveryError` when the mail could not go out (the address's
    limit is then released so the reader can simply try again). Without a fresh challenge
    from a form we served, or with one already spent, it changes nothing and answers
    `UNCHALLENGED`, saying why.

    Everything is checked, and the confirmation built, inside the one transaction that
    spends the challenge and counts the limits: a request refused as invalid leaves no
    pending row, no hit and no spent challenge behind.
    """
    if form.honeypot:
        return SignupResult(Answer.ACCEPTED)
    address = normalise_email(form.email)
    settings = app.settings
    wanted = chosen(settings, form.newsletters, form.sections)
    now = app.clock.now()
    served = _challenge(keys.default, form.challenge, now)
    if isinstance(served, SignupResult):
        return served
    if not address.rpartition("@")[0].isascii() and not app.transport.takes_utf8_addresses():
        raise InputError(
            "our mail server cannot deliver to an address with non-ASCII characters before the @",
            hint="please use another address",
        )
    name = clean_name(form.name)
    consent = consent_version(templates, settings)
    address_key = throttle.key_for(settings.secrets.secret_keys[0], PER_ADDRESS, address)
    with app.transaction() as session:
        refusal = _admit(session, settings, served, ip=form.ip, address_key=address_key, now=now)
        if refusal is not None:
            return refusal
        subscriber = subscribers.find(session, address)
        if subscriber is None:
            first, *_others = wanted
            subscriber = subscribers.create(
                session,
                address,
                name=name,
                status=SubscriberStatus.PENDING,
                at=now,
                source="form",
                ip=form.ip,
                newsletter=first,
                sections=wanted[first],
            )
            subscriber.consent_text = consent
            for subscription in subscriptions.of(session, subscriber):
                subscription.consent_text = consent
        waiting: list[str] = []
        if not subscriber.status.suppressed:
            waiting = _ask(session, subscriber, wanted, now=now, consent=consent)
        last_sent = subscriber.last_confirmation_sent_at
        if not waiting or (last_sent is not None and now - last_sent < CONFIRMATION_INTERVAL):
            return SignupResult(Answer.ACCEPTED)
        subscriber.last_confirmation_sent_at = now
        subscriber_id = subscriber.id
        about = settings.for_newsletter(waiting[0])
        message = confirmation.build(
            about,
            templates,
            email=subscriber.email,
            name=subscriber.name,
            confirm_url=confirm_url(about, keys.by_slug[waiting[0]], subscriber_id, now),
            now=now,
            expires_hours=settings.web.confirm_hours,
        )
    try:
        with app.transport.connect() as connection:
            connection.send(message.envelope_from, message.recipient, message.message)
    except DeliveryError:
        with app.transaction() as session:
            throttle.release(session, address_key)
            pending = session.get(Subscriber, subscriber_id)
            if pending is not None:
                pending.last_confirmation_sent_at = last_sent
        raise
    log.info("confirmation sent subscriber_id=%s", subscriber_id)
    return SignupResult(Answer.ACCEPTED)


def confirm_url(settings: Settings, tokens: Tokens, subscriber_id: int, now: datetime) -> str:
    token = tokens.confirm(subscriber_id, now)
    return f"{settings.newsletter.base_url.rstrip('/')}/confirm/{token}"


def _confirm_id(app: Mailing, keys: Keyring, token: str) -> tuple[str, int]:
    max_age = timedelta(hours=app.settings.web.confirm_hours)
    return keys.read(lambda t: t.read_confirm(token, app.clock.now(), max_age))


def check_confirmation(app: Mailing, keys: Keyring, token: str) -> Reader:
    """Read-only: a link scanner that follows the emailed link confirms nothing."""
    newsletter, subscriber_id = _confirm_id(app, keys, token)
    with app.transaction() as session:
        subscriber = _subscriber(session.get(Subscriber, subscriber_id))
        return _as_of(_reader(session, subscriber), newsletter)


def confirm(app: Mailing, keys: Keyring, token: str) -> Reader:
    """Make a pending subscriber, and every subscription it asked for, active; a suppressed
    one is not brought back this way."""
    newsletter, subscriber_id = _confirm_id(app, keys, token)
    with app.transaction() as session:
        subscriber = _subscriber(session.get(Subscriber, subscriber_id, with_for_update=True))
        subscribers.confirm(session, subscriber, at=app.clock.now(), source="form")
        return _as_of(_reader(session, subscriber), newsletter)


def _as_of(reader: Reader, newsletter: str) -> Reader:
    """The address's own standing, shown under the name of the newsletter that mailed it."""
    return Reader(reader.id, reader.masked_email, reader.status, newsletter, reader.joined)
