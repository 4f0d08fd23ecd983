"""Checks on a rendered email that catch what mail clients punish silently.

Gmail hides everything past about 102 KB of HTML (the footer, and with it the unsubscribe
link); clients block or distrust plain-http and relative links; images without alt text
leave a blank box when images are blocked, which desktop Outlook does by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser

GMAIL_CLIP_BYTES = 102 * 1024
_ALLOWED_LINK_SCHEMES = ("https://", "mailto:")


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.images: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href") is not None:
            self.links.append(values["href"] or "")
        elif tag == "img":
            self.images.append((values.get("src") or "", values.get("alt")))


@dataclass(frozen=True)
class HtmlInventory:
    links: tuple[str, ...]
    images: tuple[tuple[str, str | None], ...]


def inventory(html: str) -> HtmlInventory:
    """Every link target and every image (src, alt) in document order."""
    collector = _Collector()
    collector.feed(html)
    collector.close()
    return HtmlInventory(tuple(collector.links), tuple(collector.images))


def audit(html: str) -> tuple[str, ...]:
    """Human-readable problems with a rendered message, empty when there are none."""
    problems: list[str] = []
    size = len(html.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        problems.append(
            f"HTML is {size / 1024:.1f} KB, above the {GMAIL_CLIP_BYTES // 1024} KB at which "
            "Gmail clips a message and hides its footer"
        )
    found = inventory(html)
    for href in dict.fromkeys(found.links):
        if not href.startswith(_ALLOWED_LINK_SCHEMES):
            problems.append(f"link is not an absolute https URL: {href or '(empty)'}")
    for src, alt in found.images:
        if not src.startswith("https://"):
            problems.append(f"image is not loaded from an absolute https URL: {src or '(empty)'}")
        if not (alt or "").strip():
            problems.append(f"image has no alt text: {src or '(empty)'}")
    return tuple(problems)
