"""Text colours that stay readable on the configured backgrounds (WCAG 2 contrast).

The brand, text and background colours are the operator's; a dark background with the
default dark ink, or a light ink on the white masthead, leaves text that nobody can read.
Templates ask here for each text colour instead of using a setting directly: the configured
colour when it passes WCAG AA on that background, otherwise black or white, whichever
contrasts more.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from newsletter.config import NewsletterSettings

AA_NORMAL = 4.5  # WCAG 2 AA, text under 18pt (24px), or 14pt (18.66px) bold
AA_LARGE = 3.0
BLACK = "#000000"
WHITE = "#ffffff"
MASTHEAD = "#ffffff"  # the email's and the pages' masthead and story cards
# The email's dark scheme, for clients that honour prefers-color-scheme.
DARK_PAGE = "#161514"
DARK_CARD = "#1f1e1c"
DARK_INK = "#e8e4dc"
DARK_MUTED = "#b3ac9f"

_HEX = re.compile(r"#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})")


def parse_colour(value: str) -> tuple[int, int, int] | None:
    """(r, g, b) of a #rgb or #rrggbb colour; None for anything else (a name, rgb())."""
    match = _HEX.fullmatch(value.strip())
    if match is None:
        return None
    digits = match[1]
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def luminance(rgb: tuple[float, float, float]) -> float:
    """WCAG 2 relative luminance of an sRGB colour given as 0-255 channels."""

    def linear(channel: float) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def ratio(first: tuple[float, float, float], second: tuple[float, float, float]) -> float:
    """WCAG contrast ratio, from 1 (same) to 21 (black on white)."""
    light, dark = sorted((luminance(first), luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def readable_on(background: str, *preferred: str, large: bool = False) -> str:
    """The first of `preferred` that passes AA on `background`, else black or white.

    Only #rgb and #rrggbb colours can be judged (a CSS name cannot), so only they are
    returned: the result is always a hex colour, safe to place in CSS. An unreadable
    background is taken for white, the masthead's.
    """
    ground = parse_colour(background) or (255, 255, 255)
    needed = AA_LARGE if large else AA_NORMAL
    for colour in preferred:
        rgb = parse_colour(colour)
        if rgb is not None and ratio(rgb, ground) >= needed:
            return _hex(rgb)
    return BLACK if ratio((0, 0, 0), ground) >= ratio((255, 255, 255), ground) else WHITE


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def tint_until_readable(colour: str, background: str) -> str:
    """`colour` mixed with white in 5% steps until it passes AA on a dark `background`,
    so that links and kickers keep the brand's hue in dark mode."""
    rgb = parse_colour(colour)
    ground = parse_colour(background)
    if rgb is None or ground is None:
        return DARK_INK
    for step in range(21):
        share = step / 20
        r, g, b = (round(c + (255 - c) * share) for c in rgb)
        if ratio((r, g, b), ground) >= AA_NORMAL:
            return _hex((r, g, b))
    return WHITE


@dataclass(frozen=True)
class Palette:
    """Text colours for the two grounds every template uses: the page and the masthead."""

    ink: str  # body text on the page background
    muted: str  # dates, footer, tagline on the page background
    link: str  # links and kickers on the page background
    masthead_ink: str  # text on the white masthead and story cards
    masthead_muted: str
    wordmark: str  # the publication's name on the masthead: the ink, else the brand colour
    accent: str  # kickers and links on the white cards: brand colour if it reads
    on_brand: str  # button labels on the brand colour
    dark_accent: str  # the brand colour, lightened until it reads on the dark card
    dark_page: str = DARK_PAGE
    dark_card: str = DARK_CARD
    dark_ink: str = DARK_INK
    dark_muted: str = DARK_MUTED


def palette(brand: NewsletterSettings) -> Palette:
    page = brand.background_color
    return Palette(
        ink=readable_on(page, brand.text_color),
        muted=readable_on(page, brand.muted_color, brand.text_color),
        link=readable_on(page, brand.brand_color, brand.text_color),
        masthead_ink=readable_on(MASTHEAD, brand.text_color),
        masthead_muted=readable_on(MASTHEAD, brand.muted_color, brand.text_color),
        wordmark=readable_on(MASTHEAD, brand.text_color, brand.brand_color, large=True),
        accent=readable_on(MASTHEAD, brand.brand_color, brand.text_color),
        on_brand=readable_on(brand.brand_color, WHITE),
        dark_accent=tint_until_readable(brand.brand_color, DARK_CARD),
    )
