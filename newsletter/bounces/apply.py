"""Acting on the bounce mailbox: suppress hard bounces, count soft ones, honour complaints.

The recipient is identified by what we put on the message ourselves before anything else: the
signed VERP envelope sender first, then the signed unsubscribe token, and only then by the
addresses a report or flufl.bounce names (which forwarding and heuristics can get wrong).
Every action is stamped with a key derived from the report's Message-ID and the subscriber,
so reading the same mailbox again changes nothing more. Each message gets its own
transaction: one that cannot be understood is named in the report and the rest go on.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter.bounces import reports as dsn
from newsletter.bounces.mailboxes import RawMessage, read_messages
from newsletter.bounces.reports import Kind, Reading, Unreadable
from newsletter.db.models import Delivery, DeliveryStatus, Event, EventKind, Issue, Subscriber
from newsletter.errors import InputError
from newsletter.mail.tokens import InvalidToken, Tokens
from newsletter.runtime import Runtime
from newsletter.subscribers import rules as subscribers

log = logging.getLogger(__name__)

DUPLICATE = "duplicate"
UNCHANGED = "unchanged"
MAX_DETAIL = 500


@dataclass(frozen=True)
class Problem:
    message: str
    reason: str


@dataclass
class BounceReport:
    """Counts per outcome (hard, soft, policy, complaint, unsubscribe, duplicate, unchanged)."""

    messages: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    suppressed: int = 0
    problems: list[Problem] = field(default_factory=list)


@dataclass(frozen=True)
class _Target:
    subscriber: Subscriber
    issue_id: int | None
    failure: dsn.Failure


def process_bounces(app: Runtime, source: str) -> BounceReport:
    tokens = Tokens(app.settings.secrets.secret_keys, app.settings.list_id)
    report = BounceReport()
    messages = read_messages(
        source,
        password=app.settings.secrets.imap_password,
        timeout=app.settings.delivery.timeout,
    )
    for raw in messages:
        report.messages += 1
        try:
            reading = dsn.read(raw.data)
        except Unreadable as exc:
            report.problems.append(Problem(_name(raw), exc.message))
            continue
        _process(app, tokens, raw, reading, report)
    log.info(
        "bounces processed source=%s messages=%d suppressed=%d problems=%d",
        source,
        report.messages,
        report.suppressed,
        len(report.problems),
    )
    return report


def _process(
    app: Runtime, tokens: Tokens, raw: RawMessage, reading: Reading, report: BounceReport
) -> None:
    try:
        with app.transaction() as session:
            target = _identify(session, tokens, reading)
            if target is None:
                report.problems.append(Problem(_name(raw), _unknown(reading)))
                return
            outcome, suppressed = _apply(app, session, reading, target)
    except IntegrityError:
        # Another run recorded the same report between our check and our write.
        outcome, suppressed = DUPLICATE, False
    report.outcomes[outcome] += 1
    report.suppressed += int(suppressed)


def _name(raw: RawMessage) -> str:
    """Where the message sits and its Message-ID, so the operator can find it."""
    headers = BytesHeaderParser().parsebytes(raw.data)
    message_id = " ".join(str(headers.get("message-id", "")).split())
    return f"{raw.name} {message_id}" if message_id else raw.name


def _unknown(reading: Reading) -> str:
    if reading.addresses:
        return f"no subscriber matches {', '.join(sorted(set(reading.addresses)))}"
    return "the recipient is not named (no VERP address, token or recipient address)"


def _identify(session: Session, tokens: Tokens, reading: Reading) -> _Target | None:
    for address in reading.envelope:
        ids = tokens.read_verp(address)
        if ids is not None:
            subscriber = session.get(Subscriber, ids[0])
            issue_id = ids[1] if session.get(Issue, ids[1]) is not None else None
            if subscriber is not None:
                return _Target(subscriber, issue_id, _failure_for(reading, subscriber))
    for token in reading.tokens:
        try:
            subscriber = session.get(Subscriber, tokens.read_unsubscribe(token))
        except InvalidToken:
            continue
        if subscriber is not None:
            failure = _failure_for(reading, subscriber)
            return _Target(subscriber, _last_issue(session, subscriber), failure)
    for failure in reading.failures:
        candidates = [failure.address] if failure.address else list(reading.addresses)
        for address in candidates:
            subscriber = _find(session, address)
            if subscriber is not None:
                return _Target(subscriber, _last_issue(session, subscriber), failure)
    return None


def _failure_for(reading: Reading, subscriber: Subscriber) -> dsn.Failure:
    """The report's line about this subscriber, or its first line (one recipient per message)."""
    for failure in reading.failures:
        if failure.address.lower() == subscriber.email:
            return failure
    return reading.failures[0]


