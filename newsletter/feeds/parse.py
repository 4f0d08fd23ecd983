"""Feed bytes to plain entries: RSS 0.9x/1.0/2.0 and Atom through feedparser, JSON Feed
through the json module (feedparser 6 cannot read it).

Nothing here touches the network or the database. A feed that cannot be read completely is
refused as a whole with one line, so a truncated download never turns into half a week of
articles.
"""

from __future__ import annotations

import calendar
import email.utils
import hashlib
import html
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from xml.parsers import expat
from zoneinfo import ZoneInfo

import feedparser

from newsletter.errors import FeedError
from newsletter.feeds.teasers import (
    IMAGE_SCHEMES,
    MediaImage,
    choose_image,
    make_teaser,
    one_line,
    plain_text,
    safe_url,
    valid_text,
)

MAX_KEY = 2000  # the width of articles.guid and articles.url
MRSS = "http://search.yahoo.com/mrss/}"
_ITEM_TAGS = frozenset(
    {
        "item",
        "http://purl.org/rss/1.0/}item",
        "http://my.netscape.com/rdf/simple/0.9/}item",
        "http://www.w3.org/2005/Atom}entry",
    }
)


@dataclass(frozen=True)
class FeedEntry:
    guid: str
    url: str
    title: str
    section: str
    kicker: str
    categories: tuple[str, ...]
    authors: tuple[str, ...]
    published_at: datetime | None  # aware UTC; None when the feed gives no date at all
    teaser_html: str
    image_url: str
    image_alt: str
    image_credit: str


@dataclass(frozen=True)
class ParsedFeed:
    title: str
    entries: tuple[FeedEntry, ...]
    skipped: int  # entries without a usable link or title


@dataclass(frozen=True)
class FeedOptions:
    sections: tuple[str, ...]
    zone: ZoneInfo
    teaser_words: int
    max_bytes: int


def parse_feed(data: bytes, source_url: str, options: FeedOptions) -> ParsedFeed:
    """Parse one feed document; `source_url` is where it came from (the base for relative
    links when it is http(s))."""
    if len(data) > options.max_bytes:
        raise FeedError(f"the feed is larger than {options.max_bytes} bytes")
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head:
        raise FeedError("the feed is empty")
    if head[:1] in (b"{", b"["):
        return _parse_json(head, source_url, options)
    return _parse_xml(data, source_url, options)


def _web_base(source_url: str, home: str) -> str:
    if safe_url(source_url, "", IMAGE_SCHEMES):
        return source_url
    return safe_url(home, "", IMAGE_SCHEMES)


def _section_key(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.casefold())


def _classify(categories: Sequence[str], sections: Sequence[str]) -> tuple[str, str]:
    """(section, kicker): the first category that names a configured section, and the first
    one that does not."""
    by_key = {_section_key(s): s for s in sections}
    section = next((by_key[k] for c in categories if (k := _section_key(c)) in by_key), "")
    kicker = next((c for c in categories if _section_key(c) not in by_key), "")
    return section, kicker


