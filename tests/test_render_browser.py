"""The round-up as a reader sees it: real headless Chromium at phone and desktop widths.

Images are served by a small HTTP server on 127.0.0.1 (the issue's image URLs are rewritten
to it), every other request is refused, and the screenshots are kept in test-artifacts/ for
a person to look at.
"""

from __future__ import annotations

import struct
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from newsletter.config import NewsletterSettings, Settings
from newsletter.issue.personal import PersonalFields, personalise
from newsletter.issue.render import render_issue
from tests.sample_issue import IMAGES, sample_issue

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
PACKAGED = Path(__file__).resolve().parent.parent / "templates"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"
    ),
]


def _photo(width: int, height: int, seed: int) -> bytes:
    """A small PNG with a soft two-tone gradient, different for each story."""
    tone = (seed * 37) % 120

    def row(y: int) -> bytes:
        shade = 90 + (y * 80) // height
        return b"\x00" + bytes(
            value
            for x in range(width)
            for value in (shade + tone // 3, shade + (x * 40) // width, 110 + tone)
        )

    raw = b"".join(row(y) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


class _ImageServer(BaseHTTPRequestHandler):
    served: list[str]

    def do_GET(self) -> None:
        self.served.append(self.path)
        body = _photo(300, 169, len(self.served) + len(self.path))
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reports what matters."""


@pytest.fixture
def image_server() -> Iterator[tuple[str, list[str]]]:
    served: list[str] = []
    handler = type("Handler", (_ImageServer,), {"served": served})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def issue() -> tuple[str, str]:
    settings = Settings(newsletter=NewsletterSettings(base_url="https://news.example.org"))
    rendered = render_issue(sample_issue(), settings, [PACKAGED])
    assert rendered.problems == ()
    reader = PersonalFields("https://news.example.org/u/MQ.sample", "jane@example.org", "Jane")
    return (
        personalise(rendered.html, reader, html=True),
        personalise(rendered.text, reader, html=False),
    )


@pytest.mark.parametrize("width", [375, 600])
def test_issue_in_chromium(
    issue: tuple[str, str], image_server: tuple[str, list[str]], width: int
) -> None:
    from playwright.sync_api import Route, sync_playwright

    html, text = issue
    base, served = image_server
    page_html = html.replace(IMAGES, base)
    refused: list[str] = []

    def only_loopback(route: Route) -> None:
        if route.request.url.startswith(base):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.route("**/*", only_loopback)
            page.set_content(page_html, wait_until="load")
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            images = page.evaluate(
                """[...document.images].map(i => ({
                    src: i.src, alt: i.getAttribute('alt'), loaded: i.complete,
                    natural: i.naturalWidth, shown: i.getBoundingClientRect().width}))"""
            )
            links = page.evaluate("[...document.querySelectorAll('a[href]')].map(a => a.href)")
            page.screenshot(path=str(ARTIFACTS / f"roundup-{width}.png"), full_page=True)
        finally:
            browser.close()

    assert overflow <= 0, f"page is {overflow}px wider than the {width}px viewport"
    assert len(images) == 12
    for image in images:
        assert (image["alt"] or "").strip(), image
        assert image["src"].startswith(base), image
        assert image["loaded"], image
        assert image["natural"] > 0, image
        assert 0 < image["shown"] <= width, image
    assert len(set(served)) == 12
    assert refused == []
    assert links
    assert [link for link in links if link not in text] == []
