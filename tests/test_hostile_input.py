"""Hostile input: whatever bytes arrive as a subscriber list or a feed, the result is a report
or one of our own errors, never a traceback, never half a write, never a line break that
could reach a mail header, and never unbounded memory.
"""

from __future__ import annotations

import gzip
import json
import threading
import unicodedata
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from newsletter.app import App
from newsletter.db.models import Event, Subscriber, SubscriberStatus
from newsletter.errors import FeedError, InputError
from newsletter.feeds.fetch import HttpFetcher, Validators
from newsletter.feeds.parse import FeedOptions, ParsedFeed, parse_feed
from newsletter.subscribers.csv import ImportReport, import_csv
from newsletter.subscribers.rules import add_address, unsubscribe_address

from .conftest import Cli

# Function-scoped fixtures are shared by every example on purpose: the database keeps what
# earlier examples imported, and each example checks only what it changed itself.
BOUNDED = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
LINE_BREAKS = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
HOSTILE_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from([*LINE_BREAKS, '"', ",", ";", "\t", "=", "@", "\\", "\0", "\ufeff"]),
        st.characters(codec="utf-8"),
    ),
    max_size=60,
)
FORMULAS = st.sampled_from(
    ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", '=HYPERLINK("http://x")']
)
OPTIONS = FeedOptions(
    sections=("Europe", "Middle East", "Asia-Pacific", "Americas"),
    zone=ZoneInfo("America/New_York"),
    teaser_words=90,
    max_bytes=2_000_000,
)


def _counts(app: App) -> tuple[int, int, dict[str, SubscriberStatus]]:
    with app.sessions() as session:
        subscribers = session.scalar(select(func.count()).select_from(Subscriber)) or 0
        events = session.scalar(select(func.count()).select_from(Event)) or 0
        statuses = dict(session.execute(select(Subscriber.email, Subscriber.status)).all())
    return subscribers, events, statuses


def _import(app: App, path: Path) -> ImportReport | InputError:
    try:
        return import_csv(app, path)
    except InputError as exc:
        return exc


def _seed(app: App) -> None:
    add_address(app, "keep@example.org", "Kept")
    add_address(app, "gone@example.org", "Gone")
    unsubscribe_address(app, "gone@example.org", source="test")


@st.composite
def csv_documents(draw: st.DrawFn) -> bytes:
    """Something shaped like a subscriber CSV, with hostile cells, delimiters and encodings."""
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    columns = draw(
        st.lists(
            st.sampled_from(["email", "name", "status", "subscribed_at", "extra", "EMAIL", ""]),
            min_size=1,
            max_size=5,
        )
    )
    cell = st.one_of(
        HOSTILE_TEXT,
        FORMULAS,
        st.emails().map(str),
        st.sampled_from(["gone@example.org", "KEEP@example.org", "active", "bounced", "2024-W1"]),
        st.sampled_from(["x" * 300, "a@" + "b" * 300 + ".org"]),
    )
    rows = draw(st.lists(st.lists(cell, min_size=0, max_size=6), max_size=12))

    def line(values: list[str]) -> str:
        quoted = draw(st.booleans())
        if quoted:
            return delimiter.join('"' + v.replace('"', '""') + '"' for v in values)
        return delimiter.join(values)

    text = "\n".join([line(columns), *(line(r) for r in rows)])
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16", "cp1252"]))
    data = text.encode(encoding, errors="replace")
    if draw(st.booleans()):
        junk = draw(st.binary(max_size=20))
        at = draw(st.integers(0, len(data)))
        data = data[:at] + junk + data[at:]
    return data


@BOUNDED
@given(data=st.one_of(st.binary(max_size=3000), csv_documents()))
def test_any_csv_bytes_give_a_report_or_an_input_error_and_no_partial_write(
    app: App, tmp_path: Path, data: bytes
) -> None:
    if not _counts(app)[0]:
        _seed(app)
    path = tmp_path / "hostile.csv"
    path.write_bytes(data)
    before = _counts(app)
    report = _import(app, path)
    if isinstance(report, InputError):
        assert report.message.strip()
        assert "\n" not in report.message
        assert _counts(app) == before, "a refused file must change nothing"
        return
    subscribers, _, statuses = _counts(app)
    assert subscribers == before[0] + report.added
    assert statuses["gone@example.org"] is SubscriberStatus.UNSUBSCRIBED
    for line, reason in report.reasons:
        assert line >= 2
        assert reason.strip()
    with app.sessions() as session:
        for name in session.scalars(select(Subscriber.name)):
            assert not any(ch in name for ch in LINE_BREAKS), repr(name)


def test_a_broken_line_after_thousands_of_good_rows_changes_nothing(
    app: App, tmp_path: Path
) -> None:
    """The import streams in batches; a fault found after several batches must still roll
    every one of them back."""
    _seed(app)
    good = "".join(f"reader{i}@example.com,Reader {i}\n" for i in range(5000))
    path = tmp_path / "late.csv"
    path.write_text(f'email,name\n{good}broken@example.com,"never closed\n', encoding="utf-8")
    before = _counts(app)
    with pytest.raises(InputError, match="line"):
        import_csv(app, path)
    assert _counts(app) == before


