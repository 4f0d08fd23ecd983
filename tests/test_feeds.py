"""Feed parsing: every format, the real-world feeds, dates and zones, and broken input."""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from newsletter.config import FeedSettings
from newsletter.errors import FeedError
from newsletter.feeds.parse import FeedOptions, parse_date, parse_feed
from newsletter.feeds.teasers import plain_text
from newsletter.issue.periods import Week

from .conftest import REPO, SHARED_FEEDS

NY = ZoneInfo("America/New_York")
OPTIONS = FeedOptions(
    sections=("Europe", "Middle East", "Asia-Pacific", "Americas"),
    zone=NY,
    teaser_words=60,
    max_bytes=1_000_000,
)
DEMO = REPO / "examples" / "feed.xml"


def shared(name: str) -> Path:
    path = SHARED_FEEDS / name
    if not path.is_file():
        pytest.skip(f"real-world feed {name} not found in {SHARED_FEEDS}")
    return path


# -- the real-world feeds -------------------------------------------------------------


def test_macworld_rss2_with_enclosures_and_categories() -> None:
    feed = parse_feed(shared("macworld.rss").read_bytes(), "https://www.macworld.com/feed", OPTIONS)
    assert feed.title == "Macworld"
    assert len(feed.entries) == 30
    first = feed.entries[0]
    assert first.title == "Best smart lock"
    assert first.authors == ("Christopher Null",)
    assert first.categories == ("Connected Home", "Bluetooth", "Home Tech")
    assert first.published_at == datetime(2017, 11, 28, 23, 40, tzinfo=UTC)
    assert first.image_url.startswith("https://images.idgesg.net/images/article/2017/08/")
    assert first.guid == first.url  # no <guid>: the link stands in
    assert all(e.url.startswith("https://") and e.published_at for e in feed.entries)
    assert sum(bool(e.image_url) for e in feed.entries) >= 20


def test_natasha_wordpress_content_encoded_and_many_categories() -> None:
    feed = parse_feed(
        shared("natasha.xml").read_bytes(), "https://www.natashatherobot.com/feed/", OPTIONS
    )
    assert len(feed.entries) == 10
    first = feed.entries[0]
    assert first.guid == "https://www.natashatherobot.com/?p=6602"
    assert first.url == "https://www.natashatherobot.com/url-apple-wallet-passkit-pass/"
    assert first.authors == ("Natasha Murashev",)
    assert "passkit" in first.categories
    assert first.kicker == "iPhone"  # not a configured section: kept, but not the section
    assert first.section == ""
    assert first.teaser_html.startswith('<p>For <a href="https://www.tryswift.co/')
    assert first.image_url.endswith(".png")  # the first image inside content:encoded


def test_bio_rss1_rdf_with_dc_date_and_creator() -> None:
    feed = parse_feed(shared("bio.rdf").read_bytes(), "http://connect.biorxiv.org/feed", OPTIONS)
    assert len(feed.entries) == 30
    first = feed.entries[0]
    assert first.title.startswith("Wheat inositol pyrophosphate kinase")
    assert first.authors[0].startswith("Kaur, M.")
    assert first.published_at is not None
    assert first.published_at.tzinfo is not None
    assert first.teaser_html.startswith("<p>Inositol pyrophosphates")


def test_inessential_json_feed_1_0() -> None:
    feed = parse_feed(
        shared("inessential.json").read_bytes(), "http://inessential.com/feed.json", OPTIONS
    )
    assert feed.title == "inessential.com"
    assert len(feed.entries) == 20
    first = feed.entries[0]
    assert first.title == "James Dempsey and the Breakpoints Benefit App Camp for Girls"
    assert first.authors == ("Brent Simmons",)  # the feed's author, as items have none
    assert first.published_at == datetime(2017, 6, 3, 5, 5, 47, tzinfo=UTC)
    assert '<a href="https://www.classy.org/events/-/e126329">' in first.teaser_html


# Figures from the real feeds at the default teaser length: entries, lead images found.
REAL_FEEDS = [
    ("bio.rdf", 30, 0),
    ("inessential.json", 20, 1),
    ("macworld.rss", 30, 30),
    ("natasha.xml", 10, 6),
]
PAGE_FURNITURE = ("read more", "continue reading", "to read this article", "appeared first on")


