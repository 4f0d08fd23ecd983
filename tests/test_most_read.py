""" "Most read last week": last issue's articles ranked by human clicks, at the top of the
next issue; the editor can drop one; it needs clicks tracked."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select

from newsletter.app import App
from newsletter.clock import FixedClock
from newsletter.config import IssueSettings, Settings
from newsletter.db.models import Article, Issue, OverrideKind
from newsletter.issue.build import build_issue
from newsletter.issue.overrides import add_override
from newsletter.tracking.tokens import ClickTokens
from newsletter.web.endpoints import create_app
from tests.conftest import SECRET_KEY
from tests.tracking_world import BROWSER, WEEK, send_week, settle, tracking_app

NEXT = WEEK.next()


def test_the_next_issue_opens_with_last_weeks_most_read(
    settings: Settings, clock: FixedClock
) -> None:
    app = tracking_app(
        replace(settings, issue=IssueSettings(most_read=2)), clock, clicks="aggregate"
    )
    try:
        copies = send_week(app, ["ann@example.org", "bob@example.org", "cyd@example.org"])
        tokens = ClickTokens((SECRET_KEY,), app.settings.list_id)
        paths = copies[0].paths()
        assert len(paths) >= 2
        clock.advance(3600)
        client = create_app(app).test_client()
        plan = [(paths[1], BROWSER), (paths[1], BROWSER), (paths[0], BROWSER)]
        plan += [(paths[0], "curl/8.0")] * 5  # machines never make an article "most read"
        for n, (path, agent) in enumerate(plan):
            client.get(
                path, headers={"User-Agent": agent}, environ_base={"REMOTE_ADDR": f"10.0.0.{n}"}
            )
        settle(client.application)
        titles = {}
        with app.transaction() as session:
            for path in paths[:2]:
                article = session.get(Article, tokens.read_article(path.split("/")[2])[1])
                assert article is not None
                titles[path] = (article.id, article.title)
        build_issue(app, NEXT)
        text = _text(app)
        block = text.split("MOST READ LAST WEEK", 1)[1].split("-" * 72, 1)[0]
        assert block.index(titles[paths[1]][1][:30]) < block.index(titles[paths[0]][1][:30])
        assert block.count("\n1. ") == 1
        assert "\n2. " in block
        add_override(app, NEXT, str(titles[paths[1]][0]), OverrideKind.EXCLUDE)
        block = _text(app).split("MOST READ LAST WEEK", 1)[1].split("-" * 72, 1)[0]
        assert titles[paths[1]][1][:30] not in block
        assert titles[paths[0]][1][:30] in block
    finally:
        app.close()


def test_most_read_without_clicks_is_a_warning(settings: Settings, clock: FixedClock) -> None:
    app = tracking_app(replace(settings, issue=IssueSettings(most_read=3)), clock)
    try:
        send_week(app, ["ann@example.org"])
        report = build_issue(app, NEXT)
        assert any("most_read is set but [tracking] clicks is off" in p for p in report.problems)
        assert "MOST READ" not in _text(app)
    finally:
        app.close()


def _text(app: App) -> str:
    with app.transaction() as session:
        return session.scalars(select(Issue.text).where(Issue.week == str(NEXT))).one()
