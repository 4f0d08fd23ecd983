"""Acting on the bounce mailbox: suppress hard bounces, count soft ones, honour complaints.

Anyone can mail the bounce address, so a report is acted on only for the subscriber named by
what we signed and put on the message ourselves: the VERP envelope sender it was returned to,
or our token in what it returned of the original (its VERP Return-Path or the List-Unsubscribe
token). Each newsletter signs with its own List-Id, so a token is tried with every newsletter's
keys, and the one that verifies it tells which newsletter the message came from. Only without
VERP (no `[delivery] bounce_domain`) is there nothing to check, and the addresses a report or
flufl.bounce names are used (which forgery, forwarding and heuristics can get wrong). A delay
is never a failure: the server is still trying.

Every action is stamped with a key derived from the report's Message-ID and the subscriber,
so reading the same mailbox again changes nothing more, and carries the report's evidence
(its Message-ID and date, the status, how it was matched) so a wrong one can be judged and
lifted. A bounce or a complaint is about the address, so it suppresses every newsletter; a
mailto unsubscribe leaves only the newsletter whose token it carries. Each message gets its
own transaction: one not acted on is named in the report, with the reason, and the rest go on.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field, replace
from email.parser import BytesHeaderParser

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter.bounces import reports as dsn
from newsletter.bounces.mailboxes import RawMessage, read_messages
from newsletter.bounces.reports import Clue, Kind, Reading, Unreadable
from newsletter.db.models import Delivery, DeliveryStatus, Event, EventKind, Issue, Subscriber
from newsletter.errors import InputError
from newsletter.mail.tokens import VERP_PREFIX, InvalidToken, Keyring
from newsletter.runtime import Runtime
from newsletter.subscribers import rules as subscribers

log = logging.getLogger(__name__)

DUPLICATE = "duplicate"
UNCHANGED = "unchanged"
MAX_DETAIL = 500
MAX_EVIDENCE = 300


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
    matched: str
    newsletter: str | None = None  # whose token identified it; None: the address was named


def process_bounces(app: Runtime, source: str) -> BounceReport:
    tokens = Keyring(app.settings)
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
        failures = tuple(f for f in reading.failures if f.kind is not Kind.DELAYED)
        if not failures:
            report.problems.append(Problem(_name(raw), _delay(reading)))
            continue
        _process(app, tokens, raw, replace(reading, failures=failures), report)
    log.info(
        "bounces processed source=%s messages=%d suppressed=%d problems=%d",
        source,
        report.messages,
        report.suppressed,
        len(report.problems),
    )
    return report


def _process(
    app: Runtime, tokens: Keyring, raw: RawMessage, reading: Reading, report: BounceReport
) -> None:
    verp = bool(app.settings.delivery.bounce_domain)
    try:
        with app.transaction() as session:
            target = _identify(session, tokens, reading, verp=verp)
            if isinstance(target, str):
                report.problems.append(Problem(_name(raw), target))
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


def _delay(reading: Reading) -> str:
    first = reading.failures[0]
    about = f" for {first.address}" if first.address else ""
    status = f" ({first.status})" if first.status else ""
    return f"a delay report{about}{status}: the server is still trying; a delay is not a failure"


def _identify(session: Session, tokens: Keyring, reading: Reading, *, verp: bool) -> _Target | str:
    """The subscriber the report proves it is about, or why it is not acted on."""
    invalid: list[Clue] = []
    for clue in reading.clues:
        verified = _verify(tokens, clue)
        if verified is None:
            if not clue.verp or _local_part(clue.value).startswith(VERP_PREFIX):
                invalid.append(clue)
            continue
        slug, ids = verified
        subscriber = session.get(Subscriber, ids[0])
        if subscriber is None:
            continue
        known = ids[1] is not None and session.get(Issue, ids[1]) is not None
        issue_id = ids[1] if known else _last_issue(session, subscriber)
        what = "VERP address" if clue.verp else "unsubscribe token"
        matched = f"our signed {what} in {clue.where}"
        return _Target(subscriber, issue_id, _failure_for(reading, subscriber), matched, slug)
    if not verp:
        for failure in reading.failures:
            candidates = [failure.address] if failure.address else list(reading.addresses)
            for address in candidates:
                subscriber = _find(session, address)
                if subscriber is not None:
                    issue_id = _last_issue(session, subscriber)
                    matched = f"the address {address} named in the report (VERP is off)"
                    return _Target(subscriber, issue_id, failure, matched)
    return _unproven(reading, invalid, verp=verp)


def _verify(tokens: Keyring, clue: Clue) -> tuple[str, tuple[int, int | None]] | None:
    """The newsletter whose signature the clue carries, with (subscriber id, issue id if
    known); None if it is no newsletter's."""
    for slug, signer in tokens.by_slug.items():
        if clue.verp:
            ids = signer.read_verp(clue.value)
            if ids is not None:
                return slug, ids
            continue
        try:
            return slug, (signer.read_unsubscribe(clue.value), None)
        except InvalidToken:
            continue
    return None