@pytest.mark.parametrize(("name", "entries", "images"), REAL_FEEDS)
def test_real_feeds_give_digest_teasers_and_their_images(
    name: str, entries: int, images: int
) -> None:
    defaults = FeedOptions(OPTIONS.sections, NY, FeedSettings().teaser_words, 1_000_000)
    feed = parse_feed(shared(name).read_bytes(), f"https://feeds.example.org/{name}", defaults)
    words = [len(plain_text(e.teaser_html).split()) for e in feed.entries]
    assert len(words) == entries
    assert 35 <= statistics.median(words) <= 42, words
    assert min(words) >= 10, words
    assert max(words) <= 50, words
    assert sum(bool(e.image_url) for e in feed.entries) == images
    for entry in feed.entries:
        text = plain_text(entry.teaser_html).casefold()
        assert not any(label in text for label in PAGE_FURNITURE), text
        assert "/emoji/" not in entry.image_url


def test_real_feeds_keep_the_natural_width_of_content_images() -> None:
    defaults = FeedOptions(OPTIONS.sections, NY, 40, 1_000_000)
    icon = parse_feed(shared("inessential.json").read_bytes(), "https://i.example.org/", defaults)
    assert [e.image_width for e in icon.entries if e.image_url] == [70]
    blog = parse_feed(shared("natasha.xml").read_bytes(), "https://n.example.org/", defaults)
    assert blog.entries[0].image_width == 503


def test_a_slideshow_description_still_gives_a_teaser() -> None:
    defaults = FeedOptions(OPTIONS.sections, NY, 40, 1_000_000)
    feed = parse_feed(shared("macworld.rss").read_bytes(), "https://m.example.org/", defaults)
    games = next(e for e in feed.entries if e.title.startswith("Play these 10 awesome"))
    assert games.teaser_html.startswith("<p>There\u2019s nothing more frustrating")


ITEM_IMAGES = b"""<?xml version="1.0"?>
<rss version="2.0"><channel><title>T</title><link>https://img.example.org/</link>
<description>d</description>
<image><url>https://img.example.org/logo.png</url><title>T</title><link>/</link></image>
<item><title>Plain</title><link>/a</link><description>Text.</description>
  <image>https://img.example.org/a.jpg</image></item>
<item><title>Both</title><link>/b</link><description>Text.</description>
  <image>https://img.example.org/b-small.jpg</image>
  <bigimage>https://img.example.org/b-big.jpg</bigimage></item>
<item><title>Nested</title><link>/c</link><description>Text.</description>
  <image><url>https://img.example.org/c.jpg</url></image></item>
<item><title>None</title><link>/d</link><description>Text.</description></item>
</channel></rss>"""


def test_image_and_bigimage_elements_of_an_item() -> None:
    feed = parse_feed(ITEM_IMAGES, "https://img.example.org/feed", OPTIONS)
    assert [e.image_url for e in feed.entries] == [
        "https://img.example.org/a.jpg",
        "https://img.example.org/b-big.jpg",
        "https://img.example.org/c.jpg",
        "",  # the channel's logo is nobody's lead image
    ]


def _in(url: str, *categories: str) -> bytes:
    tags = "".join(f"<category>{c}</category>" for c in categories)
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
        "<link>https://www.example.org/</link><description>d</description>"
        f"<item><title>A</title><link>{url}</link>{tags}<description>x</description></item>"
        "</channel></rss>"
    ).encode()


PATHS = replace(
    OPTIONS,
    section_paths=(
        ("/world/", "Americas"),
        ("/world/europe/", "Europe"),
        ("/mideast/", "Middle East"),
    ),
)


@pytest.mark.parametrize(
    ("url", "categories", "section", "kicker"),
    [
        # The URL path wins over a category that names another section.
        (
            "https://www.example.org/mideast/2024/story",
            ("Americas", "Analysis"),
            "Middle East",
            "Analysis",
        ),
        # The longest prefix wins.
        ("https://www.example.org/world/europe/story", (), "Europe", ""),
        ("https://www.example.org/World/story", (), "Americas", ""),
        # No prefix matches: the categories decide, as before.
        ("https://www.example.org/opinion/story", ("News", "Europe"), "Europe", "News"),
        ("https://www.example.org/opinion/story", ("News",), "", "News"),
    ],
)
def test_section_by_url_path_prefix(
    url: str, categories: tuple[str, ...], section: str, kicker: str
) -> None:
    entry = parse_feed(_in(url, *categories), "https://www.example.org/feed", PATHS).entries[0]
    assert (entry.section, entry.kicker) == (section, kicker)


