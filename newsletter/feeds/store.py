"""Stored articles: what ingestion makes of each feed entry.

Each feed is fetched outside any transaction (a slow server must not hold a database lock)
and then written in one transaction of its own, so one broken feed never stops the others
and never leaves half its articles behind. An article that went out in an issue is a record
of what readers received: later changes in the feed never touch it.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.db.models import LOCKED_STATUSES, Article, Feed, Issue, IssueArticle
from newsletter.errors import FeedError
from newsletter.feeds.fetch import Fetcher, Validators
from newsletter.feeds.parse import FeedEntry, FeedOptions, parse_feed
from newsletter.feeds.teasers import one_line, valid_text
from newsletter.runtime import Runtime


class Ingesting(Runtime, Protocol):
    """What ingestion needs beyond the runtime: something that fetches a feed's bytes."""

    @property
    def fetcher(self) -> Fetcher: ...


MAX_ERROR = 300  # an exception's text can be long; one readable line is enough


@dataclass(frozen=True)
class FeedReport:
    source: str
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    kept: int = 0  # changed in the feed but already sent, so left as readers saw it
    skipped: int = 0  # entries without a usable link or title
    not_modified: bool = False
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def feed_options(app: Ingesting) -> FeedOptions:
    feeds = app.settings.feeds
    return FeedOptions(
        sections=feeds.sections,
        zone=app.settings.newsletter.zone,
        teaser_words=feeds.teaser_words,
        max_bytes=feeds.max_bytes,
        section_paths=feeds.section_paths,
    )


def fetch_sources(app: Ingesting, sources: Sequence[str]) -> list[FeedReport]:
    """Fetch and store every source in turn; failures are reported, not raised."""
    return [_fetch_guarded(app, source) for source in sources]


def _fetch_guarded(app: Ingesting, source: str) -> FeedReport:
    """`_fetch_one`, with a failure nobody foresaw (a parser's bug, a value the database
    refuses) turned into that feed's one-line report: the feeds after it are still read."""
    try:
        return _fetch_one(app, source)
    except Exception as exc:
        text = str(exc).strip()
        detail = text.splitlines()[0] if text else "no detail"
        error = one_line(valid_text(f"unexpected {type(exc).__name__}: {detail}"))[:MAX_ERROR]
        with suppress(Exception), app.transaction() as session:  # the database may be the fault
            feed = _feed_row(session, source)
            if feed is not None:
                feed.last_error = error
        return FeedReport(source, error=error)


def _fetch_one(app: Ingesting, source: str) -> FeedReport:
    with app.transaction() as session:
        feed = _feed_row(session, source)
        validators = Validators(feed.etag, feed.last_modified) if feed else Validators()
    try:
        fetched = app.fetcher.fetch(source, validators)
        if fetched.body is None:
            _remember(app, source, fetched.validators, error="")
            return FeedReport(source, not_modified=True)
        parsed = parse_feed(fetched.body, fetched.url, feed_options(app))
    except FeedError as exc:
        _remember(app, source, validators, error=exc.message)
        return FeedReport(source, error=exc.message)
    counts = {"new": 0, "updated": 0, "unchanged": 0, "kept": 0}
    with app.transaction() as session:
        locked = _locked_ids(session)
        for entry in _dedupe(parsed.entries):
            counts[_upsert(session, entry, source, locked, app.clock.now())] += 1
        _store_validators(session, source, fetched.validators, error="", at=app.clock.now())
    return FeedReport(
        source,
        new=counts["new"],
        updated=counts["updated"],
        unchanged=counts["unchanged"],
        kept=counts["kept"],
        skipped=parsed.skipped,
    )


def _dedupe(entries: Sequence[FeedEntry]) -> list[FeedEntry]:
    """One entry per guid and per URL: the first, as feeds list the newest version first."""
    seen: set[str] = set()
    out: list[FeedEntry] = []
    for entry in entries:
        if entry.guid in seen or entry.url in seen:
            continue
        seen.update((entry.guid, entry.url))
        out.append(entry)
    return out


def _feed_row(session: Session, source: str) -> Feed | None:
    return session.scalars(select(Feed).where(Feed.url == source)).one_or_none()


def _remember(app: Ingesting, source: str, validators: Validators, *, error: str) -> None:
    with app.transaction() as session:
        _store_validators(session, source, validators, error=error, at=app.clock.now())


def _store_validators(
    session: Session, source: str, validators: Validators, *, error: str, at: datetime
) -> None:
    feed = _feed_row(session, source)
    if feed is None:
        feed = Feed(url=source[:2000])
        session.add(feed)
    feed.etag = validators.etag[:500]
    feed.last_modified = validators.last_modified[:100]
    feed.last_error = error
    if not error:
        feed.fetched_at = at


def _locked_ids(session: Session) -> set[int]:
    """Articles that appeared in an issue already sending or sent."""
    rows = session.scalars(
        select(IssueArticle.article_id)
        .join(Issue, Issue.id == IssueArticle.issue_id)
        .where(Issue.status.in_(LOCKED_STATUSES))
    )
    return set(rows)


def _values(entry: FeedEntry, existing: Article | None) -> dict[str, object]:
    published = entry.published_at or (existing.published_at if existing else None)
    return {
        "guid": entry.guid,
        "url": entry.url,
        "title": entry.title,
        "section": entry.section,
        "kicker": entry.kicker,
        "categories": "\n".join(entry.categories),
        "authors": "\n".join(entry.authors),
        "published_at": published,
        "teaser_html": entry.teaser_html,
        "image_url": entry.image_url,
        "image_alt": entry.image_alt,
        "image_credit": entry.image_credit,
        "image_width": entry.image_width,
    }


def _upsert(
    session: Session, entry: FeedEntry, source: str, locked: set[int], now: datetime
) -> str:
    article = session.scalars(select(Article).where(Article.guid == entry.guid)).one_or_none()
    if article is None:
        article = session.scalars(
            select(Article).where(Article.url == entry.url).order_by(Article.id).limit(1)
        ).one_or_none()
    values = _values(entry, article)
    if values["published_at"] is None:
        values["published_at"] = now
    if article is None:
        session.add(Article(**values, feed_url=source[:2000], fetched_at=now, updated_at=now))
        session.flush()
        return "new"
    changed = {k: v for k, v in values.items() if getattr(article, k) != v}
    if not changed:
        return "unchanged"
    if article.id in locked:
        return "kept"
    for key, value in changed.items():
        setattr(article, key, value)
    article.fetched_at = now
    article.updated_at = now
    return "updated"
