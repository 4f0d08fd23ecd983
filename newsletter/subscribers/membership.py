"""What a reader can do from the web: join with double opt-in, confirm, leave, come back.

Every door here is a signed token or a rate-limited form, and every change goes through the
rules in `subscribers`, so the web can never make active an address the reader did not
confirm. Answers never tell a stranger whether an address is already on the list.
"""

from __future__ import annotations

import enum
import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from jinja2 import Environment
from sqlalchemy.orm import Session

from newsletter.config import Settings
from newsletter.db.models import Subscriber, SubscriberStatus
from newsletter.errors import DeliveryError, InputError
from newsletter.mail import confirmation
from newsletter.mail.tokens import InvalidToken, Tokens
from newsletter.runtime import Runtime
from newsletter.subscribers import rules as subscribers
from newsletter.subscribers import throttle
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
    """What a page may show about a subscriber: never the full address."""

    id: int
    masked_email: str
    status: SubscriberStatus


class Answer(enum.Enum):
    ACCEPTED = "accepted"
    TOO_MANY_FROM_IP = "too many requests from this network"
    TOO_MANY_FOR_ADDRESS = "too many requests for this address"
    UNCHALLENGED = "the request did not come through a form we served"


@dataclass(frozen=True)
class SignupResult:
    answer: Answer
    retry_after: timedelta = timedelta(0)


def mask(email: str) -> str:
    """`jane@example.org` -> `j***@example.org`: enough to recognise, too little to harvest."""
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}***@{domain}"


def _reader(subscriber: Subscriber) -> Reader:
    return Reader(subscriber.id, mask(subscriber.email), subscriber.status)


def look_up(app: Mailing, tokens: Tokens, token: str) -> Reader:
    """Read-only: what the landing page of an unsubscribe link shows."""
    subscriber_id = tokens.read_unsubscribe(token)
    with app.transaction() as session:
        return _reader(_subscriber(session.get(Subscriber, subscriber_id)))


def unsubscribe(app: Mailing, tokens: Tokens, token: str, *, source: str) -> Reader:
    """Idempotent: an address already unsubscribed or bounced stays as it is."""
    subscriber_id = tokens.read_unsubscribe(token)
    with app.transaction() as session:
        subscriber = _subscriber(session.get(Subscriber, subscriber_id, with_for_update=True))
        subscribers.unsubscribe(
            session,
            subscriber,
            at=app.clock.now(),
            source=source,
            newsletter=app.settings.newsletter.slug,
        )
        return _reader(subscriber)


def resubscribe(app: Mailing, tokens: Tokens, token: str) -> Reader:
    """Undo a mistaken unsubscribe; a bounced address is left bounced."""
    subscriber_id = tokens.read_unsubscribe(token)
    with app.transaction() as session:
        subscriber = _subscriber(session.get(Subscriber, subscriber_id, with_for_update=True))
        subscribers.resubscribe(
            session,
            subscriber,
            at=app.clock.now(),
            source="page",
            newsletter=app.settings.newsletter.slug,
        )
        return _reader(subscriber)


def consent_version(templates: Environment, settings: Settings) -> str:
    """Which consent wording the reader saw: a digest of it as the form renders it.

    Derived rather than numbered by hand, so that an operator's edit of the template, or a
    new newsletter name in it, can never be recorded under the old wording's version.
    """
    text = templates.get_template(CONSENT_TEMPLATE).render(newsletter=settings.newsletter)
    digest = hashlib.sha256(" ".join(text.split()).encode()).hexdigest()
    return f"form-{digest[:16]}"


def _fresh_challenge(tokens: Tokens, challenge: str, now: datetime) -> tuple[str, datetime] | None:
    """The nonce and serving time of a challenge young and old enough to count, else None."""
    try:
        nonce, served_at = tokens.read_form_challenge(challenge)
    except InvalidToken:
        return None
    return (nonce, served_at) if FORM_MIN_AGE <= now - served_at <= FORM_MAX_AGE else None


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
        return SignupResult(Answer.UNCHALLENGED)
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


