"""The articles an issue may hold: its period's, late ones, and back-dated ones to list.

An article belongs to the period that holds its publication time. One first seen after the
previous period's issue started sending (or, when that issue was never sent though an earlier
one was, after the period closed) comes into this issue instead, marked late, so cron at the
close never loses the articles a feed shows a little later. Older back-dated items first
seen in this period are listed for the editors and never sent: they belong to issues long
gone. "First seen" is the article's `fetched_at`, which a feed edit to an unsent article
also moves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.db.models import LOCKED_STATUSES, Article, Issue, IssueArticle
from newsletter.issue.periods import Periods, Week


@dataclass(frozen=True)
class Pool:
    start: datetime
    end: datetime
    window: tuple[Article, ...]  # the period's articles, then the late ones
    late: frozenset[int]
    backdated: tuple[Article, ...]
    already_sent: frozenset[int]


def gather(
    session: Session,
    periods: Periods,
    week: Week,
    issue_id: int | None,
    *,
    newsletter: str,
    sections: Sequence[str] = (),
) -> Pool:
    """The pool of `newsletter`'s issue for `week`, from the articles of the `sections` it
    carries (empty: all, unsectioned articles too); another newsletter's issues neither send
    nor hold back an article here."""
    start, end = periods.bounds(week)
    previous_start = periods.bounds(week.previous())[0]
    previous = session.scalars(
        select(Issue).where(Issue.newsletter == newsletter, Issue.week == str(week.previous()))
    ).one_or_none()
    late_after: datetime | None = None
    if previous is not None and previous.status in LOCKED_STATUSES and previous.send_started_at:
        late_after = previous.send_started_at
    elif session.scalars(
        select(Issue.id)
        .where(
            Issue.newsletter == newsletter,
            Issue.status.in_(LOCKED_STATUSES),
            Issue.week < str(week),
        )
        .limit(1)
    ).first():
        # The previous period was never sent (nothing in it at its close): what it gets now
        # would go to no issue at all. Before the first issue there is nothing to catch up.
        late_after = start
    sent = frozenset(
        session.scalars(
            select(IssueArticle.article_id)
            .join(Issue, Issue.id == IssueArticle.issue_id)
            .where(
                Issue.newsletter == newsletter,
                Issue.status.in_(LOCKED_STATUSES),
                Issue.id != issue_id,
            )
        )
    )
    in_period = session.scalars(
        select(Article).where(Article.published_at >= start, Article.published_at < end)
    ).all()
    late = (
        session.scalars(
            select(Article).where(
                Article.published_at >= previous_start,
                Article.published_at < start,
                Article.fetched_at >= late_after,
            )
        ).all()
        if late_after is not None
        else []
    )
    backdated = session.scalars(
        select(Article)
        .where(
            Article.published_at < previous_start,
            Article.fetched_at >= start,
            Article.fetched_at < end,
        )
        .order_by(Article.published_at, Article.id)
    ).all()
    carried = {s.casefold() for s in sections}

    def carries(article: Article) -> bool:
        return not carried or article.section.casefold() in carried

    def wanted(article: Article) -> bool:
        return article.id not in sent and carries(article)

    late = [a for a in late if wanted(a)]
    return Pool(
        start=start,
        end=end,
        window=(*(a for a in in_period if carries(a)), *late),
        late=frozenset(a.id for a in late),
        backdated=tuple(a for a in backdated if wanted(a)),
        already_sent=sent,
    )


def new_since(pool: Pool, moment: datetime | None) -> list[Article]:
    """The candidates first seen after `moment` (a build, an approval)."""
    if moment is None:
        return []
    return [a for a in pool.window if a.fetched_at > moment]
