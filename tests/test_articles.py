"""Ingestion into the database: upserts, the already-sent rule, HTTP, and failing feeds."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from newsletter import __version__
from newsletter.app import App
from newsletter.clock import FixedClock
from newsletter.config import Settings
from newsletter.db.models import Article, Feed, Issue, IssueArticle, IssueStatus
from newsletter.feeds.fetch import Fetched, HttpFetcher, Validators
from newsletter.feeds.store import fetch_sources
from newsletter.issue.listing import list_articles
from newsletter.issue.periods import Week

from .conftest import REPO, Cli
from .feedserver import FeedServer, Route, feed_server
from .test_feeds import GB2312_RSS

DEMO = REPO / "examples" / "feed.xml"
W47 = Week(2024, 47)


def rss(*items: tuple[str, str, str, str]) -> bytes:
    """(guid, link, title, description) items, all dated in 2024-W47."""
    body = "".join(
        f'<item><guid isPermaLink="false">{guid}</guid><link>{link}</link><title>{title}</title>'
        f"<pubDate>Wed, 20 Nov 2024 10:00:00 -0500</pubDate>"
        f"<description><![CDATA[{text}]]></description><category>Europe</category></item>"
        for guid, link, title, text in items
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>T</title>'
        f"<link>https://www.example.org/</link>{body}</channel></rss>"
    ).encode()


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with feed_server() as running:
        yield running


@pytest.fixture
def fast_app(settings: Settings, clock: FixedClock) -> Iterator[App]:
    """An app whose HTTP fetches give up after half a second."""
    application = App.create(
        replace(settings, feeds=replace(settings.feeds, timeout=0.5)), clock=clock
    )
    yield application
    application.close()


def count(app: App) -> int:
    with app.transaction() as session:
        return session.scalar(select(func.count()).select_from(Article)) or 0


def article(app: App, guid: str) -> Article:
    with app.transaction() as session:
        return session.scalars(select(Article).where(Article.guid == guid)).one()


def test_demo_feed_ingests_and_refetching_creates_nothing(app: App) -> None:
    (first,) = fetch_sources(app, [str(DEMO)])
    assert (first.new, first.updated, first.unchanged, first.error) == (16, 0, 0, "")
    (again,) = fetch_sources(app, [str(DEMO)])
    assert (again.new, again.updated, again.unchanged) == (0, 0, 16)
    assert count(app) == 16
    stored = article(app, "https://www.example.org/2024/11/24/pacific-undersea-cables-diplomacy/")
    assert stored.published_at == datetime(2024, 11, 25, 4, 30, tzinfo=UTC)
    assert stored.authors == "Hana Okafor\nTomasi Vainikolo"
    assert stored.section == "Asia-Pacific"
    assert stored.kicker == "Analysis"
    assert stored.image_credit == "Sione Fifita / Example Photo Agency"


def test_sunday_night_new_york_is_listed_in_that_week(app: App) -> None:
    fetch_sources(app, [str(DEMO)])
    week, rows = list_articles(app, W47)
    assert week == W47
    assert len(rows) == 11
    assert rows[0].title == "The Pacific's undersea cables are becoming a diplomatic asset"
    _, next_rows = list_articles(app, W47.next())
    assert rows[0].id not in {r.id for r in next_rows}


def test_every_shared_feed_ingests(app: App) -> None:
    from .conftest import SHARED_FEEDS

    if not SHARED_FEEDS.is_dir():
        pytest.skip(f"real-world feeds not found in {SHARED_FEEDS}")
    paths = sorted(
        str(p) for p in SHARED_FEEDS.iterdir() if p.suffix in {".rss", ".xml", ".rdf", ".json"}
    )
    reports = fetch_sources(app, paths)
    assert [r.error for r in reports] == [""] * len(paths)
    assert all(r.new > 0 for r in reports)
    assert count(app) == sum(r.new for r in reports)


def test_changed_title_or_teaser_updates_the_article(app: App, tmp_path: Path) -> None:
    feed = tmp_path / "feed.xml"
    feed.write_bytes(rss(("g1", "https://www.example.org/a", "Old title", "<p>Old text.</p>")))
    fetch_sources(app, [str(feed)])
    feed.write_bytes(rss(("g1", "https://www.example.org/a", "New title", "<p>New text.</p>")))
    (report,) = fetch_sources(app, [str(feed)])
    assert (report.new, report.updated) == (0, 1)
    stored = article(app, "g1")
    assert (stored.title, stored.teaser_html) == ("New title", "<p>New text.</p>")
    assert count(app) == 1


def test_upsert_falls_back_to_the_url_when_the_guid_changes(app: App, tmp_path: Path) -> None:
    feed = tmp_path / "feed.xml"
    feed.write_bytes(rss(("old-guid", "https://www.example.org/a", "Title", "<p>Text.</p>")))
    fetch_sources(app, [str(feed)])
    feed.write_bytes(rss(("new-guid", "https://www.example.org/a", "Title", "<p>Text.</p>")))
    (report,) = fetch_sources(app, [str(feed)])
    assert (report.new, report.updated) == (0, 1)
    assert count(app) == 1
    assert article(app, "new-guid").url == "https://www.example.org/a"


def test_duplicate_entries_inside_one_feed_are_stored_once(app: App, tmp_path: Path) -> None:
    feed = tmp_path / "feed.xml"
    item = ("g1", "https://www.example.org/a", "Title", "<p>Text.</p>")
    feed.write_bytes(rss(item, item))
    (report,) = fetch_sources(app, [str(feed)])
    assert report.new == 1
    assert count(app) == 1


@pytest.mark.parametrize("status", [IssueStatus.SENT, IssueStatus.SENDING])
def test_an_article_already_sent_is_never_altered(
    app: App, tmp_path: Path, status: IssueStatus
) -> None:
    feed = tmp_path / "feed.xml"
    feed.write_bytes(rss(("g1", "https://www.example.org/a", "As sent", "<p>As sent.</p>")))
    fetch_sources(app, [str(feed)])
    with app.transaction() as session:
        stored = session.scalars(select(Article)).one()
        issue = Issue(week="2024-W47", status=status, created_at=app.clock.now())
        session.add(issue)
        session.flush()
        session.add(IssueArticle(issue_id=issue.id, article_id=stored.id, position=1))
    feed.write_bytes(rss(("g1", "https://www.example.org/a", "Rewritten", "<p>Changed.</p>")))
    (report,) = fetch_sources(app, [str(feed)])
    assert (report.kept, report.updated) == (1, 0)
    assert article(app, "g1").title == "As sent"


def test_hostile_html_is_stored_sanitised(app: App, tmp_path: Path) -> None:
    feed = tmp_path / "feed.xml"
    hostile = '<p onmouseover="x()">Hi <script>alert(1)</script><a href="javascript:x()">y</a>.</p>'
    feed.write_bytes(rss(("g1", "https://www.example.org/a", "<b>Bold</b> &amp; co", hostile)))
    fetch_sources(app, [str(feed)])
    stored = article(app, "g1")
    assert stored.teaser_html == "<p>Hi y.</p>"
    assert "<" not in stored.title


def test_a_gb2312_feed_is_stored_with_its_chinese_text(app: App, tmp_path: Path) -> None:
    feed = tmp_path / "gb2312.rss"
    feed.write_bytes(GB2312_RSS)
    chinese, demo = fetch_sources(app, [str(feed), str(DEMO)])
    assert (chinese.error, chinese.new, demo.new) == ("", 1, 16)
    stored = article(app, "https://cn.example.org/a")
    assert stored.title == "长江流域的新水坝"
    assert stored.teaser_html == "<p>水坝于上周完工。</p>"
    assert stored.image_alt == "黄昏时的水坝"
    assert count(app) == 17


def test_lone_surrogates_in_a_json_feed_are_stored_replaced(app: App, tmp_path: Path) -> None:
    item = {
        "id": "g\ud800",
        "url": "https://json.example.org/a",
        "title": "x\ud800",
        "content_html": "<p>Text \udfff here.</p>",
        "tags": ["Europe", "Kicker\udc00"],
        "authors": [{"name": "Ann\ud800"}],
        "date_published": "2024-11-20T10:00:00Z",
    }
    feed = tmp_path / "feed.json"
    feed.write_text(json.dumps({"version": "https://jsonfeed.org/version/1.1", "items": [item]}))
    (report,) = fetch_sources(app, [str(feed)])
    assert (report.error, report.new) == ("", 1)
    stored = article(app, "g\ufffd")
    assert (stored.title, stored.kicker, stored.authors) == ("x\ufffd", "Kicker\ufffd", "Ann\ufffd")
    assert stored.teaser_html == "<p>Text \ufffd here.</p>"


class ExplodingFetcher:
    """Fails with an exception no code path expects for sources ending in "boom"."""

    def __init__(self) -> None:
        self.real = HttpFetcher(timeout=5, max_bytes=1_000_000)

    def fetch(self, source: str, validators: Validators) -> Fetched:
        if source.endswith("boom"):
            raise RuntimeError("a parser's bug\nTraceback (most recent call last):")
        return self.real.fetch(source, validators)


def test_an_unexpected_failure_is_one_line_and_the_next_feed_is_read(
    settings: Settings, clock: FixedClock
) -> None:
    application = App.create(settings, clock=clock, fetcher=ExplodingFetcher())
    try:
        failed, good = fetch_sources(application, ["https://feeds.example.org/boom", str(DEMO)])
        assert failed.error == "unexpected RuntimeError: a parser's bug"
        assert (good.error, good.new) == ("", 16)
    finally:
        application.close()


def test_cli_reports_a_source_the_database_cannot_take_and_reads_the_next(
    cli: Cli, tmp_path: Path
) -> None:
    odd = os.fsdecode(b"caf\xe9.xml")  # a file name that is not UTF-8, as argv hands it over
    (tmp_path / odd).write_bytes(DEMO.read_bytes())
    result = cli("articles", "fetch", odd, str(DEMO))
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ")
    assert "unexpected UnicodeEncodeError" in line
    assert f"{DEMO}: 16 new" in result.stdout


# -- over HTTP -------------------------------------------------------------------------


def test_conditional_get_remembers_validators_and_handles_304(app: App, server: FeedServer) -> None:
    server.routes["/feed.xml"] = Route(
        DEMO.read_bytes(),
        headers={"Content-Type": "application/rss+xml"},
        etag='"v1"',
        last_modified="Tue, 26 Nov 2024 15:00:00 GMT",
    )
    url = server.url("/feed.xml")
    (first,) = fetch_sources(app, [url])
    assert first.new == 16
    with app.transaction() as session:
        feed = session.scalars(select(Feed).where(Feed.url == url)).one()
        assert (feed.etag, feed.last_modified) == ('"v1"', "Tue, 26 Nov 2024 15:00:00 GMT")
    (second,) = fetch_sources(app, [url])
    assert second.not_modified
    assert second.ok
    _, headers = server.requests[-1]
    assert headers["if-none-match"] == '"v1"'
    assert headers["if-modified-since"] == "Tue, 26 Nov 2024 15:00:00 GMT"
    assert headers["user-agent"] == f"newsletter/{__version__}"
    server.routes["/feed.xml"] = Route(DEMO.read_bytes(), etag='"v2"')
    (third,) = fetch_sources(app, [url])
    assert (third.not_modified, third.unchanged) == (False, 16)


def test_redirects_are_followed_and_relative_links_use_the_final_url(
    app: App, server: FeedServer
) -> None:
    body = rss(("g1", "/2024/11/a", "Title", '<p>See <a href="b">b</a>.</p>')).replace(
        b"<link>https://www.example.org/</link>", b""
    )
    server.routes["/new/feed.xml"] = Route(body)
    server.routes["/old"] = Route(status=301, headers={"Location": "/new/feed.xml"})
    (report,) = fetch_sources(app, [server.url("/old")])
    assert report.new == 1
    stored = article(app, "g1")
    assert stored.url == server.url("/2024/11/a")
    assert f'href="{server.url("/new/b")}"' in stored.teaser_html


def test_one_line_per_failing_feed_and_the_others_still_stored(
    fast_app: App, server: FeedServer, tmp_path: Path
) -> None:
    demo = DEMO.read_bytes()
    server.routes["/good.xml"] = Route(demo)
    server.routes["/html"] = Route(b"<html><body><h1>Welcome</h1></body></html>")
    server.routes["/truncated"] = Route(demo[: len(demo) // 3])
    server.routes["/slow"] = Route(demo, delay=3.0)
    server.routes["/gone"] = Route(b"gone", status=410)
    (tmp_path / "bad.json").write_bytes(b'{"version": "https://jsonfeed.org/version/1", "ite')
    sources = [
        server.url("/html"),
        server.url("/truncated"),
        server.url("/slow"),
        server.url("/gone"),
        "http://127.0.0.1:9/feed.xml",
        str(tmp_path / "missing.xml"),
        str(tmp_path / "bad.json"),
        server.url("/good.xml"),
    ]
    reports = fetch_sources(fast_app, sources)
    errors = [r.error for r in reports]
    assert all(errors[:-1]), errors
    assert errors[-1] == ""
    assert all("\n" not in e for e in errors)
    assert "not an RSS, Atom or JSON feed" in errors[0] or "well-formed" in errors[0]
    assert "well-formed" in errors[1]
    assert "0.5 seconds" in errors[2]
    assert "410" in errors[3]
    assert "cannot fetch" in errors[4]
    assert "cannot read" in errors[5]
    assert "JSON" in errors[6]
    assert reports[-1].new == 16
    assert count(fast_app) == 16  # nothing from the broken ones, all of the good one
    with fast_app.transaction() as session:
        failed = session.scalars(select(Feed).where(Feed.url == server.url("/truncated"))).one()
        assert "well-formed" in failed.last_error


def test_oversized_download_is_cut_off(
    settings: Settings, clock: FixedClock, server: FeedServer
) -> None:
    server.routes["/big"] = Route(b"<rss>" + b" " * 5000 + b"</rss>")
    small = replace(settings, feeds=replace(settings.feeds, max_bytes=1000))
    application = App.create(small, clock=clock)
    try:
        (report,) = fetch_sources(application, [server.url("/big")])
    finally:
        application.close()
    assert "larger than 1000 bytes" in report.error


# -- the command line ---------------------------------------------------------------------


def test_cli_fetch_and_list(cli: Cli) -> None:
    result = cli("articles", "fetch", str(DEMO))
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{DEMO}: 16 new, 0 updated, 0 unchanged"
    listing = cli("articles", "list", "--week", "2024-W47")
    assert listing.exit_code == 0
    lines = listing.output.strip().splitlines()
    assert len(lines) == 11
    assert "Sun 2024-11-24 23:30" in lines[0]


def test_cli_fetch_exits_1_when_a_feed_fails_but_stores_the_others(
    cli: Cli, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.xml"
    broken.write_bytes(DEMO.read_bytes()[:2000])
    result = cli("articles", "fetch", str(broken), str(DEMO))
    assert result.exit_code == 1
    assert f"error: {broken}: not a well-formed feed" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert f"{DEMO}: 16 new" in result.stdout
    assert "Traceback" not in result.output


def test_cli_fetch_without_sources_or_config_is_a_usage_error(cli: Cli) -> None:
    result = cli("articles", "fetch")
    assert result.exit_code == 2
    assert "[feeds] urls is empty" in result.output


def test_cli_fetch_uses_the_configured_feeds(cli: Cli) -> None:
    result = cli("articles", "fetch", env={"NEWSLETTER_FEEDS_URLS": str(DEMO)})
    assert result.exit_code == 0
    assert "16 new" in result.output


def test_cli_bad_week_is_a_usage_error(cli: Cli) -> None:
    result = cli("articles", "list", "--week", "2024-W60")
    assert result.exit_code == 2
    assert "no week 60" in result.output
