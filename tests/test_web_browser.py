"""End to end in real headless Chromium: the web app served by waitress on loopback, mail
delivered over SMTP to a real aiosmtpd server, links taken out of the received messages.

Screenshots of every page land in test-artifacts/web/ for a person to look at.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from waitress import create_server

from newsletter.app import App
from newsletter.clock import FixedClock
from newsletter.config import Settings
from newsletter.db.models import Event, EventKind, Subscriber, SubscriberStatus
from newsletter.mail.headers import Recipient
from newsletter.mail.message import IssueParts, MessageFactory
from newsletter.mail.tokens import Tokens
from newsletter.subscribers import rules as subscribers
from newsletter.web.endpoints import create_app
from tests.conftest import REPO
from tests.faultsmtp import FaultPolicy, FaultServer, Received

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO / "test-artifacts" / "web"
WAIT_SECONDS = 10.0

playwright_api = pytest.importorskip("playwright.sync_api")
if not CHROMIUM.exists():
    pytest.skip(f"needs Debian's chromium at {CHROMIUM}", allow_module_level=True)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Any]


class LateApp:
    """Lets the server bind a free port before the app, whose links must name that port,
    is built."""

    def __init__(self) -> None:
        self.target: WsgiApp | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        assert self.target is not None
        return self.target(environ, start_response)


@pytest.fixture
def smtp() -> Iterator[FaultServer]:
    with FaultServer(FaultPolicy()) as server:
        yield server


@contextmanager
def served(configure: Callable[[str], Settings], clock: FixedClock) -> Iterator[tuple[App, str]]:
    """The app on http://127.0.0.1:PORT, with the settings `configure` makes for that base
    URL (the port is known only once the server listens)."""
    late = LateApp()
    server: Any = create_server(late, host="127.0.0.1", port=0, threads=4)
    base_url = f"http://127.0.0.1:{server.effective_port}"
    app = App.create(configure(base_url), clock=clock)
    late.target = create_app(app)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield app, base_url
    finally:
        server.close()
        server.task_dispatcher.shutdown()
        thread.join(timeout=WAIT_SECONDS)
        app.close()


@pytest.fixture
def site(settings: Settings, clock: FixedClock, smtp: FaultServer) -> Iterator[tuple[App, str]]:
    """The app on http://127.0.0.1:PORT, sending through the SMTP server above."""

    def configure(base_url: str) -> Settings:
        return replace(
            settings,
            newsletter=replace(settings.newsletter, base_url=base_url),
            delivery=replace(settings.delivery, transport=smtp.url, timeout=10.0),
        )

    with served(configure, clock) as site:
        yield site


@pytest.fixture
def page(request: pytest.FixtureRequest) -> Iterator[Any]:
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        context = browser.new_context(viewport={"width": 800, "height": 900})
        tab = context.new_page()
        problems: list[str] = []

        def on_console(message: Any) -> None:
            # A 404 for the document itself is the test's intent; one for a part of it is not.
            if message.type == "error" and message.location.get("url") != tab.url:
                problems.append(f"{message.text} ({message.location.get('url')})")

        tab.on("console", on_console)
        tab.on("pageerror", lambda e: problems.append(str(e)))
        yield tab
        assert context.cookies() == [], "the site set a cookie"
        assert problems == [], f"browser reported errors (CSP?): {problems}"
        context.close()
        browser.close()


def wait_for_mail(smtp: FaultServer, recipient: str, count: int = 1) -> EmailMessage:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        found: list[Received] = [r for r in smtp.received() if r.recipient == recipient]
        if len(found) >= count:
            content = found[count - 1].content
            assert content is not None
            message = message_from_bytes(content, policy=default_policy)
            assert isinstance(message, EmailMessage)
            return message
        time.sleep(0.05)
    raise AssertionError(f"no message for {recipient} within {WAIT_SECONDS}s")


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def load(app: App, address: str) -> Subscriber:
    with app.transaction() as session:
        subscriber = subscribers.find(session, address)
        assert subscriber is not None
        return subscriber