@pytest.mark.parametrize("size", [10_000, 200_000, 5_000_000])
def test_very_long_fields_are_bounded(app: App, tmp_path: Path, size: int) -> None:
    path = tmp_path / "long.csv"
    path.write_text(
        f"email,name\nlong@example.org,{'N' * size}\nshort@example.org,Short\n",
        encoding="utf-8",
    )
    before = _counts(app)
    report = _import(app, path)
    if isinstance(report, InputError):
        assert "line 2" in report.message
        assert _counts(app) == before
        return
    assert report.invalid == 1
    assert report.reasons[0][0] == 2
    assert report.added == 1


def test_hostile_files_through_the_cli_print_one_line(cli: Cli, tmp_path: Path) -> None:
    samples = {
        "binary.csv": bytes(range(256)) * 40,
        "noheader.csv": b"someone@example.org,Someone\n",
        "semicolon.csv": "email;name\nsemi@example.org;S\xe9mi\n".encode("cp1252"),
        "formula.csv": b"email,name\nf@example.org,\"=cmd|' /C calc'!A0\"\n",
        "unclosed.csv": b'email,name\nq@example.org,"open\n',
        "empty.csv": b"",
        "utf16.csv": "email,name\nw@example.org,W\n".encode("utf-16"),
    }
    assert cli("init").exit_code == 0
    for name, data in samples.items():
        path = tmp_path / name
        path.write_bytes(data)
        result = cli("subscribers", "import", str(path))
        assert result.exit_code in (0, 1), (name, result.output)
        assert "Traceback" not in result.output
        if result.exit_code == 1:
            assert len(result.output.strip().splitlines()) == 1, (name, result.output)


def test_a_name_with_line_breaks_never_keeps_them(app: App, tmp_path: Path) -> None:
    path = tmp_path / "inject.csv"
    path.write_bytes(
        b'email,name\ninject@example.org,"Eve\r\nBcc: victim@example.net"\n'
        b"sep@example.org,Eve\xe2\x80\xa8Bcc: victim@example.net\n"
    )
    report = import_csv(app, path)
    assert report.added == 2
    with app.sessions() as session:
        names = set(session.scalars(select(Subscriber.name)))
    assert names == {"Eve Bcc: victim@example.net"}


# ---------------------------------------------------------------- feeds


def _feed_strings(parsed: ParsedFeed) -> Iterator[tuple[str, str]]:
    yield "feed title", parsed.title
    for entry in parsed.entries:
        yield "title", entry.title
        yield "url", entry.url
        yield "guid", entry.guid
        yield "section", entry.section
        yield "kicker", entry.kicker
        yield "image_url", entry.image_url
        yield "image_alt", entry.image_alt
        yield "image_credit", entry.image_credit
        for author in entry.authors:
            yield "author", author


def _check_parsed(parsed: ParsedFeed) -> None:
    for field, value in _feed_strings(parsed):
        breaks = [ch for ch in value if ch in LINE_BREAKS or unicodedata.category(ch) == "Cc"]
        assert not breaks, f"{field} keeps {breaks!r}: {value!r}"
    for entry in parsed.entries:
        lowered = entry.teaser_html.lower()
        assert "<script" not in lowered
        assert "javascript:" not in lowered
        assert entry.url.startswith(("http://", "https://"))


def _parse(data: bytes, source: str = "feed.xml") -> ParsedFeed | None:
    try:
        parsed = parse_feed(data, source, OPTIONS)
    except FeedError as exc:
        error = exc.message
    else:
        _check_parsed(parsed)
        return parsed
    assert error.strip()
    return None


XML_TEXT = HOSTILE_TEXT.map(
    lambda s: s.replace("&", "&amp;").replace("<", "&lt;").replace("\0", "")
)


