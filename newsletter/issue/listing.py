"""The articles a period holds, as `newsletter articles list` shows them, and which period a
command acts on when none is named."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from newsletter.db.models import LOCKED_STATUSES, Article, Issue
from newsletter.issue.periods import Periods, Week
from newsletter.runtime import Runtime


@dataclass(frozen=True)
class ArticleRow:
    id: int
    published_at: datetime
    section: str
    kicker: str
    title: str
    authors: tuple[str, ...]
    url: str


def periods(app: Runtime) -> Periods:
    return Periods.of(app.settings.newsletter)


def last_closed(app: Runtime) -> Week:
    """The issue whose period closed most recently: what `send` sends when none is named."""
    return periods(app).last_closed(app.clock.now())


def resolve_week(app: Runtime, week: Week | None) -> Week:
    """The issue asked for, or the next one: the period that closed last while its issue is
    unsent (and it has articles), else the period still open. This is what editors prepare
    between two sends."""
    if week is not None:
        return week
    closed = last_closed(app)
    start, end = periods(app).bounds(closed)
    with app.transaction() as session:
        status = session.scalars(
            select(Issue.status).where(
                Issue.newsletter == app.settings.newsletter.slug, Issue.week == str(closed)
            )
        ).first()
        empty = (
            status is None
            and not session.scalars(
                select(Article.id)
                .where(Article.published_at >= start, Article.published_at < end)
                .limit(1)
            ).first()
        )
    # A closed period that is sent, or that never had anything to send, is behind us.
    return closed.next() if status in LOCKED_STATUSES or empty else closed


def list_articles(app: Runtime, week: Week | None) -> tuple[Week, list[ArticleRow]]:
    chosen = resolve_week(app, week)
    start, end = periods(app).bounds(chosen)
    with app.transaction() as session:
        articles = session.scalars(
            select(Article)
            .where(Article.published_at >= start, Article.published_at < end)
            .order_by(Article.published_at.desc(), Article.id.desc())
        ).all()
        rows = [
            ArticleRow(
                id=a.id,
                published_at=a.published_at,
                section=a.section,
                kicker=a.kicker,
                title=a.title,
                authors=tuple(filter(None, a.authors.split("\n"))),
                url=a.url,
            )
            for a in articles
        ]
    return chosen, rows
