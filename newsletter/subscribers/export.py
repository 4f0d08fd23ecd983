"""The subscriber list out as CSV, in the columns the import reads back.

Every stored field of a subscriber's standing and consent record is written, with the
newsletters the reader gets or awaits and the sections they chose, so that moving a list
through a file keeps it whole; cells a spreadsheet would run as a formula are defused in a way
the import undoes exactly.
"""

from __future__ import annotations

import csv
from datetime import datetime
from typing import IO

from newsletter.subscribers.choices import Catalogue
from newsletter.subscribers.columns import defuse
from newsletter.subscribers.roster import LIVE, with_subscriptions
from newsletter.subscribers.rules import Roster
from newsletter.untrusted import for_terminal

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
    "newsletters",
    "sections",
)


def export_csv(
    app: Roster, out: IO[str], *, terminal: bool = False, newsletter: str | None = None
) -> int:
    """Write every subscriber (with `newsletter`: its readers), in the order they joined;
    returns how many.

    The values are written as stored, so that a file imports again as it was; with
    `terminal`, for output that a terminal will show, control and bidi characters in them
    are written as escapes instead.
    """
    shown = for_terminal if terminal else str
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    catalogue = Catalogue.of(app.settings)
    count = 0
    with app.sessions() as session:
        for s, held in with_subscriptions(session, newsletter=newsletter):
            newsletters, sections = catalogue.cells(sub for sub in held if sub.status in LIVE)
            writer.writerow(
                [
                    defuse(shown(s.email)),
                    defuse(shown(s.name)),
                    s.status.value,
                    _iso(s.subscribed_at),
                    _iso(s.confirmed_at),
                    _iso(s.unsubscribed_at),
                    defuse(shown(s.consent_source)),
                    defuse(shown(s.consent_ip)),
                    defuse(shown(s.consent_text)),
                    newsletters,
                    defuse(shown(sections)),
                ]
            )
            count += 1
    return count


def _iso(moment: datetime | None) -> str:
    """Microseconds only where there are some, so the import reads back the same instant."""
    return moment.isoformat() if moment else ""
