"""The subscriber list out as CSV, in the columns the import reads back.

Every stored field of a subscriber's standing and consent record is written, so that moving a
list through a file keeps it whole; cells a spreadsheet would run as a formula are defused in
a way the import undoes exactly.
"""

from __future__ import annotations

import csv
from datetime import datetime
from typing import IO

from newsletter.subscribers.columns import defuse
from newsletter.subscribers.rules import Roster, list_subscribers

EXPORT_COLUMNS = (
    "email",
    "name",
    "status",
    "subscribed_at",
    "confirmed_at",
    "unsubscribed_at",
    "consent_source",
    "consent_ip",
    "consent_text",
)


def export_csv(app: Roster, out: IO[str]) -> int:
    """Write every subscriber, in the order they joined; returns how many."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    with app.sessions() as session:
        for s in list_subscribers(session):
            writer.writerow(
                [
                    defuse(s.email),
                    defuse(s.name),
                    s.status.value,
                    _iso(s.subscribed_at),
                    _iso(s.confirmed_at),
                    _iso(s.unsubscribed_at),
                    defuse(s.consent_source),
                    defuse(s.consent_ip),
                    defuse(s.consent_text),
                ]
            )
            count += 1
    return count


def _iso(moment: datetime | None) -> str:
    """Microseconds only where there are some, so the import reads back the same instant."""
    return moment.isoformat() if moment else ""
