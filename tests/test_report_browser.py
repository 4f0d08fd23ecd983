"""The report as an editor sees it, in real headless Chromium at laptop and phone widths.

The report comes from a real send (into the outbox) and real clicks made over HTTP against
the web application served by waitress on 127.0.0.1. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from newsletter.app import App
from newsletter.clock import FixedClock
from newsletter.config import Settings
from newsletter.delivery.report import issue_report
from newsletter.tracking.page import render_page
from tests.test_render_browser import ARTIFACTS, CHROMIUM, LAUNCH_ARGS
from tests.tracking_world import BROWSER, WEEK, send_week, served, tracking_app

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"
    ),
]


@pytest.fixture
def report_html(settings: Settings, clock: FixedClock) -> Iterator[str]:
    app: App = tracking_app(settings, clock, clicks="aggregate")
    try:
        copies = send_week(app, [f"reader{n}@example.org" for n in range(6)])
        with served(app) as base, httpx.Client(base_url=base, timeout=10) as http:
            for path in copies[0].paths():  # a link scanner, at delivery
                http.get(path, headers={"User-Agent": "Microsoft Defender SafeLinks"})
            clock.advance(1800)
            for n, copy in enumerate(copies):
                for path in copy.paths()[: n % 3 + 1]:
                    assert http.get(path, headers={"User-Agent": BROWSER}).status_code == 302
                    clock.advance(20)
        yield render_page(issue_report(app, WEEK))
    finally:
        app.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_report_charts_fit_a_laptop_and_a_phone(report_html: str, width: int) -> None:
    from playwright.sync_api import Route, sync_playwright

    refused: list[str] = []

    def nothing_from_outside(route: Route) -> None:
        refused.append(route.request.url)
        route.abort()

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.route("**/*", nothing_from_outside)
            page.set_content(report_html, wait_until="load")
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            charts: list[dict[str, Any]] = page.evaluate(
                """[...document.querySelectorAll('svg.chart')]
                    .filter(s => s.getBoundingClientRect().width > 0).map(s => {
                    const box = s.getBoundingClientRect();
                    return {label: s.getAttribute('aria-labelledby'), width: box.width,
                            height: box.height, shapes: s.querySelectorAll('path').length};
                })"""
            )
            tables = page.evaluate("document.querySelectorAll('table').length")
            scrolling = page.evaluate(
                "[...document.querySelectorAll('.table')]"
                ".filter(t => t.scrollWidth > t.clientWidth).map(t => t.textContent.slice(0, 60))"
            )
            page.screenshot(path=str(ARTIFACTS / f"report-{width}.png"), full_page=True)
        finally:
            browser.close()

    assert overflow <= 0, f"page is {overflow}px wider than the {width}px viewport"
    assert [c["label"] for c in charts] == ["chart-deliveries", "chart-clicks", "chart-growth"]
    for chart in charts:
        assert min(width, 960) - 80 < chart["width"] <= width, chart
        assert chart["height"] > 100, chart
        assert chart["shapes"] > 10, chart
    assert tables == 3
    assert scrolling == [], "a table scrolls sideways"
    assert refused == []
