"""Plain-text rendering helpers for the text part of the email.

The text part is written by its own template rather than stripped from the HTML, but teasers
arrive as (sanitised) HTML, so they are turned into wrapped paragraphs here. Links keep their
address in angle brackets after the linked words, because a reader of the text part has no
other way to reach them.
"""

from __future__ import annotations

import textwrap
from html.parser import HTMLParser

WIDTH = 72


class _TeaserText(HTMLParser):
    """Collects paragraphs of text from teaser HTML (paragraphs, links, emphasis, breaks)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self._current: list[str] = []
        self._hrefs: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "p":
            self._flush()
        elif tag == "br":
            self._current.append("\n")
        elif tag == "a":
            self._hrefs.append(dict(attrs).get("href"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "p":
            self._flush()
        elif tag == "a" and self._hrefs:
            href = self._hrefs.pop()
            if href:
                self._current.append(f" <{href}>")

    def handle_data(self, data: str) -> None:
        self._current.append(data)

    def close(self) -> None:
        super().close()
        self._flush()

    def _flush(self) -> None:
        text = "".join(self._current)
        self._current = []
        lines = [" ".join(line.split()) for line in text.split("\n")]
        paragraph = "\n".join(line for line in lines if line)
        if paragraph:
            self.paragraphs.append(paragraph)


def html_to_paragraphs(fragment: str) -> list[str]:
    """The text of each paragraph of a sanitised HTML fragment, whitespace collapsed."""
    parser = _TeaserText()
    parser.feed(fragment)
    parser.close()
    return parser.paragraphs


def wrap(text: str, width: int = WIDTH, indent: str = "") -> str:
    """Wrap to `width` columns without ever breaking a word or an address across lines."""
    return "\n".join(
        textwrap.fill(
            line,
            width=width,
            initial_indent=indent,
            subsequent_indent=indent,
            break_long_words=False,
            break_on_hyphens=False,
        )
        for line in text.split("\n")
    )


def html_to_text(fragment: str, width: int = WIDTH) -> str:
    """Teaser HTML as wrapped paragraphs separated by blank lines."""
    return "\n\n".join(wrap(p, width) for p in html_to_paragraphs(fragment))
