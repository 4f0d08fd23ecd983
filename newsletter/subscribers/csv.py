"""Subscriber lists in from CSV: ours, or another tool's export.

Import streams the file in batches, so a million rows need little memory, and applies it as
one transaction: a file that cannot be read to the end changes nothing. Rows that are wrong
(unknown newsletters and sections included) are reported with their line numbers, one line per
problem, and skipped; the rest go in. An address that the
database holds as unsubscribed or bounced stays so, whatever the file says, and the consent
record of an address already held is never rewritten by a file.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from io import TextIOWrapper
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, insert, literal, select
from sqlalchemy.orm import Session

from newsletter.db.models import Event, EventKind, Subscriber, SubscriberStatus
from newsletter.errors import InputError
from newsletter.subscribers import imported
from newsletter.subscribers.choices import Catalogue
from newsletter.subscribers.columns import Columns, Row, parse_row, resolve
from newsletter.subscribers.encoding import Encoding, detect
from newsletter.subscribers.forgotten import forgotten_among
from newsletter.subscribers.rules import Roster
from newsletter.subscribers.subscriptions import pack_sections

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

    def reject(self, line: int, *reasons: str) -> None:
        """One invalid row, with a line for each thing wrong in it."""
        self.invalid += 1
        for reason in reasons:
            if len(self.reasons) < MAX_REASONS:
                self.reasons.append((line, reason))


@dataclass(frozen=True)
class _Target:
    """Where rows go: the newsletters configured, and the one for rows that name none."""

    catalogue: Catalogue
    fallback: str
    explicit: bool  # the import was told `--newsletter`: rows naming none go there, all of them
    keys: Sequence[str]  # the secret keys, to recognise erased addresses


def import_csv(
    app: Roster, path: Path, *, dry_run: bool = False, newsletter: str | None = None
) -> ImportReport:
    """Import the file; rows that name no newsletter go to `newsletter` (default: the
    default newsletter, and then only new readers: those held keep what they have)."""
    report = ImportReport(dry_run=dry_run)
    target = _Target(
        Catalogue.of(app.settings),
        newsletter or app.settings.default_newsletter.slug,
        explicit=newsletter is not None,
        keys=app.settings.secrets.secret_keys,
    )
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
            rows = _rows(lines, path, zone, report, target, check=not encoding.clean)
            for batch in _batches(_merge_duplicates(rows, report)):
                _apply(session, batch, now, report, target)
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
    lines: Iterator[str],
    path: Path,
    zone: ZoneInfo,
    report: ImportReport,
    target: _Target,
    *,
    check: bool,
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
            row = parse_row(line, values, columns, zone)
        except InputError as exc:
            report.reject(line, exc.message)
            continue
        if not (row.newsletters or row.sections or target.explicit):
            yield row
            continue
        chosen, problems = target.catalogue.choose(
            row.newsletters or (target.fallback,), row.sections
        )
        if problems:
            report.reject(line, *problems)
        else:
            yield replace(row, chosen=chosen)


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
    target: _Target,
) -> None:
    existing = {
        s.email: s
        for s in session.scalars(
            select(Subscriber).where(Subscriber.email.in_([r.email for r in batch]))
        )
    }
    erased = forgotten_among(
        session, target.keys, (r.email for r in batch if r.email not in existing)
    )
    # Subscriptions are read only for the rows that may change them.
    held = imported.held_by(
        session,
        (
            current.id
            for row in batch
            if (current := existing.get(row.email)) is not None
            and not current.status.suppressed
            and (row.chosen is not None or row.status is not current.status)
        ),
    )
    new_rows: list[dict[str, Any]] = []
    chosen: dict[tuple[str, str], list[str]] = {}
    events: list[dict[str, Any]] = []
    outcomes: list[imported.Outcome] = []
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
            for slug, sections in (row.chosen or {target.fallback: ()}).items():
                chosen.setdefault((slug, pack_sections(sections)), []).append(row.email)
            report.added += 1
            continue
        if current.status.suppressed:
            if row.status is current.status:
                report.unchanged += 1
            else:
                report.suppressed += 1
            continue
        outcome = imported.change(
            session, current, row, held=held.get(current.id, {}), now=now, events=events
        )
        if outcome is not None:
            outcomes.append(outcome)
            report.updated += 1
        elif row.chosen and imported.restarts_left(held.get(current.id, {}), row.chosen):
            report.suppressed += 1
        else:
            report.unchanged += 1
    if events:
        session.execute(insert(Event), events)
    imported.apply(session, outcomes)
    if new_rows:
        _insert_new(session, new_rows, now, chosen)


def _insert_new(
    session: Session,
    rows: list[dict[str, Any]],
    now: datetime,
    chosen: dict[tuple[str, str], list[str]],
) -> None:
    """Insert new subscribers with their `subscribed` event (and the suppression event of
    one imported as unsubscribed or bounced), and their subscriptions.

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
        picked = select(
            Subscriber.id,
            literal(kind, Event.kind.type),
            literal(now, Event.at.type),
            literal("import"),
            literal(""),
        ).where(Subscriber.email.in_(emails))
        if status is not None:
            picked = picked.where(Subscriber.status == status)
        session.execute(
            insert(Event).from_select(["subscriber_id", "kind", "at", "source", "detail"], picked)
        )
    imported.insert_for_new(session, chosen, now)


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
