"""Two newsletters run by cron in the same week, through a real SMTP server on loopback.

`weekly` carries every section and closes on Monday 00:00; `brief` carries only the Middle
East and closes on Thursday 07:00 (New York time). In the week of Monday 6 January 2025 cron
sends the weekly's 2025-W01 on Monday and the brief's 2025-W02 on Thursday, running
`send --if-new` for each newsletter every time. Each issue must hold only its own
newsletter's articles, each reader must get only the newsletters they subscribed to, and
running cron again must send nothing more.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select

from newsletter.app import App
from newsletter.clock import FixedClock
from newsletter.db.models import Article, Issue, IssueArticle, IssueStatus

from .conftest import Cli
from .smtp_server import SmtpServer

CONFIG = """\
[newsletter]
name = "The Weekly Round-up"
from = "Example Magazine <newsletter@example.org>"
issue_closes = "Monday 00:00"

[newsletters.brief]
name = "The Middle East Brief"
sections = ["Middle East"]
issue_closes = "Thursday 07:00"
"""
# guid -> (section, publication time in UTC)
STORIES = {
    "eu-1": ("Europe", "2025-01-03 10:00"),
    "me-1": ("Middle East", "2025-01-04 10:00"),
    "me-2": ("Middle East", "2025-01-07 10:00"),  # after the weekly's close, before the brief's
    "eu-2": ("Europe", "2025-01-08 10:00"),  # for next week's weekly
}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class Feed:
    """The site's feed as a file: the stories published by the time it is fetched."""

    def __init__(self, path: Path, clock: FixedClock) -> None:
        self.path, self.clock = path, clock

    def write(self) -> str:
        items = "".join(
            f'<item><guid isPermaLink="false">{guid}</guid>'
            f"<link>https://www.example.org/{guid}/</link><title>Story {guid}</title>"
            f"<pubDate>{at(when):%a, %d %b %Y %H:%M:%S} +0000</pubDate>"
            f"<description>About {guid}.</description><category>{section}</category></item>"
            for guid, (section, when) in STORIES.items()
            if at(when) <= self.clock.now()
        )
        self.path.write_text(
            '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>T</title>'
            f"<link>https://www.example.org/</link>{items}</channel></rss>",
            encoding="utf-8",
        )
        return str(self.path)


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with SmtpServer() as running:
        yield running


@pytest.fixture
def run(cli: Cli, tmp_path: Path, server: SmtpServer) -> Cli:
    (tmp_path / "newsletter.toml").write_text(CONFIG, encoding="utf-8")
    env = {
        **cli.env,
        "NEWSLETTER_CONFIG": "newsletter.toml",
        "NEWSLETTER_DELIVERY_TRANSPORT": server.url(),
        "NEWSLETTER_DELIVERY_RATE": "0",
    }
    return replace(cli, env=env, clock=FixedClock(at("2025-01-02 15:00")))


def cron(run: Cli, feed: Feed) -> list[str]:
    """The documented job: fetch, then send each newsletter's last closed period if new."""
    fetched = run("articles", "fetch", feed.write())
    assert fetched.exit_code == 0, fetched.output
    outputs = []
    for chosen in ((), ("--newsletter", "brief")):
        sent = run("send", "--yes", "--if-new", *chosen)
        assert sent.exit_code == 0, sent.output
        outputs.append(sent.stdout)
    return outputs


def sent_issues(app: App) -> dict[tuple[str, str], set[str]]:
    """Each sent issue, by newsletter and week, with its articles' guids."""
    with app.sessions() as session:
        rows = session.execute(
            select(Issue.newsletter, Issue.week, Article.guid)
            .join(IssueArticle, IssueArticle.issue_id == Issue.id)
            .join(Article, Article.id == IssueArticle.article_id)
            .where(Issue.status == IssueStatus.SENT)
        ).all()
    found: dict[tuple[str, str], set[str]] = {}
    for newsletter, week, guid in rows:
        found.setdefault((newsletter, week), set()).add(guid)
    return found


def _message(content: bytes) -> EmailMessage:
    parsed = message_from_bytes(content, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_two_newsletters_go_out_in_the_same_week_to_their_own_readers(
    run: Cli, server: SmtpServer, app: App, tmp_path: Path
) -> None:
    clock = run.clock
    assert clock is not None
    for args in (
        ("ann@example.org",),
        ("bob@example.org", "--newsletter", "brief"),
        ("cyd@example.org",),
        ("cyd@example.org", "--newsletter", "brief"),
    ):
        added = run("subscribers", "add", *args)
        assert added.exit_code == 0, added.output
    feed = Feed(tmp_path / "feed.xml", clock)

    # Monday 00:30 in New York: the weekly's period has closed, the brief's has not.
    clock.advance((at("2025-01-06 05:30") - clock.now()).total_seconds())
    weekly, brief = cron(run, feed)
    assert "Sent 2 message(s) for 2025-W01" in weekly, weekly
    assert "Nothing to do" in brief
    # Thursday 07:30 in New York: the brief's turn; the weekly was sent already.
    clock.advance((at("2025-01-09 12:30") - clock.now()).total_seconds())
    weekly, brief = cron(run, feed)
    assert "was already sent" in weekly
    assert "Sent 2 message(s) for 2025-W02" in brief, brief
    # Cron again, an hour later: nothing more.
    clock.advance(3600)
    weekly, brief = cron(run, feed)
    assert ("was already sent" in weekly, "was already sent" in brief) == (True, True)

    assert sent_issues(app) == {
        ("weekly", "2025-W01"): {"eu-1", "me-1"},
        ("brief", "2025-W02"): {"me-1", "me-2"},
    }
    received: dict[str, list[str]] = {}
    for copy in server.received:
        message = _message(copy.content)
        list_id = str(message["List-Id"])
        slug = re.fullmatch(r".*<([a-z0-9-]+)\.example\.org>", list_id)
        assert slug is not None, list_id
        received.setdefault(copy.recipient, []).append(slug[1])
        text = message.get_body(("plain",))
        assert text is not None
        body = text.get_content()
        if list_id.endswith("<brief.example.org>"):
            assert "Story me-2" in body
            assert "Story eu-1" not in body
        else:
            assert "Story eu-1" in body
            assert "Story me-2" not in body
    assert {who: sorted(lists) for who, lists in received.items()} == {
        "ann@example.org": ["weekly"],
        "bob@example.org": ["brief"],
        "cyd@example.org": ["brief", "weekly"],
    }
