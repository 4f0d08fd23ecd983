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

`resolve` runs in the request and costs a signature check and, once a minute per link, one
read; `count` runs later, for many clicks in one transaction (see `recorder`), so the reader
is redirected without waiting for any write.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
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


@dataclass(frozen=True)
class Pending:
    """A click to be counted, with what the request knew."""

    issue_id: int
    week: str
    started: datetime | None  # when the issue's send began
    article_id: int
    subscriber_id: int  # 0: nobody named
    method: str
    user_agent: str
    ip: str
    at: datetime


@dataclass(frozen=True)
class _Link:
    url: str
    issue_id: int
    started: datetime | None
    countable: bool


class Links:
    """Where each (newsletter, week, article) leads, read from the database at most once a
    minute."""

    TTL = 60.0

    def __init__(self) -> None:
        self._known: dict[tuple[str, str, int], _Link | None] = {}
        self._seen: dict[tuple[str, str, int], float] = {}
        self._lock = threading.Lock()

    def get(self, app: Runtime, newsletter: str, week: str, article_id: int) -> _Link | None:
        key = (newsletter, week, article_id)
        now = app.clock.monotonic()
        with self._lock:
            if key in self._known and now - self._seen[key] < self.TTL:
                return self._known[key]
        link = _read_link(app, newsletter, week, article_id)
        with self._lock:
            if len(self._known) > 10_000:  # tokens are signed, so only real links get here
                self._known.clear()
                self._seen.clear()
            self._known[key], self._seen[key] = link, now
        return link


def is_scanner(user_agent: str) -> bool:
    agent = user_agent.strip().lower()
    return not agent or any(fragment in agent for fragment in SCANNER_AGENTS)


def home_page(app: Runtime) -> str:
    site = app.settings.newsletter
    return site.website_url or site.base_url.rstrip("/") + "/"


def _read_tokens(
    tokens: Mapping[str, ClickTokens], click: Click
) -> tuple[str, str, int, int] | None:
    """(newsletter, week, article id, subscriber id) of a click: each newsletter signs its
    links with its own list id, so the one whose tokens read it is the one that sent it."""
    for newsletter, signer in tokens.items():
        try:
            week, article_id = signer.read_article(click.token)
        except InvalidClick:
            continue
        subscriber_id = 0
        if click.reader:
            try:
                reader_week, subscriber_id = signer.read_reader(click.reader)
            except InvalidClick:
                return None
            if reader_week != week:
                return None
        return newsletter, week, article_id, subscriber_id
    return None


def resolve(
    app: Runtime, tokens: Mapping[str, ClickTokens], links: Links, click: Click
) -> tuple[str, Pending | None] | None:
    """Where the link leads and the click to count, if any; None: it is not one of ours.

    `tokens` holds each newsletter's signer, by slug."""
    read = _read_tokens(tokens, click)
    if read is None:
        return None
    newsletter, week, article_id, subscriber_id = read
    link = links.get(app, newsletter, week, article_id)
    if link is None:
        return None
    if not link.url:
        return home_page(app), None
    if not link.countable or app.settings.tracking.clicks == "off":
        return link.url, None
    pending = Pending(
        issue_id=link.issue_id,
        week=week,
        started=link.started,
        article_id=article_id,
        subscriber_id=subscriber_id,
        method=click.method,
        user_agent=click.user_agent,
        ip=click.ip,
        at=app.clock.now(),
    )
    return link.url, pending


def _read_link(app: Runtime, newsletter: str, week: str, article_id: int) -> _Link | None:
    with app.transaction() as session:
        issue = session.scalars(
            select(Issue).where(Issue.newsletter == newsletter, Issue.week == week)
        ).one_or_none()
        if issue is None:
            return None
        article = session.get(Article, article_id)
        carried = session.scalar(
            select(IssueArticle.id).where(
                IssueArticle.issue_id == issue.id, IssueArticle.article_id == article_id
            )
        )
        return _Link(
            url=article.url if article is not None else "",
            issue_id=issue.id,
            started=issue.send_started_at,
            countable=carried is not None and issue.status is not IssueStatus.DRAFT,
        )


def count(app: Runtime, limiter: Limiter, clicks: list[Pending]) -> None:
    """Count clicks, oldest first, in one transaction."""
    with app.transaction() as session:
        for click in clicks:
            _count(app, session, limiter, click)


def _count(app: Runtime, session: Session, limiter: Limiter, click: Pending) -> None:
    if not limiter(session, FLOOD, click.ip, now=click.at):
        return
    subscriber_id = click.subscriber_id
    per_reader = app.settings.tracking.clicks == "per-reader" and subscriber_id > 0
    if per_reader and session.get(Subscriber, subscriber_id) is None:
        per_reader = False  # forgotten since: count the click, name nobody
    delivered = click.started
    if per_reader:
        delivered = session.scalar(
            select(Delivery.sent_at).where(
                Delivery.issue_id == click.issue_id, Delivery.subscriber_id == subscriber_id
            )
        )
    reason = ""
    if click.method == "HEAD":
        reason = "head"
    elif is_scanner(click.user_agent):
        reason = "scanner"
    elif delivered is not None and click.at - delivered < EARLY:
        reason = "early"
    else:
        who = f"r{subscriber_id}" if per_reader else f"ip{click.ip}"
        if not limiter(session, _BURST_LIMIT, f"{click.week}:{who}", now=click.at):
            reason = "burst"
            if per_reader:
                _recount_burst(session, click.issue_id, subscriber_id, click.at)
    counts.add(session, click.issue_id, click.article_id, reason or "human")
    if per_reader:
        session.add(
            ClickEvent(
                issue_id=click.issue_id,
                article_id=click.article_id,
                subscriber_id=subscriber_id,
                at=click.at,
                reason=reason,
            )
        )
        session.flush()


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