def _unique(values: Sequence[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for value in values:
        text = one_line(value)
        if text and text.casefold() not in {s.casefold() for s in seen}:
            seen[text] = None
    return tuple(seen)


def _key(value: str) -> str:
    """A guid short enough for the column; long ones are hashed rather than cut."""
    if len(value) <= MAX_KEY:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def parse_date(raw: str, zone: ZoneInfo) -> datetime | None:
    """RFC 822 or ISO 8601 text to aware UTC; a time without zone is read in `zone`."""
    text = raw.strip()
    if not text:
        return None
    moment: datetime | None = None
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
    if moment.tzinfo is None:
        explicit_utc = re.search(r"-0000\s*$", text) is not None
        moment = moment.replace(tzinfo=UTC if explicit_utc else zone)
    return moment.astimezone(UTC)


def _entry(
    *,
    guid: str,
    link: str,
    title: str,
    categories: Sequence[str],
    authors: Sequence[str],
    published_at: datetime | None,
    body: str,
    media: Sequence[MediaImage],
    media_alt: str,
    media_credit: str,
    base: str,
    options: FeedOptions,
) -> FeedEntry | None:
    guid, link, title, body, base = map(valid_text, (guid, link, title, body, base))
    categories = [valid_text(c) for c in categories]
    authors = [valid_text(a) for a in authors]
    media = [replace(m, url=valid_text(m.url)) for m in media]
    media_alt, media_credit = valid_text(media_alt), valid_text(media_credit)
    url = safe_url(link, base, IMAGE_SCHEMES)
    title = one_line(title)
    if not url or len(url) > MAX_KEY or not title:
        return None
    cats = _unique(categories)
    section, kicker = _classify(cats, options.sections)
    image = choose_image(media, [body], base, alt=media_alt, credit=media_credit)
    return FeedEntry(
        guid=_key(one_line(guid) or url),
        url=url,
        title=title,
        section=section,
        kicker=kicker,
        categories=cats,
        authors=_unique(authors),
        published_at=published_at,
        teaser_html=make_teaser(body, base, options.teaser_words),
        image_url=image.url if image else "",
        image_alt=one_line(image.alt) if image else "",
        image_credit=one_line(image.credit) if image else "",
    )


def _parse_xml(data: bytes, source_url: str, options: FeedOptions) -> ParsedFeed:
    # feedparser resolves xml:base and relative links against content-location; the
    # content type tells it to take the encoding from the document itself.
    headers = {"content-type": "application/xml"}
    if safe_url(source_url, "", IMAGE_SCHEMES):
        headers["content-location"] = source_url
    try:
        parsed = feedparser.parse(data, response_headers=headers)
    except ValueError as exc:  # its forgiving parser chokes on a reference to a surrogate
        raise FeedError(f"not a well-formed feed: {_first_line(exc)}") from None
    problem = parsed.get("bozo_exception")
    if parsed.get("bozo") and not isinstance(problem, feedparser.CharacterEncodingOverride):
        raise FeedError(f"not a well-formed feed: {_first_line(problem)}")
    if not parsed.get("version"):
        raise FeedError("not an RSS, Atom or JSON feed")
    feed = parsed.get("feed", {})
    base = _web_base(source_url, str(feed.get("link", "")))
    items = parsed.get("entries", [])
    descriptions = _media_descriptions(data, str(parsed.get("encoding", "")))
    if len(descriptions) != len(items):
        descriptions = [""] * len(items)
    entries: list[FeedEntry] = []
    skipped = 0
    for item, media_description in zip(items, descriptions, strict=True):
        entry = _xml_entry(item, media_description, base, options)
        if entry is None:
            skipped += 1
        else:
            entries.append(entry)
    return ParsedFeed(_xml_title(feed), tuple(entries), skipped)


def _xml_title(node: Mapping[str, Any]) -> str:
    title = valid_text(str(node.get("title", "")))
    detail = node.get("title_detail") or {}
    if "html" in str(detail.get("type", "")):
        return plain_text(title)
    return one_line(title)


def _media_descriptions(data: bytes, encoding: str) -> list[str]:
    """media:description per item, in document order.

    feedparser files media:description under the item's own summary or content, so the
    image's alt text would be mistaken for the article text; reading it here lets us keep
    the two apart. Empty when the document cannot be read this way (feedparser's more
    forgiving reading still stands).

    The text is decoded with the `encoding` feedparser found: expat reads no multi-byte
    encoding but UTF-8 and UTF-16 by itself (a gb2312 feed would raise ValueError), and
    handed a str it ignores the declaration and reads UTF-8.
    """
    found: list[str] = []
    state: dict[str, str | None] = {"item": None, "text": None}

    def start(name: str, _attrs: dict[str, str]) -> None:
        if name in _ITEM_TAGS:
            state["item"] = ""
        elif name == f"{MRSS}description" and state["item"] == "":
            state["text"] = ""

    def end(name: str) -> None:
        if name in _ITEM_TAGS:
            found.append(state["item"] or "")
            state["item"] = None
        elif name == f"{MRSS}description" and state["text"] is not None:
            state["item"] = state["text"] or ""
            state["text"] = None

    def text(data: str) -> None:
        if state["text"] is not None:
            state["text"] += data

    def refuse_entities(*_args: object) -> None:
        raise _EntitiesRefused

    parser = expat.ParserCreate(namespace_separator="}")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.EntityDeclHandler = refuse_entities
    try:
        parser.Parse(data.decode(encoding) if encoding else data, True)
    except (expat.ExpatError, _EntitiesRefused, LookupError, ValueError):
        return []
    return found


class _EntitiesRefused(Exception):
    """A DTD that declares entities: not worth the risk for an alt text."""


def _xml_entry(
    item: dict[str, Any], media_description: str, base: str, options: FeedOptions
) -> FeedEntry | None:
    media_text = media_description.strip()
    texts = [
        *(str(part.get("value", "")) for part in item.get("content", [])),
        str(item.get("summary", "")),
    ]
    body = next((t for t in texts if t.strip() and t.strip() != media_text), "")
    # dict.get: feedparser's own get() maps a missing `updated` to `published` with a
    # deprecation warning.
    dates = (dict.get(item, key) for key in ("published", "updated", "created"))
    published = parse_date(next((str(d) for d in dates if d), ""), options.zone)
    if published is None:
        parsed_time = dict.get(item, "published_parsed") or dict.get(item, "updated_parsed")
        if parsed_time:
            published = datetime.fromtimestamp(calendar.timegm(parsed_time), UTC)
    media = [
        *(_media(m) for m in item.get("media_content", [])),
        *(_media(m) for m in item.get("media_thumbnail", [])),
        *(
            MediaImage(str(e.get("href", "")), str(e.get("type", "")))
            for e in item.get("enclosures", [])
        ),
    ]
    credits = item.get("media_credit") or []
    credit = next((str(c.get("content", "")) for c in credits if c.get("content")), "")
    return _entry(
        guid=str(item.get("id", "")),
        link=str(item.get("link", "")),
        title=_xml_title(item),
        categories=[str(t.get("term") or t.get("label") or "") for t in item.get("tags", [])],
        authors=[str(a.get("name", "")) for a in item.get("authors", []) if a.get("name")],
        published_at=published,
        body=body,
        media=media,
        media_alt=plain_text(media_text),
        media_credit=plain_text(credit),
        base=base,
        options=options,
    )


def _media(node: Mapping[str, Any]) -> MediaImage:
    return MediaImage(
        url=str(node.get("url", "")),
        mime_type=str(node.get("type", "")),
        medium=str(node.get("medium", "")),
        width=str(node.get("width", "")),
        height=str(node.get("height", "")),
    )


def _parse_json(data: bytes, source_url: str, options: FeedOptions) -> ParsedFeed:
    try:
        document = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise FeedError("not a JSON feed: the document is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise FeedError(f"not a well-formed JSON feed: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(document, dict) or not str(document.get("version", "")).startswith(
        "https://jsonfeed.org/version/1"
    ):
        raise FeedError("not a JSON feed: no jsonfeed.org version")
    items = document.get("items")
    if not isinstance(items, list):
        raise FeedError("not a JSON feed: `items` is missing or not a list")
    base = _web_base(source_url, _text(document.get("home_page_url")))
    feed_authors = _json_authors(document)
    entries: list[FeedEntry] = []
    skipped = 0
    for item in items:
        entry = _json_entry(item, base, feed_authors, options) if isinstance(item, dict) else None
        if entry is None:
            skipped += 1
        else:
            entries.append(entry)
    title = one_line(valid_text(_text(document.get("title"))))
    return ParsedFeed(title, tuple(entries), skipped)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _json_authors(node: Mapping[str, Any]) -> list[str]:
    """JSON Feed 1.1 `authors`, or 1.0's single `author`."""
    authors = node.get("authors")
    if not isinstance(authors, list):
        authors = [node.get("author")]
    return [_text(a.get("name")) for a in authors if isinstance(a, dict) and a.get("name")]


def _json_entry(
    item: Mapping[str, Any], base: str, feed_authors: list[str], options: FeedOptions
) -> FeedEntry | None:
    body = _text(item.get("content_html")) or _text(item.get("summary"))
    if not body and (plain := _text(item.get("content_text"))):
        body = "".join(f"<p>{html.escape(p)}</p>" for p in re.split(r"\n\s*\n", plain))
    raw_id = item.get("id")
    guid = str(raw_id) if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) else ""
    images = [_text(item.get("image")), _text(item.get("banner_image"))]
    tags = item.get("tags")
    return _entry(
        guid=guid,
        link=_text(item.get("url")) or _text(item.get("external_url")),
        title=_text(item.get("title")),
        categories=[t for t in tags if isinstance(t, str)] if isinstance(tags, list) else [],
        authors=_json_authors(item) or feed_authors,
        published_at=parse_date(
            _text(item.get("date_published")) or _text(item.get("date_modified")), options.zone
        ),
        body=body,
        media=[MediaImage(url) for url in images if url],
        media_alt="",
        media_credit="",
        base=base,
        options=options,
    )


def _first_line(exc: object) -> str:
    text = str(exc or "").strip()
    return text.splitlines()[0] if text else type(exc).__name__