# -- each format, written here ----------------------------------------------------------


RSS091 = b"""<?xml version="1.0"?>
<rss version="0.91"><channel><title>Old</title><link>https://old.example.org/</link>
<description>d</description><language>en</language>
<item><title>Ancient &amp; honest</title><link>/a/1</link>
<description>One. Two.</description></item>
</channel></rss>"""

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:media="http://search.yahoo.com/mrss/"
      xml:base="https://atom.example.org/">
  <title>Atom Mag</title><id>urn:x</id><updated>2024-11-20T10:00:00Z</updated>
  <link href="https://atom.example.org/"/>
  <entry>
    <title type="html">Talks &lt;em&gt;resume&lt;/em&gt; in Geneva</title>
    <id>tag:atom.example.org,2024:1</id>
    <link rel="alternate" href="/2024/11/talks"/>
    <published>2024-11-20T09:15:00+01:00</published>
    <updated>2024-11-21T09:15:00+01:00</updated>
    <author><name>Ana Ruiz</name></author><author><name>Ben Ode</name></author>
    <category term="europe"/><category term="News"/>
    <media:thumbnail url="/img/talks.jpg" width="600" height="400"/>
    <content type="html">&lt;p&gt;Delegates met again.
      &lt;a href="/more"&gt;More&lt;/a&gt; soon.&lt;/p&gt;</content>
  </entry>
