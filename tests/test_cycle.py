"""The weekly cycle as cron and the editors run it, week after week, with the clock moved.

Issues close on Thursday 07:00 New York time (12:00 UTC in winter). Every test drives the
real command line; the database is then asked which articles went out in which issue: every
article must go out in exactly one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from email import message_from_bytes
from pathlib import Path

import pytest
from sqlalchemy import select

from newsletter.app import App
from newsletter.clock import FixedClock
from newsletter.db.models import Article, Issue, IssueArticle, IssueStatus

from .conftest import Cli

CLOSES = "Thursday 07:00"
FIRST = datetime(2025, 1, 1, 15, 0, tzinfo=UTC)  # Wednesday of 2025-W01


class Feed:
    """The site's feed as a file the tests add items to, fetched by the real command."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: list[tuple[str, datetime]] = []

    def publish(self, slug: str, at: datetime) -> None:
        self.items.append((slug, at))

    def xml(self) -> str:
        body = "".join(
            f'<item><guid isPermaLink="false">{slug}</guid>'
            f"<link>https://www.example.org/{slug}/</link><title>Story {slug}</title>"
            f"<pubDate>{at:%a, %d %b %Y %H:%M:%S} +0000</pubDate>"
            f"<description>About {slug}.</description><category>Europe</category></item>"
            for slug, at in self.items
        )
        return (
            '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>T</title>'
            f"<link>https://www.example.org/</link>{body}</channel></rss>"
        )

    def write(self) -> str:
        self.path.write_text(self.xml(), encoding="utf-8")
        return str(self.path)


@pytest.fixture
def weekly(cli: Cli, tmp_path: Path) -> tuple[Cli, FixedClock, Feed]:
    clock = FixedClock(FIRST)
    cli.clock = clock
    cli.env["NEWSLETTER_NEWSLETTER_ISSUE_CLOSES"] = CLOSES
    assert cli("subscribers", "add", "ann@example.org").exit_code == 0
    assert cli("subscribers", "add", "bob@example.org").exit_code == 0
    return cli, clock, Feed(tmp_path / "feed.xml")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def cron(cli: Cli, feed: Feed) -> str:
    """The documented job: fetch, then send the last closed period if it is new."""
    fetched = cli("articles", "fetch", feed.write())
    assert fetched.exit_code == 0, fetched.output
    sent = cli("send", "--yes", "--if-new")
    assert sent.exit_code == 0, sent.output
    return sent.stdout


def sent_in(app: App) -> dict[str, list[str]]:
    """Each sent issue's article guids."""
    with app.transaction() as session:
        rows = session.execute(
            select(Issue.week, Article.guid)
            .join(IssueArticle, IssueArticle.issue_id == Issue.id)
            .join(Article, Article.id == IssueArticle.article_id)
            .where(Issue.status == IssueStatus.SENT)
            .order_by(Issue.week, IssueArticle.position)
        ).all()
    found: dict[str, list[str]] = {}
    for week, guid in rows:
        found.setdefault(week, []).append(guid)
    return found


def test_weeks_of_cron_and_editors_send_every_article_once(
    weekly: tuple[Cli, FixedClock, Feed], app: App
) -> None:
    cli, clock, feed = weekly

    def move_to(text: str) -> None:
        clock.advance((at(text) - clock.now()).total_seconds())

    # 2025-W01: one article; cron at the close sends it, and a second run sends nothing.
    feed.publish("a0", at("2025-01-01 14:00"))
    move_to("2025-01-02 12:00")
    assert "Sent 2 message(s) for 2025-W01" in cron(cli, feed)
    assert "was already sent" in cron(cli, feed)

    # One minute either side of the close: the one before is first seen after the send, so
    # it is late and goes into the next issue; the one after belongs there anyway.
    feed.publish("b-before", at("2025-01-02 11:59"))
    feed.publish("b-after", at("2025-01-02 12:01"))
    move_to("2025-01-02 13:00")
    assert "Nothing to do" in cron(cli, feed)

    # Tuesday: the editor builds the next issue; on Wednesday another article arrives.
    move_to("2025-01-07 14:00")
    built = cli("issue", "build")
    assert "Built 2025-W02: 2 article(s), 1 late" in built.stdout, built.output
    move_to("2025-01-08 10:00")
    feed.publish("c-after-build", at("2025-01-08 09:00"))
    assert cli("articles", "fetch", feed.write()).exit_code == 0
    shown = cli("issue", "show").stdout
    assert "1 new since build" in shown
    assert "Story b-before  (late)" in shown

    # Thursday's cron sends it with the newcomer, and says it added it.
    move_to("2025-01-09 12:00")
    out = cron(cli, feed)
    assert "added [" in out
    assert "Story c-after-build: new since the last build" in out
    assert "Sent 2 message(s) for 2025-W02" in out

    # 2025-W03: cron at the close finds nothing and stores nothing that blocks; the article
    # the feed shows an hour later goes out on the next hourly run.
    move_to("2025-01-16 12:00")
    assert "has no articles" in cron(cli, feed)
    feed.publish("d-slow-feed", at("2025-01-16 11:00"))
    move_to("2025-01-16 13:00")
    assert "Sent 2 message(s) for 2025-W03" in cron(cli, feed)

    # 2025-W04: approved on Tuesday, then a new article on Wednesday withdraws the approval;
    # cron (with --yes) says so, re-selects and sends both. A back-dated item is only listed.
    feed.publish("e-approved", at("2025-01-21 10:00"))
    feed.publish("z-back-dated", at("2024-12-10 10:00"))
    move_to("2025-01-21 15:00")
    assert cli("articles", "fetch", feed.write()).exit_code == 0
    approved = cli("issue", "approve")
    assert "Approved 2025-W04: 1 article(s)" in approved.stdout, approved.output
    assert "Story z-back-dated: outside the period" in cli("issue", "show").stdout
    feed.publish("f-after-approval", at("2025-01-22 10:00"))
    move_to("2025-01-23 12:00")
    out = cron(cli, feed)
    assert "The approval of 2025-W04 is withdrawn: 1 new article(s)" in out
    assert "Sent 2 message(s) for 2025-W04" in out

    assert sent_in(app) == {
        "2025-W01": ["a0"],
        "2025-W02": ["c-after-build", "b-after", "b-before"],
        "2025-W03": ["d-slow-feed"],
        "2025-W04": ["f-after-approval", "e-approved"],
    }
    every = [guid for guids in sent_in(app).values() for guid in guids]
    assert Counter(every) == Counter(set(every))
    assert set(every) == {slug for slug, _ in feed.items} - {"z-back-dated"}


