"""What a message in the bounce mailbox says, read without touching the database.

Three kinds of mail arrive there: delivery status notifications (RFC 3464), complaint reports
(ARF, RFC 5965) and unsubscribe requests sent to the List-Unsubscribe mailto. Each is reduced
to plain values: how the recipient may be identified (the places where our signed VERP
address or unsubscribe token may appear, then plain addresses, which anyone can write) and
what happened. A delay is kept apart from a failure: the server is still trying. Bounces that
are not RFC 3464 reports fall back to flufl.bounce's heuristic detectors.
"""

from __future__ import annotations

import email
import enum
import hashlib
import logging
import re
import unicodedata
from dataclasses import dataclass
from email.message import Message
from email.utils import getaddresses

from flufl.bounce import all_failures

from newsletter.errors import NewsletterError


class Kind(enum.StrEnum):
    HARD = "hard"
    SOFT = "soft"
    POLICY = "policy"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    DELAYED = "delayed"


class Unreadable(NewsletterError):
    """A message that is not a bounce, complaint or unsubscribe request we can act on."""


@dataclass(frozen=True)
class Failure:
    """One recipient's outcome; `address` is empty when only the envelope names it."""

    address: str
    kind: Kind
    status: str
    diagnostic: str


@dataclass(frozen=True)
class Clue:
    """A value that may be one of our signed tokens, and where in the report it was found.

    `verp` clues are addresses (our VERP sender), the others bare unsubscribe tokens. Only a
    clue whose signature verifies proves that the report answers a message we sent.
    """

    where: str
    value: str
    verp: bool


@dataclass(frozen=True)
class Reading:
    message_id: str
    date: str
    failures: tuple[Failure, ...]
    clues: tuple[Clue, ...]
    addresses: tuple[str, ...]


# flufl.bounce logs a traceback for each detector that trips over a malformed message; we
# report those messages ourselves, as one line each.
logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)

# Headers where the address a bounce was delivered to (our VERP sender) shows up.
_ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_MAILTO_TOKEN = re.compile(r"\bunsubscribe-([A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+)")
_URL_TOKEN = re.compile(r"/u/([A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+)")


def read(raw: bytes) -> Reading:
    """Classify one raw message, or raise `Unreadable` saying why it was not understood."""
    if not raw.strip():
        raise Unreadable("the message is empty")
    msg = email.message_from_bytes(raw)
    message_id = _header(msg, "message-id") or hashlib.sha256(raw).hexdigest()
    date = _header(msg, "date")
    report_type = str(msg.get_param("report-type", "", header="content-type")).lower()
    if msg.get_content_type() == "multipart/report" and report_type == "feedback-report":
        return _complaint(msg, message_id, date)
    status_parts = [p for p in msg.walk() if p.get_content_type() == "message/delivery-status"]
    if status_parts:
        return _dsn(msg, message_id, date, status_parts)
    token = _MAILTO_TOKEN.search(_header(msg, "subject"))
    if token:
        # Only the signed token names the reader: a From address is trivially forged.
        request = Failure("", Kind.UNSUBSCRIBE, "", "mailto request")
        return Reading(message_id, date, (request,), (Clue("Subject", token[1], False),), ())
    return _heuristic(msg, message_id, date)


def _dsn(msg: Message, message_id: str, date: str, parts: list[Message]) -> Reading:
    failures: list[Failure] = []
    for part in parts:
        blocks = part.get_payload()
        if not isinstance(blocks, list):
            continue
        failures.extend(f for f in map(_failure, blocks[1:]) if f is not None)
    if not failures:
        raise Unreadable("a delivery report without a failed or delayed recipient")
    return Reading(
        message_id,
        date,
        tuple(failures),
        _clues(msg, _returned_headers(msg)),
        tuple(f.address for f in failures if f.address),
    )


def _failure(block: Message) -> Failure | None:
    action = _header(block, "action").lower()
    status = _status(_header(block, "status"), _header(block, "diagnostic-code"))
    diagnostic = " ".join(_header(block, "diagnostic-code").split())
    address = _typed_address(_header(block, "original-recipient")) or _typed_address(
        _header(block, "final-recipient")
    )
    if action.startswith("delayed"):
        kind = Kind.DELAYED
    elif action.startswith(("failed", "error")):
        kind = Kind.SOFT if status.startswith("4.") else classify_permanent(status)
    elif status.startswith("4.") and not action:
        # No verdict, only a transient status: the server has not given up.
        kind = Kind.DELAYED
    else:
        return None
    return Failure(address, kind, status, diagnostic)


def classify_permanent(status: str) -> Kind:
    """RFC 3463 for a failed recipient: X.7.x is the sender's standing with that server (not the
    address), and X.2.2 (mailbox full) is persistent but transient; the rest condemn the address.
    """
    if status.startswith("5.7."):
        return Kind.POLICY
    if status == "5.2.2":
        return Kind.SOFT
    return Kind.HARD


