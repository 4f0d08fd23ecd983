"""Teasers, made from whatever HTML a feed carries.

Feed HTML is untrusted: it is sanitised with nh3 down to paragraphs, links and emphasis, and
only then cut to the word budget. The cut is made on our own small tree of paragraphs and
inline runs, which we serialise ourselves, so an excerpt can never end inside a tag or leave
one open. A teaser is a digest's few lines, so what only makes sense on the article's page
goes first: footnote markers, "Read more" and "Continue reading" links, "Quick summary"
labels, photo credits and the "The post ... appeared first on ..." line.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import nh3

MAX_PARAGRAPHS = 3
SAFE_SCHEMES = frozenset({"http", "https", "mailto"})
IMAGE_SCHEMES = frozenset({"http", "https"})

# Block tags survive the first pass only so that their boundaries become paragraph breaks.
_BLOCKS = frozenset(
    {
        *("p", "div", "li", "blockquote", "section", "article", "figure"),
        *("h1", "h2", "h3", "h4", "h5", "h6"),
    }
)
_INLINE = {"a": "a", "em": "em", "i": "em", "strong": "strong", "b": "strong"}
_DROP_WITH_CONTENT = frozenset(
    {
        "script",
        "style",
        "figcaption",
        "noscript",
        "template",
        "iframe",
        "object",
        "svg",
        "math",
        "table",
        "form",
        "button",
        "select",
        "textarea",
    }
)
_SURROGATES = re.compile("[\ud800-\udfff]")
_SENTENCE_END = re.compile(r"[.!?\u2026][\"'\u201d\u2019)\]]*(?=\s|$)")
# A paragraph that is nothing but one of these is the page's furniture, not the article.
_BOILERPLATE = re.compile(
    r"^(continue reading|read more|keep reading|to read this article in full"
    r"|the post .* appeared first on|quick summary\W*$|https?://\S+$"
    r"|(image|photo|photograph|picture)s?( by\b|\s*:|\s+credit\b)\S*(\s+\S+){0,8}\s*$)",
    re.IGNORECASE,
)
_LEADING_LABEL = re.compile(r"^quick summary\s*(?:[:\u21ac\u2192\u2014\u2013|>-]+\s*)?", re.I)
# "... more text. Read more »", "... [\u2026] Continue reading "Title" \u2192", "The post X
# appeared first on Y." at the end of a paragraph; the label follows a sentence end, an
# ellipsis or a bracket, so "I want to read more books." is left alone.
_TRAILING_LABEL = re.compile(
    r"(?:\s*\[?(?:\u2026|\.\.\.)\]?|(?<=[.!?\u2026\])])|^)\s*[\[(]?"
    r"(?:continue reading|read more|keep reading|the post\b.{0,300}?\bappeared first on)"
    r"\S*(?:\s+\S+){0,15}\s*$",
    re.IGNORECASE,
)
# WordPress ends an excerpt with "[\u2026]"; the reader only needs the ellipsis.
_BRACKETED_ELLIPSIS = re.compile(r"\s*\[(?:\u2026|\.\.\.)\]\s*$")
_CUT_SHORT = re.compile(r"\s*\[?(?:\u2026|\.\.\.)")
_FOOTNOTE = re.compile(
    r"\s?\[\d{1,3}\]|(?<=[.,;:!?'\"\u201d\u2019)])[\u00b9\u00b2\u00b3\u2070-\u2079]+"
)
_FOOTNOTE_MARK = re.compile(r"^[\[(]?(?:\d{1,3}|[*\u2020\u2021\u00a7])[\])]?$")
# How far past the budget a teaser may run to end on a whole sentence, and how short of it
# a whole sentence is still near enough.
OVERRUN = 0.25
SHORTFALL = 0.3


def valid_text(text: str) -> str:
    """`text` with every surrogate code point replaced by U+FFFD.

    A JSON `\\ud800` escape decodes to a lone surrogate, which no UTF-8 encoder accepts: the
    HTML sanitiser and the database driver would refuse it and end the whole fetch.
    """
    return _SURROGATES.sub("\ufffd", text)


def one_line(text: str) -> str:
    """`text` with control characters and line breaks gone and whitespace collapsed: safe for
    a header, a table cell or an attribute."""
    cleaned = "".join(" " if unicodedata.category(ch) in {"Cc", "Zl", "Zp"} else ch for ch in text)
    return " ".join(cleaned.split())


def safe_url(value: str, base: str, schemes: frozenset[str] = SAFE_SCHEMES) -> str:
    """Resolve `value` against `base`; empty if the result is not an allowed absolute URL."""
    value = value.strip()
    if not value or one_line(value) != value:
        return ""
    resolved = urljoin(base, value) if base else value
    parts = urlsplit(resolved)
    if parts.scheme.lower() not in schemes:
        return ""
    if parts.scheme.lower() != "mailto" and not parts.netloc:
        return ""
    return resolved


def plain_text(fragment: str) -> str:
    """Text of an HTML fragment (tags and script content gone), whitespace collapsed."""
    cleaned = nh3.clean(
        fragment, tags=set(), attributes={}, clean_content_tags=set(_DROP_WITH_CONTENT)
    )
    return one_line(html.unescape(cleaned))


def sanitise(fragment: str, base: str) -> str:
    """nh3 pass: keep paragraph structure, links and emphasis; drop everything dangerous."""

    def resolve(tag: str, attr: str, value: str) -> str | None:
        if tag == "a" and attr == "href":
            return safe_url(value, base) or None
        return value

    return nh3.clean(
        fragment,
        tags=set(_BLOCKS | _INLINE.keys() | {"br", "sup"}),
        attributes={"a": {"href"}},
        clean_content_tags=set(_DROP_WITH_CONTENT),
        url_schemes=set(SAFE_SCHEMES),
        attribute_filter=resolve,
        link_rel=None,
        strip_comments=True,
    )


@dataclass(frozen=True)
class _Run:
    text: str
    marks: tuple[tuple[str, str], ...]  # (tag, href) from the outermost inwards


class _Paragraphs(HTMLParser):
    """Reads sanitised HTML into paragraphs of inline runs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[list[_Run]] = []
        self._current: list[_Run] = []
        self._marks: list[tuple[str, str]] = []
        self._superscript: list[_Run] | None = None

    def _break(self) -> None:
        if "".join(run.text for run in self._current).strip():
            self.paragraphs.append(self._current)
        self._current = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCKS:
            self._break()
        elif tag == "sup":
            self._superscript = []
        elif tag == "br":
            self._current.append(_Run(" ", tuple(self._marks)))
        elif tag in _INLINE:
            href = (dict(attrs).get("href") or "") if tag == "a" else ""
            self._marks.append((_INLINE[tag], href))

    def handle_endtag(self, tag: str) -> None:
        if tag in _BLOCKS:
            self._break()
        elif tag == "sup" and self._superscript is not None:
            self._end_superscript(self._superscript)
        elif tag in _INLINE:
            wanted = _INLINE[tag]
            for index in range(len(self._marks) - 1, -1, -1):
                if self._marks[index][0] == wanted:
                    del self._marks[index]
                    break

    def handle_data(self, data: str) -> None:
        runs = self._current if self._superscript is None else self._superscript
        runs.append(_Run(data, tuple(self._marks)))

    def _end_superscript(self, runs: list[_Run]) -> None:
        """A footnote marker (a number after a word, a dagger) goes; an exponent stays."""
        self._superscript = None
        before = _text(self._current).rstrip()
        if _FOOTNOTE_MARK.match(_text(runs).strip()) and not before[-1:].isdigit():
            return
        self._current.extend(runs)

    def close(self) -> None:
        super().close()
        if self._superscript is not None:
            self._current.extend(self._superscript)
        self._break()