@st.composite
def rss_documents(draw: st.DrawFn) -> bytes:
    items = []
    for _ in range(draw(st.integers(0, 4))):
        title = draw(st.one_of(XML_TEXT, st.just("Headline&#13;&#10;Bcc: victim@example.net")))
        link = draw(
            st.sampled_from(
                [
                    "https://magazine.example.org/a",
                    "/relative/path",
                    "javascript:alert(1)",
                    "data:text/html,x",
                    "",
                ]
            )
        )
        body = draw(
            st.sampled_from(
                [
                    "&lt;p&gt;Fine &lt;b&gt;text&lt;/b&gt;.&lt;/p&gt;",
                    "&lt;script&gt;alert(1)&lt;/script&gt;&lt;p onclick=x&gt;y&lt;/p&gt;",
                    '&lt;a href="javascript:alert(1)"&gt;z&lt;/a&gt;',
                    "<![CDATA[<p><img src=x onerror=alert(1)>Unclosed <i>tag",
                ]
            )
        )
        author = draw(XML_TEXT)
        category = draw(st.one_of(XML_TEXT, st.sampled_from(["Europe", "Analysis"])))
        date = draw(
            st.sampled_from(
                ["Mon, 18 Nov 2024 10:00:00 +0000", "2024-11-18T10:00:00", "not a date", ""]
            )
        )
        items.append(
            f"<item><title>{title}</title><link>{link}</link><description>{body}"
            f"</description><author>{author}</author><category>{category}</category>"
            f"<pubDate>{date}</pubDate></item>"
        )
    channel = draw(XML_TEXT)
    document = (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>{channel}</title><link>https://magazine.example.org/</link>"
        f"{''.join(items)}</channel></rss>"
    ).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        document = document[: draw(st.integers(0, len(document)))]
    return document


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | HOSTILE_TEXT,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["title", "url", "id", "content_html", "tags", "authors", "name"]),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@st.composite
def json_feeds(draw: st.DrawFn) -> bytes:
    items = draw(
        st.lists(
            st.one_of(
                JSON_VALUES,
                st.fixed_dictionaries(
                    {
                        "id": st.one_of(st.text(max_size=5), st.integers(), st.booleans()),
                        "url": st.sampled_from(
                            ["https://magazine.example.org/j", "javascript:x", "/r", 3]
                        ),
                        "title": st.one_of(HOSTILE_TEXT, st.integers()),
                        "content_html": st.one_of(HOSTILE_TEXT, st.just("<script>x</script>")),
                        "tags": JSON_VALUES,
                        "authors": JSON_VALUES,
                        "date_published": st.one_of(HOSTILE_TEXT, st.just("2024-11-18T10:00Z")),
                    }
                ),
            ),
            max_size=4,
        )
    )
    document = {
        "version": draw(st.sampled_from(["https://jsonfeed.org/version/1.1", "1", ""])),
        "title": draw(JSON_VALUES),
        "items": items if draw(st.booleans()) else draw(JSON_VALUES),
    }
    return json.dumps(document).encode("utf-8")


@BOUNDED
@given(data=st.one_of(st.binary(max_size=2000), rss_documents(), json_feeds()))
def test_any_feed_bytes_give_entries_or_a_feed_error(data: bytes) -> None:
    _parse(data)


TITLE_INJECTION = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>Mag&#13;&#10;azine</title>'
    b"<item><title>Head&#13;&#10;Bcc: victim@example.net</title>"
    b"<link>https://magazine.example.org/a</link><description>x</description></item>"
    b"</channel></rss>"
)


@pytest.mark.parametrize("source", ["feed.xml", "https://magazine.example.org/feed.xml"])
def test_feed_titles_with_line_breaks_reach_no_header(source: str) -> None:
    parsed = _parse(TITLE_INJECTION, source)
    assert parsed is not None, "a well-formed feed was refused"
    assert parsed.title == "Mag azine"
    assert [e.title for e in parsed.entries] == ["Head Bcc: victim@example.net"]


def test_a_50_mb_feed_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "huge.xml"
    with path.open("wb") as handle:
        handle.write(b'<?xml version="1.0"?><rss version="2.0"><channel>')
        chunk = b"<item><title>x</title><link>https://e.org/</link></item>" * 10_000
        while handle.tell() < 50_000_000:
            handle.write(chunk)
    fetcher = HttpFetcher(timeout=5, max_bytes=20_000_000)
    with pytest.raises(FeedError, match="larger than 20000000 bytes"):
        fetcher.fetch(str(path), Validators())
    with pytest.raises(FeedError, match="larger than"):
        parse_feed(path.read_bytes(), str(path), OPTIONS)


class _HugeFeed(BaseHTTPRequestHandler):
    """Serves 50 MB without Content-Length, or a small gzip body that inflates to 50 MB."""

    sent = 0

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml")
        self.send_header("Connection", "close")
        if self.path == "/bomb":
            body = gzip.compress(b" " * 50_000_000, compresslevel=9)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.end_headers()
        chunk = b"<!-- padding -->" * 4096
        try:
            for _ in range(50_000_000 // len(chunk)):
                self.wfile.write(chunk)
                type(self).sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            return

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def huge_feed_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HugeFeed)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.mark.parametrize("path", ["/stream", "/bomb"])
def test_a_50_mb_feed_over_http_is_cut_off_at_the_cap(huge_feed_server: str, path: str) -> None:
    _HugeFeed.sent = 0
    fetcher = HttpFetcher(timeout=10, max_bytes=2_000_000)
    with pytest.raises(FeedError, match="larger than 2000000 bytes"):
        fetcher.fetch(huge_feed_server + path, Validators())
    if path == "/stream":
        assert _HugeFeed.sent < 20_000_000, "the client went on reading past the cap"