def _status(field: str, diagnostic: str) -> str:
    """The enhanced status, taking the diagnostic's finer code when the field is generic (5.0.0)."""
    found = _STATUS.search(field)
    status = ".".join(found.groups()) if found else ""
    finer = _STATUS.search(diagnostic)
    if finer and (not status or (status.endswith(".0.0") and finer[1] == status[0])):
        return ".".join(finer.groups())
    return status


def _complaint(msg: Message, message_id: str, date: str) -> Reading:
    reports = [p for p in msg.walk() if p.get_content_type() == "message/feedback-report"]
    fields = _first_block(reports[0]) if reports else None
    if fields is None:
        raise Unreadable("a complaint report without its feedback-report part")
    returned = _returned_headers(msg)
    mail_from = [
        Clue("Original-Mail-From", a, True)
        for a in _addresses(_header(fields, "original-mail-from"))
    ]
    addresses = [a for a in _addresses(_header(fields, "original-rcpt-to")) if a]
    if returned is not None:
        addresses.extend(_addresses(_header(returned, "to")))
    feedback = _header(fields, "feedback-type") or "abuse"
    agent = _header(fields, "user-agent")
    detail = f"feedback-type {feedback}" + (f" from {agent}" if agent else "")
    return Reading(
        message_id,
        date,
        (Failure("", Kind.COMPLAINT, "", detail),),
        _clues(msg, returned, mail_from),
        tuple(addresses),
    )


def _heuristic(msg: Message, message_id: str, date: str) -> Reading:
    """A bounce in a provider's own format: flufl.bounce's detectors name the addresses."""
    try:
        temporary, permanent = all_failures(msg)
    except Exception as exc:  # third-party heuristics run on hostile input
        raise Unreadable(f"the bounce detectors failed on it ({type(exc).__name__})") from None
    # flufl.bounce's temporary failures are its detectors' delay warnings.
    failures = [_guessed(a, Kind.HARD) for a in sorted(permanent)]
    failures.extend(_guessed(a, Kind.DELAYED) for a in sorted(temporary - permanent))
    if not failures:
        raise Unreadable("not a delivery report, complaint or unsubscribe request")
    return Reading(
        message_id,
        date,
        tuple(failures),
        _clues(msg, _returned_headers(msg)),
        tuple(f.address for f in failures),
    )


def _guessed(address: bytes, kind: Kind) -> Failure:
    return Failure(address.decode("ascii", "replace"), kind, "", "found by flufl.bounce")


def _returned_headers(msg: Message) -> Message | None:
    """The headers of our message as returned inside the report, if the reporter included them."""
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global"):
            return _first_block(part)
        if ctype == "text/rfc822-headers":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                return email.message_from_bytes(payload)
    return None


def _first_block(part: Message) -> Message | None:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    return None


def _clues(
    msg: Message, returned: Message | None, first: list[Clue] | None = None
) -> tuple[Clue, ...]:
    """Where the report was delivered (our VERP sender), then what it returned of our message."""
    found = list(first or ())
    for name in _ENVELOPE_HEADERS:
        for value in msg.get_all(name, []):
            found.extend(Clue(name, a, True) for a in _addresses(str(value)))
    if returned is not None:
        where = "returned Return-Path"
        found.extend(Clue(where, a, True) for a in _addresses(_header(returned, "return-path")))
        value = _header(returned, "list-unsubscribe")
        where = "returned List-Unsubscribe"
        for pattern in (_URL_TOKEN, _MAILTO_TOKEN):
            found.extend(Clue(where, m[1], False) for m in pattern.finditer(value))
    return tuple(dict.fromkeys(found))


def _header(msg: Message, name: str) -> str:
    value = msg.get(name)
    return "" if value is None else str(value).strip()


def _addresses(value: str) -> list[str]:
    return [address.strip() for _name, address in getaddresses([value]) if "@" in address]


def neutralise(text: str, limit: int = 300) -> str:
    """Text from a report made safe for a terminal: control, format (bidi, zero-width) and line
    separator characters are dropped or become spaces, undecodable bytes become U+FFFD."""
    kept: list[str] = []
    for ch in text:
        category = unicodedata.category(ch)
        if category == "Cs":
            kept.append("\ufffd")
        elif ch in "\t\r\n" or category in ("Zl", "Zp"):
            kept.append(" ")
        elif category not in ("Cc", "Cf"):
            kept.append(ch)
    cleaned = " ".join("".join(kept).split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "\u2026"


def _typed_address(value: str) -> str:
    """`rfc822; user@example.org` -> the address; other address types are not ours."""
    kind, _, address = value.partition(";")
    if kind.strip().lower() != "rfc822":
        return ""
    return address.strip().strip("<>")