def _normalise(runs: Sequence[_Run]) -> list[_Run]:
    """Collapse whitespace across runs, as a browser would, and trim the paragraph's ends."""
    out: list[_Run] = []
    previous_space = True
    for run in runs:
        text = re.sub(r"\s+", " ", run.text)
        if previous_space:
            text = text.lstrip(" ")
        if not text:
            continue
        previous_space = text.endswith(" ")
        out.append(_Run(text, run.marks))
    while out and out[-1].text.endswith(" "):
        last = out.pop()
        if last.text.rstrip(" "):
            out.append(_Run(last.text.rstrip(" "), last.marks))
            break
    return out


def _text(runs: Sequence[_Run]) -> str:
    return "".join(run.text for run in runs)


def _slice(runs: Sequence[_Run], start: int, end: int) -> list[_Run]:
    """The runs' text from character `start` to `end`, each piece keeping its marks."""
    out: list[_Run] = []
    offset = 0
    for run in runs:
        piece = run.text[max(start - offset, 0) : max(end - offset, 0)]
        if piece:
            out.append(_Run(piece, run.marks))
        offset += len(run.text)
    return out


def _clean(runs: Sequence[_Run]) -> list[_Run]:
    """A paragraph without footnote markers, labels and bracketed ellipses; empty when it
    was only page furniture."""
    runs = [_Run(_FOOTNOTE.sub("", run.text), run.marks) for run in runs]
    runs = _normalise(runs)
    text = _text(runs)
    if _BOILERPLATE.match(text):
        return []
    lead = _LEADING_LABEL.match(text)
    start = lead.end() if lead else 0
    end = len(text)
    for pattern in (_TRAILING_LABEL, _BRACKETED_ELLIPSIS):
        found = pattern.search(text, start, end)
        if found:
            end = found.start()
    ellipsis = end < len(text) and bool(_CUT_SHORT.match(text, end))
    cleaned = _normalise(_slice(runs, start, end))
    if cleaned and ellipsis:
        cleaned.append(_Run("\u2026", ()))
    return cleaned


