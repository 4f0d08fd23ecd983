"""The issue as a subscriber would see it, for a look before sending.

The draft is live, so preview first re-selects it (as `send` will) and says what changed;
an approved issue is shown as approved. What is shown is then exactly what is stored, so what
the editors look at is what goes out; only the personal fields are filled with harmless
sample values.
"""

from __future__ import annotations

from sqlalchemy import select

from newsletter.db.models import Issue
from newsletter.errors import StateError
from newsletter.issue.build import Editing
from newsletter.issue.listing import resolve_week
from newsletter.issue.live import Refresh, refresh_draft
from newsletter.issue.periods import Week
from newsletter.issue.render import personalise, sample_fields


def preview_issue(
    app: Editing, week: Week | None, *, text: bool = False
) -> tuple[Week, str, Refresh]:
    """The issue's rendered HTML (or text part), personalised for a sample reader."""
    chosen = resolve_week(app, week)
    refresh = refresh_draft(app, chosen, reselect_approved=False)
    with app.transaction() as session:
        issue = session.scalars(select(Issue).where(Issue.week == str(chosen))).one_or_none()
        stored = None if issue is None or issue.built_at is None else (issue.text, issue.html)
    if stored is None:
        raise StateError(
            f"the issue for {chosen} has no articles yet",
            hint=f"run `newsletter issue build --week {chosen}` to see the empty draft",
        )
    template = stored[0] if text else stored[1]
    return chosen, personalise(template, sample_fields(app.settings), html=not text), refresh