</feed>"""

RSS2_ZONELESS = b"""<rss version="2.0"><channel><title>t</title><link>https://z.example.org/</link>
<item><title>Late Sunday</title><link>https://z.example.org/late</link>
<pubDate>Sun, 24 Nov 2024 23:30:00</pubDate><description>x</description></item>
<item><title>ISO without zone</title><link>https://z.example.org/iso</link>
<dc:date xmlns:dc="http://purl.org/dc/elements/1.1/">2024-11-24T23:30:00</dc:date></item>
</channel></rss>"""


def test_rss_091() -> None:
    feed = parse_feed(RSS091, "https://old.example.org/rss", OPTIONS)
    (entry,) = feed.entries
    assert entry.title == "Ancient & honest"
    assert entry.url == "https://old.example.org/a/1"
    assert entry.published_at is None  # no date at all: the store decides
    assert entry.teaser_html == "<p>One. Two.</p>"


def test_atom() -> None:
    feed = parse_feed(ATOM, "https://atom.example.org/feed.atom", OPTIONS)
    (entry,) = feed.entries
    assert entry.title == "Talks resume in Geneva"  # HTML title made plain text
    assert entry.guid == "tag:atom.example.org,2024:1"
    assert entry.url == "https://atom.example.org/2024/11/talks"
    assert entry.published_at == datetime(2024, 11, 20, 8, 15, tzinfo=UTC)
    assert entry.authors == ("Ana Ruiz", "Ben Ode")
    assert (entry.section, entry.kicker) == ("Europe", "News")
    assert entry.image_url == "https://atom.example.org/img/talks.jpg"
    assert 'href="https://atom.example.org/more"' in entry.teaser_html


def test_json_feed_1_1_with_authors_tags_and_image() -> None:
    document = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "JSON Mag",
        "home_page_url": "https://json.example.org/",
        "items": [
            {
                "id": 42,
                "url": "/2024/11/42",
                "title": "Ports <b>busy</b>",
                "content_text": "First para.\n\nSecond para.",
                "image": "/img/42.jpg",
                "date_published": "2024-11-19T07:00:00-05:00",
                "authors": [{"name": "Wei Goh"}, {"url": "https://x"}],
                "tags": ["Asia Pacific", "Analysis"],
            },
            {"id": "no-url", "title": "Dropped"},
            "not an object",
        ],
    }
    feed = parse_feed(json.dumps(document).encode(), "file:///tmp/feed.json", OPTIONS)
    assert feed.skipped == 2
    (entry,) = feed.entries
    assert entry.guid == "42"
    assert entry.url == "https://json.example.org/2024/11/42"
    assert entry.title == "Ports <b>busy</b>"  # JSON Feed titles are plain text, kept as such
    assert entry.teaser_html == "<p>First para.</p><p>Second para.</p>"
    assert entry.image_url == "https://json.example.org/img/42.jpg"
    assert entry.authors == ("Wei Goh",)
    assert (entry.section, entry.kicker) == ("Asia-Pacific", "Analysis")
    assert entry.published_at == datetime(2024, 11, 19, 12, 0, tzinfo=UTC)


def test_media_description_is_alt_text_not_the_article_text() -> None:
    feed = parse_feed(DEMO.read_bytes(), str(DEMO), OPTIONS)
    entry = feed.entries[0]
    assert entry.image_alt == "Storage tanks at a gas terminal on a grey coastline"
    assert entry.image_credit == "Lena Marchetti / Example Photo Agency"
    assert entry.teaser_html.startswith("<p>Storage sites across the continent")
    assert "grey coastline" not in entry.teaser_html


GB2312_RSS = (
    '<?xml version="1.0" encoding="gb2312"?>'
    '<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/"><channel>'
    "<title>每周新闻</title><link>https://cn.example.org/</link>"
    "<item><title>长江流域的新水坝</title><link>https://cn.example.org/a</link>"
    "<category>Asia-Pacific</category><pubDate>Wed, 20 Nov 2024 10:00:00 +0800</pubDate>"
    "<description>&lt;p&gt;水坝于上周完工。&lt;/p&gt;</description>"
    '<media:content url="https://cn.example.org/dam.jpg" medium="image">'
    "<media:description>黄昏时的水坝</media:description></media:content>"
    "</item></channel></rss>"
).encode("gb2312")


def test_gb2312_feed_with_a_media_description() -> None:
    feed = parse_feed(GB2312_RSS, "https://cn.example.org/rss", OPTIONS)
    assert feed.title == "每周新闻"
    (entry,) = feed.entries
    assert entry.title == "长江流域的新水坝"
    assert entry.teaser_html == "<p>水坝于上周完工。</p>"
    assert (entry.image_url, entry.image_alt) == ("https://cn.example.org/dam.jpg", "黄昏时的水坝")
    assert entry.section == "Asia-Pacific"


def test_lone_surrogates_in_a_json_feed_are_replaced_in_every_field() -> None:
    item = {
        "id": "id-\ud800",
        "url": "https://json.example.org/a-\udfff",
        "title": "x\ud800",
        "content_html": "<p>Body \udc80 text.</p>",
        "image": "https://json.example.org/i\ud800.jpg",
        "tags": ["Europe", "Tag\ud800"],
        "authors": [{"name": "Ann\udbff"}],
    }
    document = {"version": "https://jsonfeed.org/version/1.1", "title": "F\ud800", "items": [item]}
    data = json.dumps(document).encode()  # ASCII: the escapes reach json.loads as written
    feed = parse_feed(data, "https://json.example.org/feed.json", OPTIONS)
    (entry,) = feed.entries
    assert feed.title == "F\ufffd"
    assert entry.title == "x\ufffd"
    assert entry.teaser_html == "<p>Body \ufffd text.</p>"
    assert (entry.kicker, entry.authors) == ("Tag\ufffd", ("Ann\ufffd",))
    texts = [entry.guid, entry.url, entry.image_url, entry.title, entry.teaser_html, feed.title]
    for text in [*texts, *entry.categories, *entry.authors]:
        text.encode("utf-8")  # raises on any surrogate left


def test_a_reference_to_a_surrogate_in_xml_is_one_clear_line() -> None:
    data = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title><item>'
        b"<title>x&#xD800;</title><link>https://e.example.org/a</link></item></channel></rss>"
    )
    with pytest.raises(FeedError, match="not a well-formed feed"):
        parse_feed(data, "https://e.example.org/rss", OPTIONS)


# -- dates and zones ----------------------------------------------------------------------


def test_zoneless_dates_are_read_in_the_configured_zone() -> None:
    feed = parse_feed(RSS2_ZONELESS, "https://z.example.org/rss", OPTIONS)
    late = datetime(2024, 11, 25, 4, 30, tzinfo=UTC)  # Sunday 23:30 in New York
    assert [e.published_at for e in feed.entries] == [late, late]
    for entry in feed.entries:
        assert entry.published_at is not None
        assert Week.containing(entry.published_at, NY) == Week(2024, 47)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Sun, 24 Nov 2024 23:30:00 -0500", datetime(2024, 11, 25, 4, 30, tzinfo=UTC)),
        ("Sun, 24 Nov 2024 23:30:00 GMT", datetime(2024, 11, 24, 23, 30, tzinfo=UTC)),
        ("Sun, 24 Nov 2024 23:30:00 -0000", datetime(2024, 11, 24, 23, 30, tzinfo=UTC)),
        ("2024-11-24T23:30:00Z", datetime(2024, 11, 24, 23, 30, tzinfo=UTC)),
        ("2024-07-01T12:00:00", datetime(2024, 7, 1, 16, 0, tzinfo=UTC)),  # EDT, not EST
        ("2024-11-24", datetime(2024, 11, 24, 5, 0, tzinfo=UTC)),
        ("next tuesday", None),
        ("", None),
    ],
)
def test_parse_date(raw: str, expected: datetime | None) -> None:
    assert parse_date(raw, NY) == expected


# -- broken input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"<html><body><p>Not a feed</p></body></html>", "not"),
        (b"\x00\x01\x02binary\xff\xfe", "not"),
        (b"plain words, no markup", "not"),
        (b'{"version": "https://jsonfeed.org/version/1", "items": [', "JSON"),
        (b'{"title": "no version"}', "JSON feed"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": 3}', "items"),
        (b"[1, 2]", "JSON feed"),
        (b"\xff\xfe{}", "not"),
    ],
)
def test_broken_input_is_one_clear_line(data: bytes, message: str) -> None:
    with pytest.raises(FeedError) as caught:
        parse_feed(data, "https://x.example/feed", OPTIONS)
    assert message.lower() in caught.value.message.lower()
    assert "\n" not in caught.value.message


def test_truncated_feed_is_refused_as_a_whole() -> None:
    data = DEMO.read_bytes()
    with pytest.raises(FeedError, match="well-formed"):
        parse_feed(data[: len(data) // 2], str(DEMO), OPTIONS)


def test_oversized_feed_is_refused_before_parsing() -> None:
    small = FeedOptions(OPTIONS.sections, NY, 60, max_bytes=1000)
    with pytest.raises(FeedError, match="larger than 1000 bytes"):
        parse_feed(DEMO.read_bytes(), str(DEMO), small)


def test_entity_expansion_is_not_a_bomb() -> None:
    bomb = b"""<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>
