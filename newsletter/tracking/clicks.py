"""Following a tracked link: where it goes, and whether a person or a machine followed it.

The redirect target always comes from the database (the article's stored URL, or the site's
home page for an article since deleted), never from the request. A click is counted only for
an issue that went out, for an article it carried, and only while clicks are tracked; it is
counted as a machine's when any of these gives it away:

- `head`: a HEAD request, which only checks that the link works;
- `scanner`: a user agent of a known link scanner or an HTTP library (or none at all);
- `early`: within `EARLY` of delivery (per reader: the copy's sent time; otherwise the send's
  start), before a person could have opened the message;
- `burst`: the `BURST`-th or later click on one issue within `BURST_WINDOW` from one reader
  (per reader) or one IP address (aggregate): a scanner following every link of the message.
  In `per-reader` mode the reader's earlier clicks of the burst are re-counted as machine.

A flood from one address stops being counted after `FLOOD.hits` clicks an hour, and is still
redirected. Rate-limit keys are keyed hashes (see `subscribers.throttle`'s table), kept two
days at most.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from newsletter.db.models import (
    Article,
    ClickEvent,
    Delivery,
    Issue,
    IssueArticle,
    IssueStatus,
    Subscriber,
)
from newsletter.runtime import Runtime
from newsletter.tracking import counts
from newsletter.tracking.tokens import ClickTokens, InvalidClick

EARLY = timedelta(seconds=10)
BURST = 3
BURST_WINDOW = timedelta(seconds=10)


@dataclass(frozen=True)
class Limit:
    name: str
    hits: int
    window: timedelta


class Limiter(Protocol):
    """Counts one hit for `value` under `limit`; true while within it. The web application
    hands in the throttle table that every web process shares."""

    def __call__(self, session: Session, limit: Limit, value: str, *, now: datetime) -> bool: ...


FLOOD = Limit("click-ip", 120, timedelta(hours=1))
_BURST_LIMIT = Limit("click-burst", BURST - 1, BURST_WINDOW)
MACHINE_REASONS = ("early", "burst", "head", "scanner")
# Lower-case fragments of the user agents of mail-security link checkers, crawlers and
# HTTP libraries; a browser's user agent contains none of them.
SCANNER_AGENTS = (
    "bot",
    "crawl",
    "spider",
    "scan",
    "preview",
    "headless",
    "safelinks",
    "defender",
    "barracuda",
    "proofpoint",
    "mimecast",
    "forcepoint",
    "python-",
    "python/",
    "curl/",
    "wget/",
    "go-http-client",
    "java/",
    "okhttp",
    "libwww",
    "httpclient",
    "axios",
    "node-fetch",
)


@dataclass(frozen=True)
class Click:
    token: str
    reader: str
    method: str
    user_agent: str
    ip: str


def is_scanner(user_agent: str) -> bool:
    agent = user_agent.strip().lower()
    return not agent or any(fragment in agent for fragment in SCANNER_AGENTS)


def home_page(app: Runtime) -> str:
    site = app.settings.newsletter
    return site.website_url or site.base_url.rstrip("/") + "/"


def follow(app: Runtime, tokens: ClickTokens, limiter: Limiter, click: Click) -> str | None:
    """Where the link leads (None: nowhere, it is not one of ours), after counting it."""
    try:
        week, article_id = tokens.read_article(click.token)
        subscriber_id = 0
        if click.reader:
            reader_week, subscriber_id = tokens.read_reader(click.reader)
            if reader_week != week:
                return None
    except InvalidClick:
        return None
    now = app.clock.now()
    with app.transaction() as session:
        issue = session.scalars(select(Issue).where(Issue.week == week)).one_or_none()
        if issue is None:
            return None
        article = session.get(Article, article_id)
        if article is None:
            return home_page(app)
        if _countable(app, session, issue, article_id):
            _count(
                app,
                session,
                limiter,
                issue=issue,
                ids=(article_id, subscriber_id),
                click=click,
                now=now,
            )
        return article.url


def _countable(app: Runtime, session: Session, issue: Issue, article_id: int) -> bool:
    if app.settings.tracking.clicks == "off" or issue.status is IssueStatus.DRAFT:
        return False
    carried = session.scalar(
        select(IssueArticle.id).where(
            IssueArticle.issue_id == issue.id, IssueArticle.article_id == article_id
        )
    )
    return carried is not None


def _count(
    app: Runtime,
    session: Session,
    limiter: Limiter,
    *,
    issue: Issue,
    ids: tuple[int, int],
    click: Click,
    now: datetime,
) -> None:
    article_id, subscriber_id = ids
    if not limiter(session, FLOOD, click.ip, now=now):
        return
    per_reader = app.settings.tracking.clicks == "per-reader" and subscriber_id > 0
    if per_reader and session.get(Subscriber, subscriber_id) is None:
        per_reader = False  # forgotten since: count the click, name nobody
    delivered = issue.send_started_at
    if per_reader:
        delivered = session.scalar(
            select(Delivery.sent_at).where(
                Delivery.issue_id == issue.id, Delivery.subscriber_id == subscriber_id
            )
        )
    reason = ""
    if click.method == "HEAD":
        reason = "head"
    elif is_scanner(click.user_agent):
        reason = "scanner"
    elif delivered is not None and now - delivered < EARLY:
        reason = "early"
    else:
        who = f"r{subscriber_id}" if per_reader else f"ip{click.ip}"
        if not limiter(session, _BURST_LIMIT, f"{issue.week}:{who}", now=now):
            reason = "burst"
            if per_reader:
                _recount_burst(session, issue.id, subscriber_id, now)
    counts.add(session, issue.id, article_id, reason or "human")
    if per_reader:
        session.add(
            ClickEvent(
                issue_id=issue.id,
                article_id=article_id,
                subscriber_id=subscriber_id,
                at=now,
                reason=reason,
            )
        )


def _recount_burst(session: Session, issue_id: int, subscriber_id: int, now: datetime) -> None:
    """The reader's clicks just before the burst was recognised were part of it too."""
    earlier = session.execute(
        update(ClickEvent)
        .where(
            ClickEvent.issue_id == issue_id,
            ClickEvent.subscriber_id == subscriber_id,
            ClickEvent.reason == "",
            ClickEvent.at > now - BURST_WINDOW,
        )
        .values(reason="burst")
        .returning(ClickEvent.article_id)
    ).all()
    for (article_id,) in earlier:
        counts.add(session, issue_id, article_id, "burst", moved_from="human")
