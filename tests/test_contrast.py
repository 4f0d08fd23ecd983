"""Readable text colours derived from the configured brand and background colours."""

from __future__ import annotations

import pytest

from newsletter.config import NewsletterSettings
from newsletter.issue.contrast import (
    DARK_CARD,
    palette,
    parse_colour,
    ratio,
    readable_on,
    tint_until_readable,
)


def contrast(first: str, second: str) -> float:
    a, b = parse_colour(first), parse_colour(second)
    assert a is not None
    assert b is not None
    return ratio(a, b)


def test_ratio_matches_the_wcag_reference_values() -> None:
    assert contrast("#000", "#fff") == pytest.approx(21)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)
    assert contrast("#a4161a", "#a4161a") == pytest.approx(1)


def test_parse_colour_takes_hex_only() -> None:
    assert parse_colour("#A4161A") == (0xA4, 0x16, 0x1A)
    assert parse_colour(" #abc ") == (0xAA, 0xBB, 0xCC)
    assert parse_colour("navy") is None
    assert parse_colour("#12345") is None


@pytest.mark.parametrize(
    ("background", "preferred", "expected"),
    [
        ("#ffffff", ("#a4161a",), "#a4161a"),  # the brand reads on white: kept
        ("#1f1e1c", ("#1a1a1a",), "#ffffff"),  # dark ink on a dark ground: white
        ("#f4f1ea", ("#f0f0f0",), "#000000"),  # light ink on a light ground: black
        ("#ffffff", ("#eeeeee", "#a4161a"), "#a4161a"),  # first that passes
        ("#ffffff", ("red; } body { x",), "#000000"),  # never returns what it cannot judge
        ("#0000ff", (), "#ffffff"),
    ],
)
def test_readable_on_keeps_a_passing_colour_else_black_or_white(
    background: str, preferred: tuple[str, ...], expected: str
) -> None:
    assert readable_on(background, *preferred) == expected


def test_large_text_needs_only_three_to_one() -> None:
    grey = "#949494"  # about 3.03:1 on white
    assert readable_on("#ffffff", grey) == "#000000"
    assert readable_on("#ffffff", grey, large=True) == grey


def test_the_brand_colour_is_lightened_for_dark_mode_keeping_its_hue() -> None:
    tinted = tint_until_readable("#a4161a", DARK_CARD)
    assert contrast(tinted, DARK_CARD) >= 4.5
    rgb = parse_colour(tinted)
    assert rgb is not None
    assert rgb[0] > rgb[1]
    assert rgb[0] > rgb[2]


def test_a_dark_theme_gets_light_text_and_a_readable_wordmark() -> None:
    """A dark page with light ink: the text on the page stays light, the wordmark on the
    white masthead turns to the brand colour, which reads there."""
    dark = NewsletterSettings(
        background_color="#111111", text_color="#eeeeee", muted_color="#333333"
    )
    colours = palette(dark)
    assert colours.ink == "#eeeeee"
    assert contrast(colours.muted, "#111111") >= 4.5
    assert colours.wordmark == "#a4161a"
    assert contrast(colours.masthead_ink, "#ffffff") >= 4.5
    assert contrast(colours.on_brand, dark.brand_color) >= 4.5
