"""Every visible text of the round-up passes WCAG AA in light and in dark mode.

Premailer inlines the light colours into each element, so dark-mode rules that do not name
those elements with `!important` lose, and text stays dark on the dark background. Headless
Chromium renders the sample issue with `prefers-color-scheme` set each way; each element
with text of its own is checked against the background it is actually drawn on.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from newsletter.config import NewsletterSettings, Settings
from newsletter.issue.contrast import AA_LARGE, AA_NORMAL, ratio
from newsletter.issue.personal import PersonalFields, personalise
from newsletter.issue.render import render_issue
from tests.sample_issue import sample_issue
from tests.test_render_browser import ARTIFACTS, CHROMIUM, LAUNCH_ARGS, PACKAGED

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"
    ),
]

# Each element that holds text itself, its colour, and the first opaque background behind
# it; hidden elements (the preheader) are left out.
_TEXTS = """() => {
  const shown = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const s = getComputedStyle(e);
      if (s.display === 'none' || s.visibility === 'hidden' || s.opacity === '0') return false;
    }
    return el.getClientRects().length > 0;
  };
  const ground = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = getComputedStyle(e).backgroundColor;
      if (c && c !== 'transparent' && !c.endsWith(', 0)')) return c;
    }
    return 'rgb(255, 255, 255)';
  };
  const found = [];
  for (const el of document.body.querySelectorAll('*')) {
    const own = [...el.childNodes]
      .filter(n => n.nodeType === Node.TEXT_NODE)
      .map(n => n.textContent.replace(/\\s+/g, ' ').trim())
      .join(' ').trim();
    if (!own || !shown(el)) continue;
    const s = getComputedStyle(el);
    found.push({
      text: own.slice(0, 40), tag: el.tagName, color: s.color, background: ground(el),
      size: parseFloat(s.fontSize), weight: parseInt(s.fontWeight, 10),
    });
  }
  return found;
}"""
_RGB = re.compile(r"rgba?\((\d+), (\d+), (\d+)")


def _rgb(css: str) -> tuple[int, int, int]:
    match = _RGB.match(css)
    assert match, css
    return int(match[1]), int(match[2]), int(match[3])


def _large(item: dict[str, Any]) -> bool:
    """WCAG's large text: 18pt (24px), or 14pt (18.67px) and bold."""
    size = float(item["size"])
    return size >= 24 or (size >= 18.66 and int(item["weight"]) >= 700)


@pytest.fixture(scope="module")
def html() -> str:
    settings = Settings(newsletter=NewsletterSettings(base_url="https://news.example.org"))
    rendered = render_issue(sample_issue(), settings, [PACKAGED])
    reader = PersonalFields("https://news.example.org/u/MQ.sample", "jane@example.org", "Jane")
    return personalise(rendered.html, reader, html=True)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_visible_text_passes_wcag_aa(html: str, scheme: str) -> None:
    from playwright.sync_api import Route, sync_playwright

    def offline(route: Route) -> None:
        route.abort()

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = browser.new_page(
                viewport={"width": 600, "height": 900},
                color_scheme=scheme,  # type: ignore[arg-type]
            )
            page.route("**/*", offline)
            page.set_content(html, wait_until="load")
            texts: list[dict[str, Any]] = page.evaluate(_TEXTS)
            page.screenshot(path=str(ARTIFACTS / f"roundup-{scheme}.png"), full_page=True)
        finally:
            browser.close()

    assert len(texts) > 30  # headlines, bylines, kickers, teasers, footer
    failures = []
    for item in texts:
        needed = AA_LARGE if _large(item) else AA_NORMAL
        contrast = ratio(_rgb(item["color"]), _rgb(item["background"]))
        if contrast < needed:
            failures.append(
                f"{contrast:.2f} < {needed}: {item['tag']} {item['text']!r} "
                f"{item['color']} on {item['background']}"
            )
    assert not failures, "\n".join(failures)
    kickers = [_rgb(item["color"]) for item in texts if item["text"].startswith("Top story")]
    assert kickers, "the lead story's kicker is missing"
    for red, green, blue in kickers:  # the brand's red, in both schemes
        assert red > green + 40, kickers
        assert red > blue + 40, kickers
