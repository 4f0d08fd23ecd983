"""Subscriber lists in from CSV: ours, or another tool's export.

Import streams the file in batches, so a million rows need little memory, and applies it as
one transaction: a file that cannot be read to the end changes nothing. Rows that are wrong
are reported with their line numbers and skipped; the rest go in. An address that the
database holds as unsubscribed or bounced stays so, whatever the file says, and the consent
record of an address already held is never rewritten by a file.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from io import TextIOWrapper
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, case, insert, literal, select, update
from sqlalchemy.orm import Session

from newsletter.db.models import Event, EventKind, Subscriber, SubscriberStatus, Subscription
from newsletter.errors import InputError
from newsletter.subscribers.columns import Columns, Row, parse_row, resolve
from newsletter.subscribers.encoding import Encoding, detect
from newsletter.subscribers.forgotten import forgotten_among
from newsletter.subscribers.rules import Roster
from newsletter.subscribers.subscriptions import STARTS_AS

BATCH = 2000
MAX_REASONS = 1000  # invalid rows listed one by one; beyond this only counted


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
    encoding: str = ""
    mapped: list[str] = field(default_factory=list)

    @property
    def valid(self) -> int:
        """Rows that named a subscriber, whatever became of them."""
        return self.added + self.updated + self.unchanged + self.suppressed + self.merged

    def reject(self, line: int, reason: str) -> None:
        self.invalid += 1
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append((line, reason))


def import_csv(app: Roster, path: Path, *, dry_run: bool = False) -> ImportReport:
    report = ImportReport(dry_run=dry_run)
    zone = app.settings.newsletter.zone
    now = app.clock.now()
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below, after streaming
    except OSError as exc:
        raise InputError(f"{path}: cannot open: {exc.strerror}") from None
    try:
        encoding = detect(handle, path)
    except BaseException:
        handle.close()
        raise
    report.encoding = encoding.label
    # Split at line feeds only: a bare carriage return is the csv module's to refuse.
    text = TextIOWrapper(handle, encoding.codec, errors="surrogateescape", newline="\n")
    with text, app.sessions() as session:
        session.begin()
        try:
            lines = _decoded_lines(text, path, encoding)
            rows = _rows(lines, path, zone, report, check=not encoding.clean)
            for batch in _batches(_merge_duplicates(rows, report)):
                _apply(
                    session,
                    batch,
                    now,
                    report,
                    app.settings.secrets.secret_keys,
                    newsletter=app.settings.newsletter.slug,
                )
        except BaseException:
            session.rollback()
            raise
        if dry_run:
            session.rollback()
        else:
            session.commit()
    return report


def _decoded_lines(text: TextIOWrapper, path: Path, encoding: Encoding) -> Iterator[str]:
    """Lines as text; bytes that do not decode are passed on marked, to be reported by line
    number."""
    try:
        for line in text:
            if "\0" in line:
                raise InputError(f"{path}: this is a binary file, not a CSV text file")
            yield line
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: cannot be read as {encoding.label}: {exc.reason}") from None


def _rows(
    lines: Iterator[str], path: Path, zone: ZoneInfo, report: ImportReport, *, check: bool
) -> Iterator[Row]:
    header_line = next(lines, None)
    if header_line is None or not header_line.strip():
        raise InputError(f"{path}: the file is empty", hint="the first line must be a header")
    if _has_surrogates(header_line):
        raise InputError(
            f"{path}: the header cannot be read as {report.encoding}",
            hint="save the file as UTF-8",
        )
    delimiter, columns = _read_header(header_line, path)
    report.mapped = columns.mapped
    if columns.ignored:
        report.notices.append(f"ignored column(s): {', '.join(columns.ignored)}")
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
            if check and any(_has_surrogates(v) for v in values):
                raise InputError(f"not valid {report.encoding} (save the file as UTF-8)")
            yield parse_row(line, values, columns, zone)
        except InputError as exc:
            report.reject(line, exc.message)


def _read_header(line: str, path: Path) -> tuple[str, Columns]:
    for delimiter in (",", ";", "\t"):
        try:
            cells = next(csv.reader([line], delimiter=delimiter, strict=True))
        except csv.Error as exc:
            raise InputError(f"{path}, line 1: {_csv_problem(exc)}") from None
        columns = resolve(cells)
        if columns is not None:
            return delimiter, columns
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


def _apply(
    session: Session,
    batch: list[Row],
    now: datetime,
    report: ImportReport,
    keys: Sequence[str],
    *,
    newsletter: str,
) -> None:
    existing = {
        s.email: s
        for s in session.scalars(
            select(Subscriber).where(Subscriber.email.in_([r.email for r in batch]))
        )
    }
    erased = forgotten_among(session, keys, (r.email for r in batch if r.email not in existing))
    new_rows: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for row in batch:
        current = existing.get(row.email)
        if current is None and row.email in erased:
            report.suppressed += 1
            report.notices.append(
                f"line {row.line}: skipped: the address was erased at its owner's request"
            )
            continue
        if current is None:
            new_rows.append(_new_subscriber(row, now))
            report.added += 1
            continue
        if current.status.suppressed:
            if row.status is current.status:
                report.unchanged += 1
            else:
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
        _insert_new(session, new_rows, now, newsletter)


def _insert_new(
    session: Session, rows: list[dict[str, Any]], now: datetime, newsletter: str
) -> None:
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
    starts = case(
        *((Subscriber.status == a, b.value) for a, b in STARTS_AS.items()),
    )
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
                literal(""),
                Subscriber.subscribed_at,
                literal(now, Subscription.updated_at.type),
                Subscriber.unsubscribed_at,
                Subscriber.consent_source,
                Subscriber.consent_text,
            ).where(Subscriber.email.in_(emails)),
        )
    )


def _new_subscriber(row: Row, now: datetime) -> dict[str, Any]:
    """A column the file has is taken as written, even empty; one it lacks gets what an
    import means: consent by import, confirmed or suppressed now."""
    given, consent = row.given, row.consent
    return {
        "email": row.email,
        "name": row.name or "",
        "status": row.status,
        "subscribed_at": row.subscribed_at or now,
        "created_at": now,
        "updated_at": now,
        "confirmed_at": row.confirmed_at
        if "confirmed_at" in given
        else (now if row.status is SubscriberStatus.ACTIVE else None),
        "unsubscribed_at": row.unsubscribed_at
        if "unsubscribed_at" in given
        else (now if row.status.suppressed else None),
        "consent_source": consent.get("consent_source", "import"),
        "consent_ip": consent.get("consent_ip", ""),
        "consent_text": consent.get("consent_text", ""),
        "soft_bounces": 0,
        "last_confirmation_sent_at": None,
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
