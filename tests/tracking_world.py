"""A sent issue with tracked links, for the tracking tests: real feed, real build, a real
send into the outbox, and the messages read back from disk."""

from __future__ import annotations

import email
import email.policy
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from flask import Flask
from waitress import create_server

from newsletter.app import App
from newsletter.clock import FixedClock
from newsletter.config import Settings, TrackingSettings
from newsletter.delivery.send import SendOptions, send_issue
from newsletter.feeds.store import fetch_sources
from newsletter.issue.build import build_issue
from newsletter.issue.periods import Week
from newsletter.subscribers.rules import add_address
from newsletter.web.endpoints import create_app

REPO = Path(__file__).resolve().parent.parent
FEED = str(REPO / "examples" / "feed.xml")
WEEK = Week(2024, 47)
TRACKED = re.compile(r"https://news\.example\.org/c/[A-Za-z0-9._/-]+")
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130"


@dataclass(frozen=True)
class Copy:
    """One reader's message: the tracked links of its text part, in order."""

    to: str
    links: list[str]

    def paths(self) -> list[str]:
        return [link.removeprefix("https://news.example.org") for link in self.links]


def tracking_app(settings: Settings, clock: FixedClock, **tracking: object) -> App:
    chosen = replace(settings, tracking=replace(TrackingSettings(), **tracking))
    return App.create(chosen, clock=clock)


def send_week(app: App, readers: list[str], week: Week = WEEK) -> list[Copy]:
    """Fetch the example feed, add `readers`, build and send the week; the copies sent."""
    fetch_sources(app, [FEED])
    for address in readers:
        add_address(app, address)
    build_issue(app, week)
    send_issue(app, week, SendOptions(rate=0))
    outbox = Path(app.settings.delivery.transport.removeprefix("outbox:"))
    copies = []
    for path in sorted(outbox.rglob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        text = message.get_body(("plain",))
        assert text is not None
        copies.append(Copy(str(message["To"]), TRACKED.findall(text.get_content())))
    return sorted(copies, key=lambda c: c.to)


def settle(web: Flask) -> None:
    """Wait until the clicks the application has answered are counted."""
    web.extensions["newsletter.clicks"].flush()


@contextmanager
def served(app: App) -> Iterator[str]:
    """The web application under waitress on 127.0.0.1, as `newsletter serve` runs it."""
    web = create_app(app)
    server: Any = create_server(web, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        settle(web)
        server.task_dispatcher.shutdown()  # lets requests in service finish first
        server.close()
        thread.join(timeout=10)
        for channel in list(server._map.values()):  # keep-alive connections still open
            channel.close()
