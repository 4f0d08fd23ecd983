"""Teasers and lead images, made from whatever HTML a feed carries.

Feed HTML is untrusted: it is sanitised with nh3 down to paragraphs, links and emphasis, and
only then cut to the word budget. The cut is made on our own small tree of paragraphs and
inline runs, which we serialise ourselves, so an excerpt can never end inside a tag or leave
one open.
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
    {"p", "div", "li", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article"}
)
_INLINE = {"a": "a", "em": "em", "i": "em", "strong": "strong", "b": "strong"}
_DROP_WITH_CONTENT = frozenset(
    {
        "script",
        "style",
        "figure",
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
_BOILERPLATE = re.compile(
    r"^(continue reading|read more|to read this article in full|the post .* appeared first on)",
    re.IGNORECASE,
)


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
        tags=set(_BLOCKS | _INLINE.keys() | {"br"}),
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

    def _break(self) -> None:
        if "".join(run.text for run in self._current).strip():
            self.paragraphs.append(self._current)
        self._current = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCKS:
            self._break()
        elif tag == "br":
            self._current.append(_Run(" ", tuple(self._marks)))
        elif tag in _INLINE:
            href = (dict(attrs).get("href") or "") if tag == "a" else ""
            self._marks.append((_INLINE[tag], href))

    def handle_endtag(self, tag: str) -> None:
        if tag in _BLOCKS:
            self._break()
        elif tag in _INLINE:
            wanted = _INLINE[tag]
            for index in range(len(self._marks) - 1, -1, -1):
                if self._marks[index][0] == wanted:
                    del self._marks[index]
                    break

    def handle_data(self, data: str) -> None:
        self._current.append(_Run(data, tuple(self._marks)))

    def close(self) -> None:
        super().close()
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


def _truncate(runs: Sequence[_Run], length: int) -> list[_Run]:
    out: list[_Run] = []
    for run in runs:
        if length <= 0:
            break
        out.append(_Run(run.text[:length], run.marks))
        length -= len(run.text)
    return out


def _cut(runs: Sequence[_Run], budget: int, *, forced: bool) -> list[_Run]:
    """The longest run of whole sentences within `budget` words; with `forced`, at least
    `budget` words followed by an ellipsis when no sentence fits."""
    text = _text(runs)
    best = 0
    for match in _SENTENCE_END.finditer(text):
        if len(text[: match.end()].split()) > budget:
            break
        best = match.end()
    if best:
        return _truncate(runs, best)
    if not forced or budget <= 0:
        return []
    words = list(re.finditer(r"\S+", text))
    end = words[min(budget, len(words)) - 1].end()
    cut = _truncate(runs, end)
    return [*cut, _Run("\u2026", ())]


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
    """The first paragraphs of `fragment` (at most three) within `word_budget` words, as
    sanitised HTML made of <p>, <a href>, <em> and <strong> only."""
    reader = _Paragraphs()
    reader.feed(sanitise(fragment, base))
    reader.close()
    chosen: list[list[_Run]] = []
    remaining = word_budget
    for raw in reader.paragraphs:
        runs = _normalise(raw)
        text = _text(runs)
        if not text or _BOILERPLATE.match(text):
            continue
        words = len(text.split())
        if words <= remaining:
            chosen.append(runs)
            remaining -= words
        else:
            cut = _cut(runs, remaining, forced=not chosen)
            if cut:
                chosen.append(cut)
            break
        if len(chosen) == MAX_PARAGRAPHS or remaining <= 0:
            break
    body = "".join(f"<p>{_serialise(runs)}</p>" for runs in chosen)
    # A last nh3 pass costs little and keeps the promise independent of the code above.
    return nh3.clean(
        body,
        tags={"p", "a", "em", "strong"},
        attributes={"a": {"href"}},
        url_schemes=set(SAFE_SCHEMES),
        link_rel=None,
    )


@dataclass(frozen=True)
class Image:
    url: str
    alt: str = ""
    credit: str = ""


@dataclass(frozen=True)
class MediaImage:
    """An image named by the feed itself (media:content, media:thumbnail or an enclosure)."""

    url: str
    mime_type: str = ""
    medium: str = ""
    width: str = ""
    height: str = ""


def is_tracking_pixel(width: str, height: str) -> bool:
    def tiny(value: str) -> bool:
        digits = value.strip().lower().removesuffix("px")
        return digits.isdigit() and int(digits) <= 2

    return tiny(width) or tiny(height)


def _is_image(media: MediaImage) -> bool:
    if media.medium and media.medium.lower() != "image":
        return False
    return not media.mime_type or media.mime_type.lower().startswith("image/")


class _FirstImage(HTMLParser):
    """Finds the first real image in article HTML, with its alt text and figure caption."""

    def __init__(self, base: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base = base
        self.found: Image | None = None
        self._in_figure = 0
        self._figure_image: Image | None = None
        self._caption: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "figure":
            self._in_figure += 1
        elif tag == "figcaption" and self._figure_image is not None:
            self._caption = []
        elif tag == "img" and self.found is None and self._figure_image is None:
            url = safe_url(values.get("src", ""), self.base, IMAGE_SCHEMES)
            if not url or is_tracking_pixel(values.get("width", ""), values.get("height", "")):
                return
            image = Image(url, one_line(values.get("alt", "")))
            if self._in_figure:
                self._figure_image = image
            else:
                self.found = image

    def handle_endtag(self, tag: str) -> None:
        if tag == "figcaption" and self._caption is not None and self._figure_image:
            caption = one_line("".join(self._caption))
            self._figure_image = Image(self._figure_image.url, self._figure_image.alt, caption)
            self._caption = None
        elif tag == "figure" and self._in_figure:
            self._in_figure -= 1
            if self._figure_image is not None and self.found is None:
                self.found = self._figure_image
            self._figure_image = None

    def handle_data(self, data: str) -> None:
        if self._caption is not None:
            self._caption.append(data)

    def close(self) -> None:
        super().close()
        if self.found is None:
            self.found = self._figure_image


def first_content_image(fragment: str, base: str) -> Image | None:
    reader = _FirstImage(base)
    reader.feed(fragment)
    reader.close()
    return reader.found


def choose_image(
    media: Sequence[MediaImage],
    content_fragments: Sequence[str],
    base: str,
    *,
    alt: str = "",
    credit: str = "",
) -> Image | None:
    """The lead image: the feed's own media first (in the order given), else the first image
    in the content. `alt` and `credit` come from media:description and media:credit; a
    figure's alt text and caption fill whatever they leave empty."""
    for item in media:
        url = safe_url(item.url, base, IMAGE_SCHEMES)
        if url and _is_image(item) and not is_tracking_pixel(item.width, item.height):
            return Image(url, alt, credit)
    for fragment in content_fragments:
        found = first_content_image(fragment, base)
        if found is not None:
            return Image(found.url, alt or found.alt, credit or found.credit)
    return None