<rss version="2.0"><channel><title>&d;</title><link>https://b.example/</link>
<item><title>t</title><link>https://b.example/1</link></item></channel></rss>"""
    try:
        feed = parse_feed(bomb, "https://b.example/rss", OPTIONS)
    except FeedError:
        return
    assert len(feed.title) < 20_000


# -- the demo feed --------------------------------------------------------------------------


def test_demo_feed_shape() -> None:
    defaults = FeedOptions(OPTIONS.sections, NY, FeedSettings().teaser_words, 1_000_000)
    feed = parse_feed(DEMO.read_bytes(), str(DEMO), defaults)
    assert 14 <= len(feed.entries) <= 18
    assert feed.skipped == 0
    start, end = Week(2024, 47).bounds(NY)
    inside = [e for e in feed.entries if e.published_at and start <= e.published_at < end]
    assert 10 <= len(inside) <= 12
    assert len(feed.entries) - len(inside) >= 2
    assert {e.section for e in feed.entries} == {
        "Europe",
        "Middle East",
        "Asia-Pacific",
        "Americas",
    }
    assert {e.kicker for e in feed.entries} == {"Analysis", "News"}
    for entry in feed.entries:
        assert entry.authors
        assert entry.image_url.startswith("https://images.example.org/")
        assert entry.image_alt
        assert entry.image_credit
        paragraphs = entry.teaser_html.count("<p>")
        assert paragraphs in (1, 2, 3), entry.teaser_html  # a digest teaser, not an article
        assert 25 <= len(re.sub(r"<[^>]+>", " ", entry.teaser_html).split()) <= 50
    sunday = [e for e in inside if e.published_at and e.published_at.astimezone(NY).hour == 23]
    assert sunday
    assert sunday[0].published_at is not None
    assert sunday[0].published_at.weekday() == 0  # Monday in UTC, still in the week


def test_titles_authors_and_credits_are_single_lines() -> None:
    data = (
        b'<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>M'
        b"&#13;&#10;ag</title><item><title>Head&#13;&#10;Bcc: x@example.net&#x2028;end</title>"
        b"<link>https://m.example.org/a</link><dc:creator>Ana&#10;Ruiz</dc:creator>"
        b"<description>x</description></item></channel></rss>"
    )
    feed = parse_feed(data, "https://m.example.org/rss", OPTIONS)
    (entry,) = feed.entries
    assert feed.title == "M ag"
    assert entry.title == "Head Bcc: x@example.net end"
    assert entry.authors == ("Ana Ruiz",)
