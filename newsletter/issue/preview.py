"""The stored issue as a subscriber would see it, for a look before sending.

Preview shows what `build` stored (not a fresh render), so what the editors approve is what
goes out; only the personal fields are filled with harmless sample values. One exception:
a draft whose email templates changed since it was built is built again first, or the
editor would keep looking at the old design and take the template change for broken. A sent
issue is a record and is never re-rendered.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from newsletter.db.models import Issue, IssueStatus
from newsletter.errors import StateError
from newsletter.issue.build import Editing, build_issue
from newsletter.issue.listing import resolve_week
from newsletter.issue.periods import Week
from newsletter.issue.render import personalise, sample_fields
from newsletter.issue.templates import templates_digest


@dataclass(frozen=True)
class Preview:
    week: Week
    content: str
    rebuilt: bool  # the draft was built again because its templates had changed


def preview_issue(app: Editing, week: Week | None, *, text: bool = False) -> Preview:
    """The week's rendered HTML (or text part), personalised for a sample reader."""
    chosen = resolve_week(app, week)
    stored = _stored(app, chosen)
    rebuilt = False
    if stored is not None and stored[2] and _stale(app, stored[3]):
        build_issue(app, chosen)
        stored, rebuilt = _stored(app, chosen), True
    if stored is None:
        raise StateError(
            f"the issue for {chosen} has not been built",
            hint=f"run `newsletter issue build --week {chosen}` first",
        )
    template = stored[0] if text else stored[1]
    content = personalise(template, sample_fields(app.settings), html=not text)
    return Preview(chosen, content, rebuilt)


def _stale(app: Editing, digest: str) -> bool:
    """Whether the templates changed since the render; unknown ("", a render older than
    the digest) counts as unchanged rather than rebuilding a draft unasked."""
    return bool(digest) and digest != templates_digest(app.templates_dirs)


def _stored(app: Editing, week: Week) -> tuple[str, str, bool, str] | None:
    """(text, html, is a draft, template digest) of the built issue, or None."""
    with app.transaction() as session:
        issue = session.scalars(select(Issue).where(Issue.week == str(week))).one_or_none()
        if issue is None or issue.built_at is None:
            return None
        draft = issue.status is IssueStatus.DRAFT
        return issue.text, issue.html, draft, issue.template_digest