def _local_part(address: str) -> str:
    return address.strip().strip("<>").rpartition("@")[0]


def _unproven(reading: Reading, invalid: list[Clue], *, verp: bool) -> str:
    named = ", ".join(sorted(set(reading.addresses)))
    forged = ""
    if invalid:
        places = ", ".join(dict.fromkeys(c.where for c in invalid))
        forged = f"the signed token in {places} is not valid (altered, or not ours)"
    if verp:
        about = f" (it names {named})" if named else ""
        return (
            f"{forged or 'no VERP address or token of ours'}{about}: with VERP on, only a "
            "report that carries our signed token proves it answers our message"
        )
    reasons = [f"no subscriber matches {named}"] if named else []
    reasons.extend([forged] if forged else [])
    return "; ".join(reasons) or (
        "the recipient is not named (no VERP address, token or recipient address)"
    )


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
    evidence = _evidence(reading, target)
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
                evidence=evidence,
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
                evidence=evidence,
            )
            if failure.kind is Kind.SOFT:
                suppressed = _count_soft(app, session, target, detail, evidence)
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
                evidence=evidence,
            )
            suppressed = subscribers.unsubscribe(
                session,
                subscriber,
                at=now,
                source="complaint",
                detail=detail,
                issue_id=issue_id,
                evidence=evidence,
            )
        case Kind.UNSUBSCRIBE:
            # Only the newsletter that sent the message: the token says which. The address
            # is suppressed only when that was the last newsletter it had.
            left = subscribers.unsubscribe(
                session,
                subscriber,
                at=now,
                source="mailto",
                detail=detail,
                dedupe_key=key,
                evidence=evidence,
                newsletter=target.newsletter,
            )
            suppressed = left and subscriber.status.suppressed
    return failure.kind.value, suppressed


def _evidence(reading: Reading, target: _Target) -> dict[str, str]:
    """Which report a change rests on and how it was matched, kept with the event."""
    return {
        "report": reading.message_id[:MAX_EVIDENCE],
        "date": reading.date[:MAX_EVIDENCE],
        "status": target.failure.status,
        "diagnostic": target.failure.diagnostic[:MAX_DETAIL],
        "matched": target.matched[:MAX_EVIDENCE],
        # The newsletter whose token matched; empty when the report named the address.
        "newsletter": target.newsletter or "",
    }


def _count_soft(
    app: Runtime, session: Session, target: _Target, detail: str, evidence: dict[str, str]
) -> bool:
    """A soft bounce counts towards the limit; reaching it suppresses (0 means never)."""
    subscriber = target.subscriber
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
        issue_id=target.issue_id,
        evidence=evidence,
    )


def _dedupe_key(reading: Reading, subscriber: Subscriber, kind: Kind) -> str:
    digest = hashlib.sha256(f"{reading.message_id}\0{subscriber.id}\0{kind}".encode())
    return f"report:{digest.hexdigest()}"
