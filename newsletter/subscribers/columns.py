"""What a subscriber CSV's columns and words mean, whichever tool wrote it.

Staff arrive with a list exported from the tool they used before. Rather than asking them to
rename columns by hand, every header and status word that Mailchimp, Substack, listmonk,
Buttondown and Ghost write is listed here, in one table, beside our own export's; the import
says which column it took for what. The formula escaping of our export is here too, with its
exact inverse, so that an exported file reads back to the same values.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from newsletter.db.models import SubscriberStatus
from newsletter.errors import InputError
from newsletter.subscribers.addresses import clean_name, normalise_email
from newsletter.subscribers.choices import split

ACTIVE, UNSUBSCRIBED = SubscriberStatus.ACTIVE, SubscriberStatus.UNSUBSCRIBED
UTC_ZONE = ZoneInfo("UTC")

# Each field and the headers that carry it, in order of preference (the first one present
# wins). Headers are compared lower-cased, with spaces and dashes read as underscores.
ALIASES: dict[str, tuple[str, ...]] = {
    # ours; Mailchimp "Email Address"; Buttondown "email_address"
    "email": ("email", "email_address", "e_mail", "e_mail_address"),
    # ours, listmonk, Ghost
    "name": ("name", "full_name"),
    # Mailchimp
    "first_name": ("first_name", "fname"),
    "last_name": ("last_name", "lname"),
    # ours, listmonk; Buttondown "subscriber_type"; Mailchimp's contact export
    "status": ("status", "subscriber_type", "email_marketing_status", "email_marketing"),
    # Ghost: true while the member receives newsletters
    "subscribed_to_emails": ("subscribed_to_emails",),
    # Substack: true once the reader stopped the emails
    "email_disabled": ("email_disabled",),
    # ours; Mailchimp OPTIN_TIME; listmonk, Ghost, Substack created_at; Buttondown
    "subscribed_at": ("subscribed_at", "optin_time", "created_at", "creation_date"),
    # ours; Mailchimp
    "confirmed_at": ("confirmed_at", "confirm_time"),
    "unsubscribed_at": ("unsubscribed_at", "unsub_time"),
    # Mailchimp's "cleaned" (bounced) export
    "cleaned_at": ("clean_time",),
    # ours
    "consent_source": ("consent_source",),
    # ours; Mailchimp (the confirmation's address is the better evidence)
    "consent_ip": ("consent_ip", "confirm_ip", "optin_ip"),
    "consent_text": ("consent_text",),
    # ours: the newsletters and sections a reader is down for, `;` between values
    "newsletters": ("newsletters",),
    "sections": ("sections",),
}

# Mailchimp writes its times in UTC without saying so.
MAILCHIMP_TIMES = frozenset({"optin_time", "confirm_time", "unsub_time", "clean_time"})

# How a field that is not one of our columns is named in the import's report.
SHOWN = {
    "first_name": "name (first part)",
    "last_name": "name (last part)",
    "subscribed_to_emails": "status",
    "email_disabled": "status (true: unsubscribed)",
    "cleaned_at": "unsubscribed_at, status bounced",
}

# Status words of every tool, as the standing they mean here.
STATUS_WORDS: dict[str, SubscriberStatus] = {
    "active": SubscriberStatus.ACTIVE,
    "subscribed": SubscriberStatus.ACTIVE,  # Mailchimp
    "enabled": SubscriberStatus.ACTIVE,  # listmonk
    "regular": SubscriberStatus.ACTIVE,  # Buttondown's free and paying readers
    "premium": SubscriberStatus.ACTIVE,
    "gifted": SubscriberStatus.ACTIVE,
    "trialed": SubscriberStatus.ACTIVE,
    "churned": SubscriberStatus.ACTIVE,  # Buttondown: paid no more, still reads for free
    "pending": SubscriberStatus.PENDING,  # ours, Mailchimp
    "unactivated": SubscriberStatus.PENDING,  # Buttondown: never confirmed
    "unsubscribed": SubscriberStatus.UNSUBSCRIBED,
    "disabled": SubscriberStatus.UNSUBSCRIBED,  # listmonk
    "blocklisted": SubscriberStatus.UNSUBSCRIBED,  # listmonk
    "removed": SubscriberStatus.UNSUBSCRIBED,  # Buttondown
    "complained": SubscriberStatus.UNSUBSCRIBED,  # a complaint unsubscribes, as ours does
    "bounced": SubscriberStatus.BOUNCED,
    "cleaned": SubscriberStatus.BOUNCED,  # Mailchimp
    "undeliverable": SubscriberStatus.BOUNCED,  # Buttondown
}
# Words for contacts who never asked for the newsletter: such a row is skipped, never mailed.
NOT_SUBSCRIBED = frozenset({"non_subscribed", "nonsubscribed", "transactional", "spammy"})
TRUE_WORDS = frozenset({"true", "yes", "1", "t", "y"})
FALSE_WORDS = frozenset({"false", "no", "0", "f", "n", ""})


def header_key(cell: str) -> str:
    return re.sub(r"[\s\-]+", "_", cell.strip().lower())


@dataclass(frozen=True)
class Columns:
    """Where each field sits in a row (its index, or None when the file has no such column)."""

    index: dict[str, int]
    mapped: list[str]  # "Email Address -> email", for the report
    ignored: list[str]
    given: frozenset[str]  # the fields the file speaks of, even where a row leaves one empty
    utc: bool  # times without an offset are UTC (Mailchimp's), not the configured zone


def resolve(header: list[str]) -> Columns | None:
    """The header's columns as fields, or None when no column holds the address."""
    keys = [header_key(cell) for cell in header]
    index: dict[str, int] = {}
    for name, aliases in ALIASES.items():
        for alias in aliases:
            if alias in keys:
                index[name] = keys.index(alias)
                break
    if "email" not in index:
        return None
    if "name" in index:  # a full name wins over its parts
        index.pop("first_name", None)
        index.pop("last_name", None)
    used = set(index.values())
    mapped = [
        f"{header[i].strip()} -> {SHOWN.get(name, name)}"
        for name, i in index.items()
        if header_key(header[i]) != name or name in SHOWN
    ]
    ignored = [cell.strip() for i, cell in enumerate(header) if i not in used]
    given = set(index) | ({"unsubscribed_at"} if "cleaned_at" in index else set())
    utc = any(keys[i] in MAILCHIMP_TIMES for i in index.values())
    return Columns(index, mapped, ignored, frozenset(given), utc)


