"""Tracked links through the real web server: waitress on loopback, real HTTP requests."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from newsletter.clock import FixedClock
from newsletter.config import Settings
from newsletter.db.models import ClickCount
from tests.tracking_world import BROWSER, send_week, served, tracking_app


def test_people_and_machines_through_waitress(settings: Settings, clock: FixedClock) -> None:
    app = tracking_app(settings, clock, clicks="aggregate")
    try:
        copies = send_week(app, ["ann@example.org"])
        paths = copies[0].paths()
        with served(app) as base, httpx.Client(base_url=base, timeout=10) as http:
            defender = http.get(paths[0], headers={"User-Agent": "python-requests/2.32"})
            clock.advance(900)
            person = http.get(paths[1], headers={"User-Agent": BROWSER})
            checked = http.head(paths[1], headers={"User-Agent": BROWSER})
            forged = http.get(paths[1][:-3], headers={"User-Agent": BROWSER})
        assert [r.status_code for r in (defender, person, checked, forged)] == [302, 302, 302, 404]
        assert person.headers["location"].startswith("https://www.example.org/2024/")
        assert person.headers["cache-control"] == "no-store"
        with app.transaction() as session:
            rows = session.execute(
                select(ClickCount.human, ClickCount.scanner, ClickCount.head, ClickCount.early)
            ).all()
        assert sorted(rows) == [(0, 1, 0, 0), (1, 0, 1, 0)]
    finally:
        app.close()