def _subscriber(subscriber: Subscriber | None) -> Subscriber:
    if subscriber is None:
        raise InvalidToken("this link is not valid")
    return subscriber


def request_subscription(
    app: Mailing,
    tokens: Tokens,
    templates: Environment,
    *,
    email: str,
    name: str,
    ip: str,
    honeypot: str,
    challenge: str,
) -> SignupResult:
    """Record a pending subscriber and mail a confirmation link, within the rate limits.

    New, pending, active and suppressed addresses all get the same answer; only a pending
    one is mailed, at most once per `CONFIRMATION_INTERVAL`. Raises `InputError` for an
    address or name that cannot be valid, and `DeliveryError` when the mail could not go out
    (the address's limit is then released so the reader can simply try again). Without a
    fresh `challenge` from a form we served, or with one already spent, it changes nothing
    and answers `UNCHALLENGED`.

    Everything is checked, and the confirmation built, inside the one transaction that
    spends the challenge and counts the limits: a request refused as invalid leaves no
    pending row, no hit and no spent challenge behind.
    """
    if honeypot:
        return SignupResult(Answer.ACCEPTED)
    address = subscribers.normalise_email(email)
    now = app.clock.now()
    served = _fresh_challenge(tokens, challenge, now)
    if served is None:
        return SignupResult(Answer.UNCHALLENGED)
    if not address.rpartition("@")[0].isascii() and not app.transport.takes_utf8_addresses():
        raise InputError(
            "our mail server cannot deliver to an address with non-ASCII characters before the @",
            hint="please use another address",
        )
    clean_name = subscribers.clean_name(name)
    settings = app.settings
    address_key = throttle.key_for(settings.secrets.secret_keys[0], PER_ADDRESS, address)
    with app.transaction() as session:
        refusal = _admit(session, settings, served, ip=ip, address_key=address_key, now=now)
        if refusal is not None:
            return refusal
        subscriber = subscribers.find(session, address)
        if subscriber is None:
            subscriber = subscribers.create(
                session,
                address,
                name=clean_name,
                status=SubscriberStatus.PENDING,
                at=now,
                source="form",
                ip=ip,
                newsletter=settings.newsletter.slug,
            )
            subscriber.consent_text = consent_version(templates, settings)
        last_sent = subscriber.last_confirmation_sent_at
        if subscriber.status is not SubscriberStatus.PENDING or (
            last_sent is not None and now - last_sent < CONFIRMATION_INTERVAL
        ):
            return SignupResult(Answer.ACCEPTED)
        subscriber.last_confirmation_sent_at = now
        subscriber_id = subscriber.id
        message = confirmation.build(
            settings,
            templates,
            email=subscriber.email,
            name=subscriber.name,
            confirm_url=confirm_url(app, tokens, subscriber_id),
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


def confirm_url(app: Mailing, tokens: Tokens, subscriber_id: int) -> str:
    token = tokens.confirm(subscriber_id, app.clock.now())
    return f"{app.settings.newsletter.base_url.rstrip('/')}/confirm/{token}"


def _confirm_id(app: Mailing, tokens: Tokens, token: str) -> int:
    max_age = timedelta(hours=app.settings.web.confirm_hours)
    return tokens.read_confirm(token, app.clock.now(), max_age)


def check_confirmation(app: Mailing, tokens: Tokens, token: str) -> Reader:
    """Read-only: a link scanner that follows the emailed link confirms nothing."""
    subscriber_id = _confirm_id(app, tokens, token)
    with app.transaction() as session:
        return _reader(_subscriber(session.get(Subscriber, subscriber_id)))


def confirm(app: Mailing, tokens: Tokens, token: str) -> Reader:
    """Make a pending subscriber active; a suppressed one is not brought back this way."""
    subscriber_id = _confirm_id(app, tokens, token)
    with app.transaction() as session:
        subscriber = _subscriber(session.get(Subscriber, subscriber_id, with_for_update=True))
        subscribers.confirm(session, subscriber, at=app.clock.now(), source="form")
        return _reader(subscriber)