def _find(session: Session, address: str) -> Subscriber | None:
    try:
        return subscribers.find(session, address)
    except InputError:
        return None


def _last_issue(session: Session, subscriber: Subscriber) -> int | None:
    """Without VERP, the report is taken to be about the latest issue sent to the address."""
    return session.scalar(
        select(Delivery.issue_id)
        .where(Delivery.subscriber_id == subscriber.id, Delivery.status == DeliveryStatus.SENT)
        .order_by(Delivery.sent_at.desc())
        .limit(1)
    )


def _apply(app: Runtime, session: Session, reading: Reading, target: _Target) -> tuple[str, bool]:
    """Record the report against the subscriber; returns the outcome and whether it suppressed."""
    subscriber, failure, issue_id = target.subscriber, target.failure, target.issue_id
    key = _dedupe_key(reading, subscriber, failure.kind)
    if session.scalar(select(Event.id).where(Event.dedupe_key == key)) is not None:
        return DUPLICATE, False
    now = app.clock.now()
    detail = f"{failure.status} {failure.diagnostic}".strip()[:MAX_DETAIL]
    suppressed = False
    match failure.kind:
        case Kind.HARD:
            suppressed = subscribers.mark_bounced(
                session,
                subscriber,
                at=now,
                source="bounce",
                detail=detail,
                issue_id=issue_id,
                dedupe_key=key,
            )
        case Kind.SOFT | Kind.POLICY:
            if failure.kind is Kind.POLICY:
                detail = f"policy {detail}"
            subscribers.record(
                session,
                subscriber,
                EventKind.SOFT_BOUNCE,
                at=now,
                source="bounce",
                detail=detail,
                issue_id=issue_id,
                dedupe_key=key,
            )
            if failure.kind is Kind.SOFT:
                suppressed = _count_soft(app, session, subscriber, detail, issue_id)
        case Kind.COMPLAINT:
            subscribers.record(
                session,
                subscriber,
                EventKind.COMPLAINED,
                at=now,
                source="complaint",
                detail=detail,
                issue_id=issue_id,
                dedupe_key=key,
            )
            suppressed = subscribers.unsubscribe(
                session, subscriber, at=now, source="complaint", detail=detail, issue_id=issue_id
            )
        case Kind.UNSUBSCRIBE:
            suppressed = subscribers.unsubscribe(
                session, subscriber, at=now, source="mailto", detail=detail, dedupe_key=key
            )
    return failure.kind.value, suppressed


def _count_soft(
    app: Runtime, session: Session, subscriber: Subscriber, detail: str, issue_id: int | None
) -> bool:
    """A soft bounce counts towards the limit; reaching it suppresses (0 means never)."""
    subscriber.soft_bounces += 1
    subscriber.updated_at = app.clock.now()
    limit = app.settings.delivery.soft_bounce_limit
    if not limit or subscriber.soft_bounces < limit or subscriber.status.suppressed:
        return False
    return subscribers.mark_bounced(
        session,
        subscriber,
        at=app.clock.now(),
        source="bounce",
        detail=f"{subscriber.soft_bounces} soft bounces, the last: {detail}"[:MAX_DETAIL],
        issue_id=issue_id,
    )


def _dedupe_key(reading: Reading, subscriber: Subscriber, kind: Kind) -> str:
    digest = hashlib.sha256(f"{reading.message_id}\0{subscriber.id}\0{kind}".encode())
    return f"report:{digest.hexdigest()}"