# The consent record's columns and their lengths in the database.
CONSENT_LIMITS = {"consent_source": 40, "consent_ip": 45, "consent_text": 40}


@dataclass(frozen=True)
class Row:
    """One subscriber as the file gives it; None where the file has no such column."""

    line: int
    email: str
    name: str | None
    status: SubscriberStatus
    subscribed_at: datetime | None
    confirmed_at: datetime | None = None
    unsubscribed_at: datetime | None = None
    consent: dict[str, str] = field(default_factory=dict)  # the consent columns it has
    given: frozenset[str] = frozenset()  # the fields the file has a column for
    newsletters: tuple[str, ...] = ()  # as the file names them; empty: none named
    sections: tuple[str, ...] = ()
    # Each newsletter the row puts the reader down for, with the sections chosen in it, once
    # checked against the configuration; None: the row names none.
    chosen: dict[str, tuple[str, ...]] | None = None


def parse_row(line: int, values: list[str], columns: Columns, zone: ZoneInfo) -> Row:
    index = columns.index
    width = len(values)

    def cell(name: str) -> str | None:
        i = index.get(name)
        return None if i is None else values[i] if i < width else ""

    email = normalise_email(restore(values[index["email"]] if index["email"] < width else ""))
    raw_name = cell("name")
    if raw_name is None and ("first_name" in index or "last_name" in index):
        raw_name = f"{cell('first_name') or ''} {cell('last_name') or ''}"
    name = clean_name(restore(raw_name)) if raw_name is not None else None
    if columns.utc:
        zone = UTC_ZONE
    return Row(
        line,
        email,
        name,
        _status(cell),
        _parse_time(cell("subscribed_at"), "subscribed_at", zone),
        _parse_time(cell("confirmed_at"), "confirmed_at", zone),
        _parse_time(cell("unsubscribed_at") or cell("cleaned_at"), "unsubscribed_at", zone),
        _consent(cell),
        columns.given,
        split((cell("newsletters") or "").lower()),  # slugs are lower-case
        split(restore(cell("sections") or "")),
    )


def _status(cell: Callable[[str], str | None]) -> SubscriberStatus:
    """The status column if there is one, else Ghost's or Substack's flag, else what
    Mailchimp's per-status files imply by their columns."""
    word = cell("status")
    if word is not None:
        return status_of(word or "active")
    ghost = cell("subscribed_to_emails")
    if ghost is not None:
        return ACTIVE if flag(ghost, "subscribed_to_emails") else UNSUBSCRIBED
    substack = cell("email_disabled")
    if substack is not None:
        return UNSUBSCRIBED if flag(substack, "email_disabled") else ACTIVE
    if (cell("cleaned_at") or "").strip():
        return SubscriberStatus.BOUNCED
    if (cell("unsubscribed_at") or "").strip():
        return UNSUBSCRIBED
    return ACTIVE


def _consent(cell: Callable[[str], str | None]) -> dict[str, str]:
    consent: dict[str, str] = {}
    for column, limit in CONSENT_LIMITS.items():
        value = cell(column)
        if value is None:
            continue
        value = restore(value)
        if len(value) > limit:
            raise InputError(f"{column} is longer than {limit} characters")
        consent[column] = value
    return consent


def _parse_time(raw_cell: str | None, column: str, zone: ZoneInfo) -> datetime | None:
    raw = (raw_cell or "").strip()
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise InputError(f"{column} {raw[:40]!r} is not an ISO 8601 date") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


def status_of(word: str) -> SubscriberStatus:
    key = header_key(word)
    status = STATUS_WORDS.get(key)
    if status is not None:
        return status
    if key in NOT_SUBSCRIBED:
        raise InputError(f"status {word.strip()[:40]!r}: never subscribed, so not imported")
    raise InputError(
        f"status {word.strip()[:40]!r} is not one of active, pending, unsubscribed, bounced"
    )


def flag(word: str, column: str) -> bool:
    key = word.strip().lower()
    if key in TRUE_WORDS:
        return True
    if key in FALSE_WORDS:
        return False
    raise InputError(f"{column} {word.strip()[:40]!r} is neither true nor false")


# A cell a spreadsheet would run as a formula starts with one of these, perhaps after quotes.
_FORMULA = re.compile(r"'*[=+\-@\t\r]")


def defuse(value: str) -> str:
    """OWASP's advice against CSV injection: a leading quote makes the cell plain text.

    A value that already starts with quotes before such a character gets one more, so that
    `restore` can take exactly one off and no value is ever changed by a round trip.
    """
    return f"'{value}" if _FORMULA.match(value) else value


def restore(cell: str) -> str:
    """The inverse of `defuse`: `'=x` was `=x`, `''=x` was `'=x`; `'tis` stays as it is."""
    return cell[1:] if cell[:1] == "'" and _FORMULA.match(cell, 1) else cell
