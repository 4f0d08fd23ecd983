"""Subscriber lists in and out as CSV.

Import streams the file in batches, so a million rows need little memory, and applies it as
one transaction: a file that cannot be read to the end changes nothing. Rows that are wrong
are reported with their line numbers and skipped; the rest go in. An address that the
database holds as unsubscribed or bounced stays so, whatever the file says.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from io import BufferedReader
from pathlib import Path
from typing import IO, Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, insert, literal, select, update
from sqlalchemy.orm import Session

from newsletter.db.models import Event, EventKind, Subscriber, SubscriberStatus
from newsletter.errors import InputError
from newsletter.subscribers.rules import Roster, clean_name, list_subscribers, normalise_email

BATCH = 2000
MAX_REASONS = 1000  # invalid rows listed one by one; beyond this only counted
IMPORTABLE = {"active", "unsubscribed", "bounced"}
COLUMNS = ("email", "name", "status", "subscribed_at")
EXPORT_COLUMNS = (
    "email",
    "name",
    "status",
    "subscribed_at",
    "confirmed_at",
    "unsubscribed_at",
    "consent_source",
)


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    suppressed: int = 0
    merged: int = 0
    invalid: int = 0
    reasons: list[tuple[int, str]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def valid(self) -> int:
        """Rows that named a subscriber, whatever became of them."""
        return self.added + self.updated + self.unchanged + self.suppressed + self.merged

    def reject(self, line: int, reason: str) -> None:
        self.invalid += 1
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append((line, reason))


@dataclass(frozen=True)
class Row:
    line: int
    email: str
    name: str | None
    status: SubscriberStatus
    subscribed_at: datetime | None


def import_csv(app: Roster, path: Path, *, dry_run: bool = False) -> ImportReport:
    report = ImportReport(dry_run=dry_run)
    zone = app.settings.newsletter.zone
    now = app.clock.now()
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below, after streaming
    except OSError as exc:
        raise InputError(f"{path}: cannot open: {exc.strerror}") from None
    with handle, app.sessions() as session:
        session.begin()
        try:
            rows = _rows(_decoded_lines(handle, path), path, zone, report)
            for batch in _batches(_merge_duplicates(rows, report)):
                _apply(session, batch, now, report)
        except BaseException:
            session.rollback()
            raise
        if dry_run:
            session.rollback()
        else:
            session.commit()
    return report


def _decoded_lines(handle: BufferedReader, path: Path) -> Iterator[str]:
    """Lines as text; a line that is not UTF-8 is passed on marked, to be reported by number."""
    if b"\0" in handle.peek(8192)[:8192]:
        raise InputError(f"{path}: this is a binary file, not a CSV text file")
    for number, raw in enumerate(handle):
        if b"\0" in raw:
            raise InputError(f"{path}: this is a binary file, not a CSV text file")
        line = raw.removeprefix(b"\xef\xbb\xbf") if number == 0 else raw
        yield line.decode("utf-8", errors="surrogateescape")


def _rows(lines: Iterator[str], path: Path, zone: ZoneInfo, report: ImportReport) -> Iterator[Row]:
    header_line = next(lines, None)
    if header_line is None or not header_line.strip():
        raise InputError(f"{path}: the file is empty", hint="the first line must be a header")
    delimiter, header = _read_header(header_line, path)
    extra = [name for name in header if name not in COLUMNS]
    if extra:
        report.notices.append(f"ignored column(s): {', '.join(extra)}")
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    reader_line = 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputError(
                f"{path}, line {reader.line_num + 1}: {_csv_problem(exc)}",
                hint="nothing was imported; fix the file and run the import again",
            ) from None
        line = reader_line + 1
        reader_line = reader.line_num + 1
        if not any(v.strip() for v in values):
            continue
        try:
            yield _parse_row(line, dict(zip(header, values, strict=False)), zone)
        except InputError as exc:
            report.reject(line, exc.message)


def _read_header(line: str, path: Path) -> tuple[str, list[str]]:
    if _has_surrogates(line):
        raise InputError(f"{path}: the header is not UTF-8", hint="save the file as UTF-8")
    for delimiter in (",", ";", "\t"):
        try:
            cells = next(csv.reader([line], delimiter=delimiter, strict=True))
        except csv.Error as exc:
            raise InputError(f"{path}, line 1: {_csv_problem(exc)}") from None
        header = [h.strip().lower() for h in cells]
        if "email" in header:
            return delimiter, header
    if "@" in line:
        raise InputError(
            f"{path}: the first line looks like an address, not a header",
            hint="add a header line such as `email,name,status,subscribed_at`",
        )
    raise InputError(
        f"{path}: the header has no `email` column",
        hint="the first line must name the columns, e.g. `email,name,status,subscribed_at`",
    )


def _csv_problem(exc: csv.Error) -> str:
    """The csv module's messages speak of its own API; say what is wrong with the file."""
    text = str(exc)
    if "new-line character" in text:
        return "a line break inside an unquoted field (a bare carriage return?)"
    return text


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _parse_row(line: int, record: dict[str, str], zone: ZoneInfo) -> Row:
    if any(_has_surrogates(v) for v in record.values()):
        raise InputError("not valid UTF-8 (save the file as UTF-8)")
    email = normalise_email(record.get("email", ""))
    raw_name = record.get("name")
    name = clean_name(raw_name) if raw_name is not None else None
    raw_status = (record.get("status") or "active").strip().lower()
    if raw_status not in IMPORTABLE:
        raise InputError(f"status {raw_status[:40]!r} is not one of active, unsubscribed, bounced")
    return Row(line, email, name, SubscriberStatus(raw_status), _parse_time(record, zone))


