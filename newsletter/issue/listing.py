"""The articles a period holds, as `newsletter articles list` shows them, and which period a
command acts on when none is named."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from newsletter.db.models import Article
from newsletter.issue.periods import Week
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


def resolve_week(app: Runtime, week: Week | None) -> Week:
    """The week asked for, or the one the clock is in, in the publication's zone."""
    return week or Week.containing(app.clock.now(), app.settings.newsletter.zone)


def list_articles(app: Runtime, week: Week | None) -> tuple[Week, list[ArticleRow]]:
    chosen = resolve_week(app, week)
    start, end = chosen.bounds(app.settings.newsletter.zone)
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
