"""The preferences page end to end, in real headless Chromium: a real issue sent over SMTP
to a loopback server, the reader's "Manage your subscription" link taken from the delivered
message, choices made and saved in the browser, and the next sends checked against them.

Screenshots land in test-artifacts/web/ for a person to look at.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import replace
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from newsletter.app import App
from newsletter.clock import FixedClock
from newsletter.config import Settings
from newsletter.db.models import Delivery, Issue, Subscriber, Subscription, SubscriptionStatus
from newsletter.delivery.send import SendOptions, send_issue
from newsletter.feeds.store import fetch_sources
from newsletter.issue.build import build_issue
from newsletter.issue.periods import Week
from newsletter.subscribers.rules import add_address
from tests.conftest import REPO
from tests.faultsmtp import FaultPolicy, FaultServer

pytestmark = pytest.mark.browser

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="the browser tests drive Chromium through playwright"
)
CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"needs Debian's chromium at {CHROMIUM}", allow_module_level=True)

from tests.test_web_browser import CHROMIUM_ARGS, served, shot, wait_for_mail  # noqa: E402

FEED = str(REPO / "examples" / "feed.xml")
FIRST, NEXT = Week(2024, 46), Week(2024, 47)
EVERY = ("Europe", "Middle East", "Asia-Pacific", "Americas", "Africa", "Global")
KEPT = ("Europe", "Americas")


@pytest.fixture
def smtp() -> Iterator[FaultServer]:
    with FaultServer(FaultPolicy()) as server:
        yield server


@pytest.fixture
def site(settings: Settings, clock: FixedClock, smtp: FaultServer) -> Iterator[tuple[App, str]]:
    """Two newsletters (`weekly`, and `brief` with only the Middle East) served on
    http://127.0.0.1:PORT and sending through the SMTP server above."""

    def configure(base_url: str) -> Settings:
        weekly = replace(settings.newsletter, base_url=base_url)
        brief = replace(weekly, slug="brief", name="The Brief", sections=("Middle East",))
        return replace(
            settings,
            newsletter=weekly,
            newsletters=(weekly, brief),
            delivery=replace(settings.delivery, transport=smtp.url, timeout=10.0),
        )

    with served(configure, clock) as site:
        yield site


@pytest.fixture
def page() -> Iterator[Any]:
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        context = browser.new_context(viewport={"width": 800, "height": 900})
        tab = context.new_page()
        problems: list[str] = []
        tab.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        tab.on("pageerror", lambda e: problems.append(str(e)))
        yield tab
        assert context.cookies() == [], "the site set a cookie"
        assert problems == [], f"browser reported errors (CSP?): {problems}"
        context.close()
        browser.close()


def newsletter_app(app: App, slug: str) -> App:
    """The same database and clock, acting on newsletter `slug`, as `--newsletter` does."""
    return App(app.settings.for_newsletter(slug), app.engine, app.sessions, app.clock)


def publish(app: App, week: Week) -> None:
    """Build and send the week's issue, in a thread of its own: the sender runs its own event
    loop, which cannot start inside the one playwright keeps running in this thread."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            build_issue(app, week)
            report = send_issue(app, week, SendOptions(rate=0))
            assert report.sent > 0, report
        except BaseException as error:  # handed back to the test below
            failures.append(error)

    sender = threading.Thread(target=run)
    sender.start()
    sender.join(timeout=60)
    assert not sender.is_alive(), "the send did not finish"
    if failures:
        raise failures[0]


def manage_link(smtp: FaultServer) -> str:
    """The "Manage your subscription" link in the footer of the issue the reader received."""
    message = wait_for_mail(smtp, "jane.doe@example.org")
    html = message.get_body(("html",))
    assert html is not None
    found = re.search(
        r'<a href="([^"]+/p/[^"]+)"[^>]*>Manage your subscription</a>', html.get_content()
    )
    assert found is not None, "the footer has no Manage your subscription link"
    return unescape(found[1])


def test_choices_made_in_the_browser_shape_the_next_sends(
    site: tuple[App, str], smtp: FaultServer, page: Any, clock: FixedClock
) -> None:
    app, base_url = site
    weekly, brief = newsletter_app(app, "weekly"), newsletter_app(app, "brief")
    fetch_sources(app, [FEED])
    jane = add_address(weekly, "jane.doe@example.org", "Jane Doe").subscriber.id
    add_address(brief, "jane.doe@example.org")
    add_address(brief, "omar@example.org")  # still reads the brief: its send goes out
    publish(weekly, FIRST)
    link = manage_link(smtp)
    assert link.startswith(f"{base_url}/p/")
    clock.advance(3600)

    page.goto(f"{base_url}/subscribe?newsletter=brief")
    assert page.locator("input[type=hidden][name=newsletter]").get_attribute("value") == "brief"
    assert not page.is_checked("input[type=checkbox][name=newsletter][value=weekly]")
    shot(page, "12-subscribe-two-newsletters")

    page.goto(link)
    page.wait_for_selector("text=Your preferences")
    assert "j***@example.org" in page.content()
    assert "jane.doe" not in page.content()
    assert page.is_checked("input[name=newsletter][value=weekly]")
    assert page.is_checked("input[name=newsletter][value=brief]")
    shot(page, "10-preferences")
    page.uncheck("input[name=newsletter][value=brief]")
    for section in EVERY:
        if section not in KEPT:
            page.uncheck(f'input[name="sections-weekly"][value="{section}"]')
    page.click("button:has-text('Save my choices')")
    page.wait_for_selector("text=Your choices are saved")
    assert not page.is_checked("input[name=newsletter][value=brief]")
    shot(page, "11-preferences-saved")

    with app.transaction() as session:
        held = {
            s.newsletter: (s.status, s.section_list)
            for s in session.scalars(select(Subscription).where(Subscription.subscriber_id == jane))
        }
    assert held == {
        "weekly": (SubscriptionStatus.ACTIVE, KEPT),
        "brief": (SubscriptionStatus.UNSUBSCRIBED, ()),
    }

    publish(brief, NEXT)
    publish(weekly, NEXT)
    with app.transaction() as session:
        sent = session.execute(
            select(Issue.newsletter, Subscriber.email, Delivery.sections)
            .join(Issue, Issue.id == Delivery.issue_id)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Issue.week == str(NEXT))
        ).all()
    assert sorted(tuple(row) for row in sent) == [
        ("brief", "omar@example.org", ""),
        ("weekly", "jane.doe@example.org", "Europe\nAmericas"),
    ]
    wait_for_mail(smtp, "jane.doe@example.org", count=2)
    assert len([r for r in smtp.received() if r.recipient == "jane.doe@example.org"]) == 2
