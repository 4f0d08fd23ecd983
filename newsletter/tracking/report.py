"""The figures of an issue's report, as plain values: what the page and `--json` show.

Clicks are read from the per-article counters, so a report gives the same figures after
per-reader events have passed their retention period.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.db.models import Article, ClickCount, IssueArticle, OpenCount
from newsletter.tracking.clicks import BURST, BURST_WINDOW, EARLY

# How each kind of machine click was recognised, in the words the report uses.
MACHINE_SIGNS = {
    "early": f"followed within {EARLY.seconds} seconds of delivery, before anyone could read",
    "burst": f"{BURST} or more links of one message followed within {BURST_WINDOW.seconds} seconds",
    "head": "a HEAD request, which only checks that a link works",
    "scanner": "the user agent of a link scanner or an HTTP library, or none",
}


@dataclass(frozen=True)
class ArticleClicks:
    article_id: int
    title: str
    url: str
    human: int
    machine: int
    machine_by_sign: dict[str, int]


@dataclass(frozen=True)
class WeekGrowth:
    week: str
    added: int
    confirmed: int
    unsubscribed: int
    bounced: int


@dataclass(frozen=True)
class IssueReport:
    week: str
    subject: str
    status: str
    tracking: str  # the clicks mode when the report was made
    deliveries: dict[str, int]
    articles: list[ArticleClicks]
    human_clicks: int
    machine_clicks: int
    machine_by_sign: dict[str, int]
    growth: list[WeekGrowth]
    opens: int | None = None  # None: opens are not counted
    machine_signs: dict[str, str] = field(default_factory=lambda: dict(MACHINE_SIGNS))


def article_clicks(session: Session, issue_id: int) -> list[ArticleClicks]:
    """Every article of the issue with its clicks: most human clicks first, then most
    machine clicks, then the issue's own order."""
    carried = session.execute(
        select(IssueArticle.article_id, Article.title, Article.url)
        .join(Article, Article.id == IssueArticle.article_id)
        .where(IssueArticle.issue_id == issue_id)
        .order_by(IssueArticle.position)
    ).all()
    counted = {
        row.article_id: row
        for row in session.scalars(select(ClickCount).where(ClickCount.issue_id == issue_id))
    }
    rows = []
    for article_id, title, url in carried:
        count = counted.get(article_id)
        signs = {sign: getattr(count, sign) if count else 0 for sign in MACHINE_SIGNS}
        rows.append(
            ArticleClicks(
                article_id=article_id,
                title=printable(title),
                url=url,
                human=count.human if count else 0,
                machine=sum(signs.values()),
                machine_by_sign=signs,
            )
        )
    order = {row.article_id: index for index, row in enumerate(rows)}
    return sorted(rows, key=lambda r: (-r.human, -r.machine, order[r.article_id]))


def printable(text: str) -> str:
    """A feed's text without control characters, which could drive the terminal that
    `newsletter report` prints to."""
    return "".join(ch if ch.isprintable() else " " for ch in text)


def opens(session: Session, issue_id: int) -> int:
    return session.scalar(select(OpenCount.opens).where(OpenCount.issue_id == issue_id)) or 0
