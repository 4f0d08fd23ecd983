"""Editors' decisions about a draft: overrides, undoing them, and approving the selection.

Every change rebuilds the draft in the same transaction, so what `issue show` lists is always
what the decisions give. An override made after `issue approve` withdraws the approval (see
`build.withdrawal`): the editor approved a selection, not the one the change makes.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from newsletter.db.models import Article, Issue, Override, OverrideKind
from newsletter.errors import NotFoundError, StateError, UsageError
from newsletter.issue.build import (
    BuildReport,
    Editing,
    editable_issue,
    select_now,
    store,
)
from newsletter.issue.listing import resolve_week
from newsletter.issue.periods import Week

# Overrides of the same group replace each other: the newest decision about an article wins.
_INCLUSION = (OverrideKind.FEATURE, OverrideKind.INCLUDE, OverrideKind.EXCLUDE)


@dataclass(frozen=True)
class OverrideReport:
    kind: str
    article_id: int
    title: str
    build: BuildReport


def add_override(
    app: Editing,
    week: Week | None,
    article_ref: str,
    kind: OverrideKind,
    position: int | None = None,
    *,
    section: str = "",
    also: bool = False,
) -> OverrideReport:
    """Record an editor's decision and rebuild the draft with it, in one transaction.

    A feature replaces the current top story (which stays in the issue) unless `also`.
    """
    if kind is OverrideKind.MOVE and (position is None or position < 1):
        raise UsageError("POSITION must be 1 or more")
    if kind is OverrideKind.SECTION and not section.strip():
        raise UsageError("SECTION must not be empty")
    chosen = resolve_week(app, week)
    now = app.clock.now()
    with app.transaction() as session:
        issue = editable_issue(session, app.settings.newsletter.slug, chosen, now)
        article = _find_article(session, article_ref)
        if kind is OverrideKind.FEATURE and not also:
            session.execute(
                update(Override)
                .where(Override.issue_id == issue.id, Override.kind == OverrideKind.FEATURE)
                .values(kind=OverrideKind.INCLUDE)
            )
        group = _INCLUSION if kind in _INCLUSION else (kind,)
        _drop(session, issue, article, group)
        session.add(
            Override(
                issue_id=issue.id,
                article_id=article.id,
                kind=kind,
                position=position if kind is OverrideKind.MOVE else None,
                section=section.strip()[:100] if kind is OverrideKind.SECTION else "",
                created_at=now,
            )
        )
        return _rebuild(app, session, issue, chosen, what=kind.value, article=article)


def unfeature(app: Editing, week: Week | None, article_ref: str) -> OverrideReport:
    """The article stops being a top story and stays in the issue, in its section."""
    chosen = resolve_week(app, week)
    now = app.clock.now()
    with app.transaction() as session:
        issue = editable_issue(session, app.settings.newsletter.slug, chosen, now)
        article = _find_article(session, article_ref)
        featured = session.scalars(
            select(Override).where(
                Override.issue_id == issue.id,
                Override.article_id == article.id,
                Override.kind == OverrideKind.FEATURE,
            )
        ).one_or_none()
        if featured is None:
            raise StateError(f"[{article.id}] is not featured in {chosen}")
        featured.kind = OverrideKind.INCLUDE
        return _rebuild(app, session, issue, chosen, what="unfeature", article=article)


def reset(app: Editing, week: Week | None) -> tuple[int, BuildReport]:
    """Drop every override: the draft goes back to what the selection rules alone give."""
    chosen = resolve_week(app, week)
    with app.transaction() as session:
        issue = editable_issue(session, app.settings.newsletter.slug, chosen, app.clock.now())
        dropped = len(issue.overrides)
        session.execute(delete(Override).where(Override.issue_id == issue.id))
        issue.approved_at = None
        session.flush()
        session.expire(issue, ["overrides"])
        report = store(app, session, issue, chosen, select_now(app, session, issue, chosen))
        return dropped, report


def approve(app: Editing, week: Week | None) -> BuildReport:
    """Rebuild the draft and freeze it: `send` sends this selection unless it changes."""
    chosen = resolve_week(app, week)
    with app.transaction() as session:
        issue = editable_issue(session, app.settings.newsletter.slug, chosen, app.clock.now())
        report = store(app, session, issue, chosen, select_now(app, session, issue, chosen))
        if not report.articles:
            raise StateError(f"the issue for {chosen} has no articles; there is nothing to approve")
        issue.approved_at = app.clock.now()
        return report


def _drop(
    session: Session, issue: Issue, article: Article, kinds: tuple[OverrideKind, ...]
) -> None:
    session.execute(
        delete(Override).where(
            Override.issue_id == issue.id,
            Override.article_id == article.id,
            Override.kind.in_(kinds),
        )
    )


def _rebuild(
    app: Editing, session: Session, issue: Issue, week: Week, *, what: str, article: Article
) -> OverrideReport:
    session.flush()
    session.expire(issue, ["overrides"])
    report = store(app, session, issue, week, select_now(app, session, issue, week))
    return OverrideReport(what, article.id, article.title, report)


def _find_article(session: Session, ref: str) -> Article:
    text = ref.strip()
    article: Article | None = None
    if text.isdigit():
        article = session.get(Article, int(text))
    else:
        article = session.scalars(
            select(Article).where(Article.url == text).order_by(Article.id).limit(1)
        ).one_or_none()
    if article is None:
        raise NotFoundError(
            f"no article with id or URL {text!r}",
            hint="`newsletter articles list --week WEEK` shows ids and URLs",
        )
    return article
