"""Live drafts: the selection is made again when the issue is previewed or sent.

A draft built on Tuesday would otherwise leave out what is published on Wednesday, without a
word. Re-selecting keeps every override and reports what changed since the draft was last
built, so the editors always see what will go out. An approved issue is not re-selected: it
stays as approved until an override or a new article in its period withdraws the approval.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from newsletter.db.models import Issue, IssueStatus
from newsletter.issue.build import (
    Editing,
    Fresh,
    editable_issue,
    select_now,
    store,
    withdrawal,
)
from newsletter.issue.candidates import new_since
from newsletter.issue.periods import Week


@dataclass(frozen=True)
class Change:
    article_id: int
    title: str
    added: bool
    why: str


@dataclass(frozen=True)
class Refresh:
    week: Week
    changes: tuple[Change, ...]
    articles: int
    approved: bool  # an approval stands and the approved selection is what will go out
    withdrawn: str  # why an approval no longer holds, or ""
    stored: bool  # the draft now holds this selection


def refresh_draft(app: Editing, week: Week, *, reselect_approved: bool) -> Refresh:
    """Re-select the draft, unless it is approved (and the approval still holds) or is
    already sending. An issue is never created for an empty selection, so a run before any
    article of the period arrived leaves nothing behind."""
    with app.transaction() as session:
        # Locked, so a second sender starting now cannot re-select an issue the first one has
        # just started sending (PostgreSQL; SQLite serialises writers anyway).
        issue = session.scalars(
            select(Issue)
            .where(Issue.newsletter == app.settings.newsletter.slug, Issue.week == str(week))
            .with_for_update()
        ).one_or_none()
        if issue is not None and issue.status is not IssueStatus.DRAFT:
            return Refresh(week, (), len(issue.articles), False, "", stored=True)
        fresh = select_now(app, session, issue, week)
        withdrawn = "" if issue is None else withdrawal(issue, fresh.pool)
        if issue is not None and issue.approved_at is not None and not withdrawn:
            return Refresh(week, (), len(issue.articles), True, "", stored=True)
        before = [] if issue is None else [row.article_id for row in issue.articles]
        changes = _changes(fresh, before, None if issue is None else issue.built_at)
        count = len(fresh.selection.chosen)
        if (withdrawn and not reselect_approved) or (issue is None and not count):
            return Refresh(week, changes, count, False, withdrawn, stored=False)
        if issue is None:
            issue = editable_issue(session, app.settings.newsletter.slug, week, app.clock.now())
        store(app, session, issue, week, fresh)
        return Refresh(week, changes, count, False, withdrawn, stored=True)


def _changes(fresh: Fresh, before: list[int], built_at: datetime | None) -> tuple[Change, ...]:
    now = [item.article_id for item in fresh.selection.chosen]
    new = {a.id for a in new_since(fresh.pool, built_at)}
    replacing = set(fresh.selection.replacements)
    reasons = {item.article_id: item.reason.value for item in fresh.selection.left_out}
    changes = []
    for aid in now:
        if aid in before:
            continue
        if aid in fresh.pool.late:
            why = "late: published in the period before, first seen after it was sent"
        elif aid in new or built_at is None:
            why = "new since the last build"
        elif aid in replacing:
            why = "came in for an excluded article"
        else:
            why = "there is room for it now"
        changes.append(Change(aid, fresh.articles[aid].title, added=True, why=why))
    for aid in before:
        if aid not in now:
            title = fresh.articles[aid].title if aid in fresh.articles else f"article {aid}"
            why = reasons.get(aid, "no longer in the period or sent in another issue")
            changes.append(Change(aid, title, added=False, why=why))
    return tuple(changes)