def _parse_time(record: dict[str, str], zone: ZoneInfo) -> datetime | None:
    raw = (record.get("subscribed_at") or "").strip()
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise InputError(f"subscribed_at {raw[:40]!r} is not an ISO 8601 date") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


def _merge_duplicates(rows: Iterable[Row], report: ImportReport) -> Iterator[Row]:
    """A repeated address keeps its first row; the repeat is counted, not applied twice."""
    seen: set[str] = set()
    for row in rows:
        if row.email in seen:
            report.merged += 1
            continue
        seen.add(row.email)
        yield row


def _batches(rows: Iterable[Row]) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _apply(session: Session, batch: list[Row], now: datetime, report: ImportReport) -> None:
    existing = {
        s.email: s
        for s in session.scalars(
            select(Subscriber).where(Subscriber.email.in_([r.email for r in batch]))
        )
    }
    new_rows: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for row in batch:
        current = existing.get(row.email)
        if current is None:
            new_rows.append(_new_subscriber(row, now))
            report.added += 1
            continue
        if current.status.suppressed:
            report.suppressed += 1
            continue
        changes = _changes(current, row, now)
        if not changes:
            report.unchanged += 1
            continue
        session.execute(update(Subscriber).where(Subscriber.id == current.id).values(**changes))
        if "status" in changes:
            kind = {
                SubscriberStatus.ACTIVE: EventKind.CONFIRMED,
                SubscriberStatus.UNSUBSCRIBED: EventKind.UNSUBSCRIBED,
                SubscriberStatus.BOUNCED: EventKind.BOUNCED,
            }[changes["status"]]
            events.append(_event(current.id, kind, now))
        else:
            events.append(_event(current.id, EventKind.UPDATED, now))
        report.updated += 1
    if events:
        session.execute(insert(Event), events)
    if new_rows:
        _insert_new(session, new_rows, now)


def _insert_new(session: Session, rows: list[dict[str, Any]], now: datetime) -> None:
    """Insert new subscribers with their `subscribed` event (and the suppression event of
    one imported as unsubscribed or bounced).

    The events are made by the database from the rows just inserted, found by address, rather
    than by asking for every new id back: returning ids row by row through the ORM cost more
    than all the rest of an import together.
    """
    # The table, not the mapped class: the ORM's bulk path reads every row back otherwise.
    session.execute(insert(cast(Table, Subscriber.__table__)), rows)
    emails = [row["email"] for row in rows]
    for kind, status in (
        (EventKind.SUBSCRIBED, None),
        (EventKind.UNSUBSCRIBED, SubscriberStatus.UNSUBSCRIBED),
        (EventKind.BOUNCED, SubscriberStatus.BOUNCED),
    ):
        chosen = select(
            Subscriber.id,
            literal(kind, Event.kind.type),
            literal(now, Event.at.type),
            literal("import"),
            literal(""),
        ).where(Subscriber.email.in_(emails))
        if status is not None:
            chosen = chosen.where(Subscriber.status == status)
        session.execute(
            insert(Event).from_select(["subscriber_id", "kind", "at", "source", "detail"], chosen)
        )


def _new_subscriber(row: Row, now: datetime) -> dict[str, Any]:
    return {
        "email": row.email,
        "name": row.name or "",
        "status": row.status,
        "subscribed_at": row.subscribed_at or now,
        "created_at": now,
        "updated_at": now,
        "confirmed_at": now if row.status is SubscriberStatus.ACTIVE else None,
        "unsubscribed_at": now if row.status.suppressed else None,
        "consent_source": "import",
        "consent_ip": "",
        "consent_text": "",
        "soft_bounces": 0,
        "last_confirmation_sent_at": None,
    }


def _changes(current: Subscriber, row: Row, now: datetime) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if row.name and row.name != current.name:
        changes["name"] = row.name
    if row.status is not current.status:
        changes["status"] = row.status
        if row.status is SubscriberStatus.ACTIVE:
            changes["confirmed_at"] = now
        else:
            changes["unsubscribed_at"] = now
    if row.subscribed_at is not None and row.subscribed_at != current.subscribed_at:
        changes["subscribed_at"] = row.subscribed_at
    if changes:
        changes["updated_at"] = now
    return changes


def _event(subscriber_id: int, kind: EventKind, at: datetime) -> dict[str, Any]:
    return {
        "subscriber_id": subscriber_id,
        "kind": kind,
        "at": at,
        "source": "import",
        "detail": "",
        "issue_id": None,
        "dedupe_key": None,
    }


def export_csv(app: Roster, out: IO[str]) -> int:
    """Write every subscriber; cells a spreadsheet would run as a formula are defused."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    with app.sessions() as session:
        for s in list_subscribers(session):
            writer.writerow(
                [
                    _cell(s.email),
                    _cell(s.name),
                    s.status.value,
                    _iso(s.subscribed_at),
                    _iso(s.confirmed_at),
                    _iso(s.unsubscribed_at),
                    _cell(s.consent_source),
                ]
            )
            count += 1
    return count


def _iso(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else ""


def _cell(value: str) -> str:
    # OWASP's advice for CSV injection: a leading quote makes the cell plain text.
    return f"'{value}" if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