def test_subscribe_confirm_from_the_emailed_link(
    site: tuple[App, str], smtp: FaultServer, page: Any, clock: FixedClock
) -> None:
    app, base_url = site
    page.goto(f"{base_url}/subscribe")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(244, 241, 234)"
    trap = page.locator("input[name=website]").bounding_box()
    assert trap is not None
    assert trap["x"] + trap["width"] <= 0, "the honeypot field is on screen"
    shot(page, "01-subscribe")
    page.set_viewport_size({"width": 375, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    shot(page, "01-subscribe-375px")
    page.set_viewport_size({"width": 800, "height": 900})
    page.fill("input[name=email]", "Ana.Muller@Example.org")
    page.fill("input[name=name]", "Ana Müller")
    clock.advance(10)  # filling in the form takes a person some seconds
    page.click("button[type=submit]")
    page.wait_for_selector("text=Check your inbox")
    shot(page, "02-check-your-inbox")

    message = wait_for_mail(smtp, "ana.muller@example.org")
    text = message.get_body(("plain",))
    assert text is not None
    match = re.search(rf"{re.escape(base_url)}/confirm/\S+", text.get_content())
    assert match, "the confirmation email has no link to this server"
    assert message["List-Unsubscribe"] is None
    clock.advance(600)

    page.goto(match.group(0))
    page.wait_for_selector("text=Confirm your subscription")
    assert "a***@example.org" in page.content()
    assert load(app, "ana.muller@example.org").status is SubscriberStatus.PENDING
    shot(page, "03-confirm")
    page.click("button[type=submit]")
    page.wait_for_selector("text=You are subscribed")
    shot(page, "04-confirmed")

    subscriber = load(app, "ana.muller@example.org")
    assert subscriber.status is SubscriberStatus.ACTIVE
    assert subscriber.confirmed_at == clock.now()
    assert (subscriber.consent_source, subscriber.consent_ip) == ("form", "127.0.0.1")
    assert subscriber.name == "Ana Müller"


def test_the_embeddable_snippet_subscribes_after_one_more_step(
    site: tuple[App, str], smtp: FaultServer, page: Any, clock: FixedClock
) -> None:
    """The snippet lives on the magazine's pages, so its post carries no form we served."""
    app, base_url = site
    snippet = (REPO / "templates" / "web" / "subscribe-snippet.html").read_text()
    page.set_content(snippet.replace("https://news.example.org", base_url))
    page.fill("#nl-email", "sam.snippet@example.org")
    page.click("button[type=submit]")
    page.wait_for_selector("text=One more step")
    shot(page, "02-snippet-one-more-step")
    assert page.input_value("input[name=email]") == "sam.snippet@example.org"
    assert smtp.received() == []

    clock.advance(5)
    page.click("button[type=submit]")
    page.wait_for_selector("text=Check your inbox")
    wait_for_mail(smtp, "sam.snippet@example.org")
    assert load(app, "sam.snippet@example.org").status is SubscriberStatus.PENDING


def test_unsubscribe_from_the_list_unsubscribe_link_of_a_received_issue(
    site: tuple[App, str], smtp: FaultServer, page: Any
) -> None:
    app, base_url = site
    with app.transaction() as session:
        reader = subscribers.create(
            session,
            "jane.doe@example.org",
            name="Jane Doe",
            status=SubscriberStatus.ACTIVE,
            at=app.clock.now(),
            source="test",
        )
        reader_id = reader.id
    tokens = Tokens(app.settings.secrets.secret_keys, app.settings.list_id)
    issue = IssueParts(
        issue_id=1,
        week="2024-W47",
        subject="The Weekly Round-up: Week of 18 November 2024",
        html="<html><body><p>This week's stories.</p></body></html>",
        text="This week's stories.\n",
    )
    envelope = MessageFactory(app.settings, tokens, issue).build(
        Recipient(reader_id, "jane.doe@example.org", "Jane Doe"), app.clock.now()
    )
    with app.transport.connect() as connection:
        connection.send(envelope.sender, envelope.recipient, envelope.message)

    received = wait_for_mail(smtp, "jane.doe@example.org")
    links = re.findall(r"<([^>]+)>", str(received["List-Unsubscribe"]))
    [web_link] = [link for link in links if link.startswith(base_url)]
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    page.goto(web_link)
    page.wait_for_selector("text=Unsubscribe from The Weekly Round-up?")
    assert "j***@example.org" in page.content()
    assert "jane.doe" not in page.content()
    assert load(app, "jane.doe@example.org").status is SubscriberStatus.ACTIVE
    shot(page, "05-unsubscribe")
    page.click("button:has-text('Unsubscribe')")
    page.wait_for_selector("text=You are unsubscribed")
    shot(page, "06-unsubscribed")
    assert load(app, "jane.doe@example.org").status is SubscriberStatus.UNSUBSCRIBED

    page.click("button:has-text('Resubscribe')")
    page.wait_for_selector("text=Welcome back")
    shot(page, "07-resubscribed")
    assert load(app, "jane.doe@example.org").status is SubscriberStatus.ACTIVE
    with app.transaction() as session:
        kinds = session.execute(
            select(Event.kind, Event.source)
            .where(Event.subscriber_id == reader_id)
            .order_by(Event.id)
        ).all()
    assert [tuple(k) for k in kinds[1:]] == [
        (EventKind.UNSUBSCRIBED, "page"),
        (EventKind.RESUBSCRIBED, "page"),
    ]


def test_error_and_archive_pages_render(site: tuple[App, str], page: Any) -> None:
    _app, base_url = site
    response = page.goto(f"{base_url}/u/not-a-real-token")
    assert response.status == 404
    page.wait_for_selector("text=This link is not valid")
    shot(page, "08-invalid-link")
    page.goto(f"{base_url}/archive/")
    page.wait_for_selector("text=Past issues")
    shot(page, "09-archive-empty")
