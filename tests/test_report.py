"""`newsletter report`: its figures against the clicks and deliveries that produced them,
the command's three outputs, and retention of per-reader events."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from newsletter.app import App
from newsletter.clock import FixedClock
from newsletter.config import Settings
from newsletter.db.models import Article, ClickEvent, Delivery, DeliveryStatus
from newsletter.delivery.report import issue_report
from newsletter.tracking.page import render_page
from newsletter.tracking.retention import purge
from newsletter.web.endpoints import create_app
from tests.conftest import Cli
from tests.tracking_world import BROWSER, WEEK, Copy, send_week, settle, tracking_app

READERS = ["ann@example.org", "bob@example.org", "cyd@example.org"]


def clicks(app: App, copies: list[Copy], clock: FixedClock) -> FlaskClient:
    """Second link: two people and a scanner; first link: one person; third: a HEAD."""
    client = create_app(app).test_client()
    clock.advance(3600)
    for copy, agent in zip(copies, [BROWSER, BROWSER, "Mimecast URL scanner"], strict=True):
        client.get(copy.paths()[1], headers={"User-Agent": agent})
        clock.advance(30)
    client.get(copies[0].paths()[0], headers={"User-Agent": BROWSER})
    client.head(copies[0].paths()[2], headers={"User-Agent": BROWSER})
    settle(client.application)
    return client


@pytest.fixture
def tracked(settings: Settings, clock: FixedClock) -> Iterator[App]:
    application = tracking_app(settings, clock, clicks="per-reader", opens=True)
    yield application
    application.close()


def test_the_report_counts_what_happened(tracked: App, clock: FixedClock) -> None:
    copies = send_week(tracked, READERS)
    with tracked.transaction() as session:
        session.execute(
            Delivery.__table__.update()
            .where(Delivery.id == session.scalar(select(func.min(Delivery.id))))
            .values(status=DeliveryStatus.FAILED, sent_at=None)
        )
    clicks(tracked, copies, clock)
    figures = issue_report(tracked, WEEK)
    assert figures.deliveries["sent"] == 2
    assert figures.deliveries["failed"] == 1
    assert (figures.human_clicks, figures.machine_clicks) == (3, 2)
    assert figures.machine_by_sign == {"early": 0, "burst": 0, "head": 1, "scanner": 1}
    ranked = [(a.human, a.machine) for a in figures.articles]
    assert ranked[:3] == [(2, 1), (1, 0), (0, 1)]
    assert all(a == (0, 0) for a in ranked[3:])
    assert figures.opens == 0
    assert [g.week for g in figures.growth][-1] == str(WEEK)
    assert len(figures.growth) == 12
    assert figures.growth[-1].added == 3
    page = render_page(figures)
    assert page.count("<svg") == 6  # each chart for wide screens and for phones
    assert figures.articles[0].title.replace("'", "&#39;") in page
    assert "Opens (unreliable)" in page
    assert "<script" not in page


def test_titles_from_the_feed_are_escaped_and_dollars_are_not_tex(
    tracked: App, clock: FixedClock
) -> None:
    send_week(tracked, READERS[:1])
    hostile = "<script>alert(1)</script> costs $5 and $6 \x1b[31m"
    with tracked.transaction() as session:
        session.execute(Article.__table__.update().values(title=hostile))
    page = render_page(issue_report(tracked, WEEK))
    assert "<script>" not in page
    assert "\x1b" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; costs $5 and $6" in page


def test_retention_deletes_old_per_reader_events_only(tracked: App, clock: FixedClock) -> None:
    copies = send_week(tracked, READERS)
    clicks(tracked, copies, clock)
    figures = issue_report(tracked, WEEK)
    clock.advance(timedelta(days=89).total_seconds())
    assert purge(tracked) == 0
    clock.advance(timedelta(days=2).total_seconds())
    assert purge(tracked) == 5
    with tracked.transaction() as session:
        assert session.scalar(select(func.count()).select_from(ClickEvent)) == 0
    assert issue_report(tracked, WEEK).articles == figures.articles


def test_report_command_html_json_and_file(tracked: App, clock: FixedClock, cli: Cli) -> None:
    copies = send_week(tracked, READERS)
    clicks(tracked, copies, clock)
    cli.env["NEWSLETTER_TRACKING_CLICKS"] = "per-reader"
    as_json = cli("report", "--week", str(WEEK), "--json")
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.output)
    assert (data["human_clicks"], data["machine_clicks"]) == (3, 2)
    assert data["articles"][0]["human"] == 2
    page = cli("report", "--week", str(WEEK))
    assert page.exit_code == 0
    assert page.output.startswith("<!doctype html>")
    assert re.search(r"<svg[^>]*role=\"img\"", page.output)
    written = cli("report", "-o", "report.html")  # the latest sent issue
    assert written.exit_code == 0
    assert (cli.cwd / "report.html").read_text(encoding="utf-8") == page.output
    missing = cli("report", "--week", "2023-W01")
    assert missing.exit_code == 1
    assert missing.output.count("\n") == 1
    assert "Traceback" not in missing.output


def test_report_before_any_send_is_one_line(cli: Cli) -> None:
    result = cli("report")
    assert result.exit_code == 1
    assert "no issue has been sent yet" in result.output


def test_stats_and_report_runs_delete_expired_events(
    tracked: App, clock: FixedClock, cli: Cli
) -> None:
    copies = send_week(tracked, READERS)
    clicks(tracked, copies, clock)  # in 2024: long past the 90 days, by the command's clock

    def events() -> int:
        with tracked.transaction() as session:
            return session.scalar(select(func.count()).select_from(ClickEvent)) or 0

    assert events() == 5
    assert cli("stats", env={"NEWSLETTER_TRACKING_RETENTION_DAYS": "100000"}).exit_code == 0
    assert events() == 5
    assert cli("stats").exit_code == 0
    assert events() == 0
