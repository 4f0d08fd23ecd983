"""The reader-facing pages follow the configured tagline and stay readable in any colours."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace

import pytest
from flask.testing import FlaskClient

from newsletter.app import App
from newsletter.config import Settings
from newsletter.issue.contrast import parse_colour, ratio
from newsletter.web.endpoints import create_app


@pytest.fixture
def dark_client(settings: Settings) -> Iterator[FlaskClient]:
    """A dark theme: near-black page, light ink, and a tagline of the magazine's own."""
    brand = replace(
        settings.newsletter,
        background_color="#121212",
        text_color="#ededed",
        tagline="Dispatches from the far side of the news",
    )
    application = App.create(replace(settings, newsletter=brand))
    yield create_app(application).test_client()
    application.close()


def _rule(css: str, selector: str) -> str:
    match = re.search(rf"(?m)^{re.escape(selector)} \{{([^}}]*)\}}", css)
    assert match, selector
    return match[1]


def _variable(css: str, name: str) -> str:
    match = re.search(rf"--{name}: ([^;]+);", css)
    assert match, name
    return match[1].strip()


def _contrast(first: str, second: str) -> float:
    a, b = parse_colour(first), parse_colour(second)
    assert a is not None, first
    assert b is not None, second
    return ratio(a, b)


def test_pages_show_the_configured_tagline(dark_client: FlaskClient) -> None:
    page = dark_client.get("/subscribe").get_data(as_text=True)
    assert "Dispatches from the far side of the news" in page
    assert "The week&#39;s reporting, in one email every week" not in page


def test_a_dark_theme_keeps_the_wordmark_and_text_readable(dark_client: FlaskClient) -> None:
    css = dark_client.get("/style.css").get_data(as_text=True)
    wordmark = re.search(r"color: ([^;]+);", _rule(css, ".wordmark"))
    assert wordmark, "the wordmark's colour must not be inherited from the page's ink"
    assert _contrast(wordmark[1], "#ffffff") >= 3  # large text on the white masthead
    assert _contrast(_variable(css, "ink"), "#121212") >= 4.5
    assert _contrast(_variable(css, "muted"), "#121212") >= 4.5
    assert _contrast(_variable(css, "card-ink"), "#ffffff") >= 4.5
