""" "Most read last week": the articles of the previous sent issue that people clicked most.

Only human clicks count; ties go to the newer article. Opens are never used.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.db.models import Article, ClickCount, Issue, IssueStatus


def most_read(session: Session, newsletter: str, week: str, limit: int) -> list[int]:
    """Ids of up to `limit` articles of the last issue sent before `week`, most read first."""
    previous = session.scalar(
        select(Issue.id)
        .where(Issue.newsletter == newsletter, Issue.status == IssueStatus.SENT, Issue.week < week)
        .order_by(Issue.week.desc())
        .limit(1)
    )
    if previous is None or limit <= 0:
        return []
    return list(
        session.scalars(
            select(ClickCount.article_id)
            .join(Article, Article.id == ClickCount.article_id)
            .where(ClickCount.issue_id == previous, ClickCount.human > 0)
            .order_by(ClickCount.human.desc(), Article.published_at.desc(), Article.id)
            .limit(limit)
        )
    )
