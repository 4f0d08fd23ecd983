"""The stored issue as a subscriber would see it, for a look before sending.

Preview shows exactly what `build` stored (not a fresh render), so what the editors approve
is what goes out; only the personal fields are filled with harmless sample values.
"""

from __future__ import annotations

from sqlalchemy import select

from newsletter.db.models import Issue
from newsletter.errors import StateError
from newsletter.issue.listing import resolve_week
from newsletter.issue.periods import Week
from newsletter.issue.render import personalise, sample_fields
from newsletter.runtime import Runtime


def preview_issue(app: Runtime, week: Week | None, *, text: bool = False) -> tuple[Week, str]:
    """The week's rendered HTML (or text part), personalised for a sample reader."""
    chosen = resolve_week(app, week)
    with app.transaction() as session:
        issue = session.scalars(select(Issue).where(Issue.week == str(chosen))).one_or_none()
        stored = None if issue is None or issue.built_at is None else (issue.text, issue.html)
    if stored is None:
        raise StateError(
            f"the issue for {chosen} has not been built",
            hint=f"run `newsletter issue build --week {chosen}` first",
        )
    template = stored[0] if text else stored[1]
    return chosen, personalise(template, sample_fields(app.settings), html=not text)