def _cut(paragraphs: Sequence[Sequence[_Run]], budget: int) -> list[list[_Run]]:
    """The paragraphs cut near `budget` words.

    Everything when it fits. Otherwise the last sentence end within the budget, when it
    leaves no more than a SHORTFALL of it unused; else the first sentence end within an
    OVERRUN past it; else exactly `budget` words and an ellipsis.
    """
    texts = [_text(runs) for runs in paragraphs]
    if sum(len(text.split()) for text in texts) <= budget:
        return [list(runs) for runs in paragraphs]
    ends: list[tuple[int, int, int]] = []  # (words so far, paragraph, character offset)
    before = 0
    for index, text in enumerate(texts):
        for match in _SENTENCE_END.finditer(text):
            ends.append((before + len(text[: match.end()].split()), index, match.end()))
        before += len(text.split())
    within = [end for end in ends if end[0] <= budget]
    beyond = [end for end in ends if budget < end[0] <= budget + int(budget * OVERRUN)]
    if within and within[-1][0] >= budget - int(budget * SHORTFALL):
        chosen = within[-1]
    elif beyond:
        chosen = beyond[0]
    else:
        return _forced(paragraphs, texts, budget)
    _words, index, offset = chosen
    return [*(list(runs) for runs in paragraphs[:index]), _slice(paragraphs[index], 0, offset)]


def _forced(
    paragraphs: Sequence[Sequence[_Run]], texts: Sequence[str], budget: int
) -> list[list[_Run]]:
    """Exactly `budget` words, ending in an ellipsis (no sentence ends near the budget)."""
    out: list[list[_Run]] = []
    remaining = max(budget, 1)
    for runs, text in zip(paragraphs, texts, strict=True):
        words = list(re.finditer(r"\S+", text))
        if len(words) < remaining:
            out.append(list(runs))
            remaining -= len(words)
            continue
        cut = _slice(runs, 0, words[remaining - 1].end())
        last = cut[-1]
        cut[-1] = _Run(last.text.rstrip(",;:\u2013\u2014-"), last.marks)
        out.append([*cut, _Run("\u2026", ())])
        break
    return out


def _serialise(runs: Iterable[_Run]) -> str:
    parts: list[str] = []
    open_marks: tuple[tuple[str, str], ...] = ()
    for run in runs:
        common = 0
        while (
            common < min(len(open_marks), len(run.marks))
            and open_marks[common] == run.marks[common]
        ):
            common += 1
        parts.extend(_close(open_marks[common:]))
        for tag, href in run.marks[common:]:
            if tag != "a":
                parts.append(f"<{tag}>")
            elif href:
                parts.append(f'<a href="{html.escape(href)}">')
        open_marks = run.marks
        parts.append(html.escape(run.text, quote=False))
    parts.extend(_close(open_marks))
    return "".join(parts)


def _close(marks: Sequence[tuple[str, str]]) -> list[str]:
    """Closing tags, innermost first; a link whose address was dropped was never opened."""
    return [f"</{tag}>" for tag, href in reversed(marks) if tag != "a" or href]


def make_teaser(fragment: str, base: str, word_budget: int) -> str:
    """The first paragraphs of `fragment` (at most three) cut near `word_budget` words, as
    sanitised HTML made of <p>, <a href>, <em> and <strong> only."""
    reader = _Paragraphs()
    reader.feed(sanitise(fragment, base))
    reader.close()
    paragraphs = [runs for runs in map(_clean, reader.paragraphs) if runs]
    chosen = _cut(paragraphs[:MAX_PARAGRAPHS], word_budget)
    body = "".join(f"<p>{_serialise(runs)}</p>" for runs in chosen)
    # A last nh3 pass costs little and keeps the promise independent of the code above.
    return nh3.clean(
        body,
        tags={"p", "a", "em", "strong"},
        attributes={"a": {"href"}},
        url_schemes=set(SAFE_SCHEMES),
        link_rel=None,
    )