def test_an_approved_issue_goes_out_as_approved(weekly: tuple[Cli, FixedClock, Feed]) -> None:
    cli, clock, feed = weekly
    feed.publish("one", at("2025-01-06 10:00"))
    feed.publish("two", at("2025-01-07 10:00"))
    clock.advance((at("2025-01-07 12:00") - clock.now()).total_seconds())
    assert cli("articles", "fetch", feed.write()).exit_code == 0
    assert cli("issue", "exclude", "two", "--week", "2025-W02").exit_code == 1  # id or URL
    assert cli("issue", "exclude", "https://www.example.org/two/").exit_code == 0
    assert cli("issue", "approve").exit_code == 0
    clock.advance(2 * 86400)
    out = cron(cli, feed)
    assert "Sending 2025-W02 as approved." in out
    assert "Sent 2 message(s) for 2025-W02" in out
    # A later override withdraws an approval, and a send without --yes asks first.
    feed.publish("three", at("2025-01-13 10:00"))
    clock.advance((at("2025-01-14 12:00") - clock.now()).total_seconds())
    assert cli("articles", "fetch", feed.write()).exit_code == 0
    assert cli("issue", "approve").exit_code == 0
    clock.advance(60)
    assert cli("issue", "feature", "https://www.example.org/three/").exit_code == 0
    assert "The approval is withdrawn: 1 override(s)" in cli("issue", "show").stdout
    clock.advance(2 * 86400)
    refused = cli("send", "--week", "2025-W03")
    assert refused.exit_code == 2
    assert "withdrawn approval" in refused.stderr


def test_test_copies_say_so_in_the_subject(
    weekly: tuple[Cli, FixedClock, Feed], tmp_path: Path
) -> None:
    cli, clock, feed = weekly
    feed.publish("one", at("2025-01-06 10:00"))
    clock.advance((at("2025-01-09 13:00") - clock.now()).total_seconds())
    assert cli("articles", "fetch", feed.write()).exit_code == 0
    assert cli("send", "--test", "editor@example.org").exit_code == 0
    (copy,) = (tmp_path / "outbox").glob("*.eml")
    assert str(message_from_bytes(copy.read_bytes())["Subject"]).startswith("[TEST] ")


FAKETIME = shutil.which("faketime")


@pytest.mark.skipif(FAKETIME is None, reason="needs Debian's faketime")
def test_cron_around_the_close_under_faketime(cli: Cli, tmp_path: Path) -> None:
    """The installed command under a faked system clock, as cron would run it."""
    command = Path(sys.executable).parent / "newsletter"
    feed = Feed(tmp_path / "feed.xml")
    feed.publish("before-close", at("2025-01-09 11:59"))
    feed.write()
    env = {
        **os.environ,
        **cli.env,
        "NEWSLETTER_NEWSLETTER_ISSUE_CLOSES": CLOSES,
        "TZ": "UTC",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }

    def run(when: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [FAKETIME or "faketime", when, str(command), *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert run("2025-01-09 11:58:00", "subscribers", "add", "ann@example.org").returncode == 0
    assert run("2025-01-09 11:59:30", "articles", "fetch", str(feed.path)).returncode == 0
    early = run("2025-01-09 11:59:40", "send", "--yes", "--if-new")
    assert early.returncode == 0, early.stderr
    assert "Nothing to do: the issue for 2025-W01 has no articles" in early.stdout
    on_time = run("2025-01-09 12:00:10", "send", "--yes", "--if-new")
    assert on_time.returncode == 0, on_time.stderr
    assert "Sent 1 message(s) for 2025-W02" in on_time.stdout
    again = run("2025-01-09 13:00:00", "send", "--yes", "--if-new")
    assert "Nothing to do: the issue for 2025-W02 was already sent" in again.stdout
    (copy,) = (tmp_path / "outbox").glob("*.eml")
    assert "Story before-close" in copy.read_text(encoding="utf-8")
