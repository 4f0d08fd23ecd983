"""Per-reader sections on the wire: each reader gets the stories of the sections they chose,
rendered once per combination; readers whose sections have nothing in the issue get nothing.
Against a real SMTP server on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, update

from newsletter.app import App
from newsletter.clock import FixedClock
from newsletter.config import FeedSettings, Settings
from newsletter.db.models import (
    Delivery,
    DeliveryStatus,
    Issue,
    OverrideKind,
    Subscriber,
    Subscription,
    SubscriptionStatus,
)
from newsletter.delivery.send import SendOptions, dry_run, send_issue
from newsletter.delivery.stats import issue_stats
from newsletter.delivery.variants import NOTHING_IN_SECTIONS, combination
from newsletter.issue.overrides import add_override
from newsletter.issue.render import render_for_sections
from newsletter.mail.headers import Recipient
from newsletter.mail.message import IssueParts, MessageFactory
from newsletter.mail.tokens import Tokens
from newsletter.subscribers.rules import add

from .conftest import Cli
from .faultsmtp import FaultPolicy, FaultServer
from .sample_issue import sample_issue
from .smtp_server import SmtpServer
from .test_delivery import WEEK, built, smtp_app
from .test_faults import prepare
from .test_message import make_settings

FAST = SendOptions(rate=0, connections=2)
TEMPLATES = Path(__file__).parent.parent / "templates"
# The demo issue of 2024-W47 has stories in Europe, Middle East, Asia-Pacific and Americas;
# the tests feature one Asia-Pacific story and move one Americas story to Africa.
TOP_STORY = "3"  # "The Pacific's undersea cables are becoming a diplomatic asset"
TO_AFRICA = "10"  # "Andean trade ministers revive talks on a shared customs window"
READERS: dict[str, list[str] | None] = {
    "all@example.org": None,
    "europe@example.org": ["Europe"],
    "europe.lower@example.org": ["europe"],  # the same copy as Europe
    "two@example.org": ["Asia-Pacific", "Europe"],
    "two.reversed@example.org": ["Europe", "Asia-Pacific", "Europe"],  # the same again
    "africa@example.org": ["Africa"],
    "global@example.org": ["Global"],  # nothing in this issue
}


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with SmtpServer() as running:
        yield running


@pytest.fixture
def mailer(settings: Settings, clock: FixedClock, server: SmtpServer) -> Iterator[App]:
    """The test's application, sending to the loopback server."""
    application = smtp_app(settings, clock, server)
    yield application
    application.close()


def _readers(app: App, readers: dict[str, list[str] | None]) -> dict[str, int]:
    with app.transaction() as session:
        for email, sections in readers.items():
            add(session, email, name="Sam Reader", at=app.clock.now(), sections=sections)
        return dict(session.execute(select(Subscriber.email, Subscriber.id)).all())


def _edited(app: App) -> App:
    built(app)
    add_override(app, WEEK, TOP_STORY, OverrideKind.FEATURE)
    add_override(app, WEEK, TO_AFRICA, OverrideKind.SECTION, section="Africa")
    return app


def _stories(app: App) -> dict[str, str]:
    """Each story's title and section, as the issue was built."""
    with app.transaction() as session:
        issue = session.scalars(select(Issue)).one()
        moved = {o.article_id: o.section for o in issue.overrides if o.section}
        return {
            row.article.title: moved.get(row.article_id, row.article.section)
            for row in issue.articles
        }


def _part(message: EmailMessage, kind: str) -> str:
    body = message.get_body((kind,))
    assert isinstance(body, EmailMessage)
    return str(body.get_content()).replace("\r\n", "\n")


def _message(raw: bytes) -> EmailMessage:
    parsed = message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _preferences_url(app: App, subscriber_id: int) -> str:
    settings = app.settings
    token = Tokens(settings.secrets.secret_keys, settings.for_newsletter(None).list_id)
    return f"https://news.example.org/p/{token.preferences(subscriber_id)}"


def test_a_combination_is_the_same_whatever_the_order_or_spelling() -> None:
    known = FeedSettings().sections
    assert combination("asia-pacific\nEurope\n europe \n", known) == ("Europe", "Asia-Pacific")
    assert combination("Europe\nAsia-Pacific", known) == ("Europe", "Asia-Pacific")
    assert combination("", known) == combination("\n \n", known) == ()
    assert combination("Gone\nAfrica", known) == ("Africa", "Gone")  # unknown ones last


def test_a_copy_of_some_sections_has_their_stories_only_and_says_which() -> None:
    settings = make_settings()
    content = sample_issue()
    top = content.teasers[0]
    assert top.featured
    pick = next(t.section for t in content.teasers if t.section != top.section)
    copy = render_for_sections(content, settings, [TEMPLATES], (pick,))
    assert copy is not None
    assert copy.stories == sum(t.section == pick for t in content.teasers) > 0
    words = " ".join(copy.text.split())
    for teaser in content.teasers:
        assert (teaser.title in words) == (teaser.section == pick), teaser.title
    assert f"Your sections: {pick}\nChange them:\nNLP-PREFERENCES_URL-0D1C\n" in copy.text
    assert 'href="NLP-PREFERENCES_URL-0D1C-URI">Change</a>' in copy.html
    with_top = render_for_sections(content, settings, [TEMPLATES], (pick, top.section))
    assert with_top is not None
    assert top.title in " ".join(with_top.text.split())
    assert render_for_sections(content, settings, [TEMPLATES], ("Nowhere",)) is None


def test_each_reader_gets_the_stories_of_their_sections(
    settings: Settings, clock: FixedClock, server: SmtpServer, mailer: App
) -> None:
    app = _edited(mailer)
    ids = _readers(app, READERS)
    stories = _stories(app)
    assert stories["The Pacific's undersea cables are becoming a diplomatic asset"] == (
        "Asia-Pacific"
    )

    report = send_issue(app, WEEK, FAST)

    # Europe, Europe · Asia-Pacific and Africa: one render each, however many readers and
    # spellings; Global has no story and is never rendered.
    assert (report.sent, report.skipped, report.nothing_in_sections) == (6, 1, 1)
    assert report.renders == 3
    received = {r.recipient: r.message() for r in server.received}
    assert sorted(received) == sorted(e for e in READERS if e != "global@example.org")
    for email, sections in READERS.items():
        if email not in received or sections is None:
            continue
        wanted = set(combination("\n".join(sections), settings.feeds.sections))
        text = _part(received[email], "plain")
        html = _part(received[email], "html")
        shown = " \u00b7 ".join(combination("\n".join(sections), settings.feeds.sections))
        assert f"Your sections: {shown}\n" in text
        assert f"Your sections: {shown}" in html
        words = " ".join(text.split())  # titles may be wrapped
        for title, section in stories.items():
            assert (title in words) == (section in wanted), (email, title)
        link = _preferences_url(app, ids[email])
        assert f"Change them:\n{link}\n" in text
        assert html.count(f'href="{link}"') == 2  # "Change", and "Manage your subscription"
    # The top story goes only to readers of its section.
    top = "The Pacific's undersea cables are becoming a diplomatic asset"
    assert top in _part(received["two@example.org"], "plain")
    assert top not in _part(received["europe@example.org"], "plain")
    assert "1 story" in _part(received["africa@example.org"], "plain")

    # The reader with nothing in their sections is skipped, and says why.
    with app.transaction() as session:
        skipped = session.execute(
            select(Subscriber.email, Delivery.last_reply)
            .join(Delivery, Delivery.subscriber_id == Subscriber.id)
            .where(Delivery.status == DeliveryStatus.SKIPPED)
        ).all()
    assert [tuple(row) for row in skipped] == [("global@example.org", NOTHING_IN_SECTIONS)]
    (stats,) = issue_stats(app, WEEK)
    assert (stats.recipients, stats.sent, stats.skipped, stats.nothing_in_sections) == (7, 6, 1, 1)
    assert [(f.sections, f.recipients, f.sent, f.skipped) for f in stats.by_sections] == [
        ("all sections", 1, 1, 0),
        ("Europe", 2, 2, 0),
        ("Europe \u00b7 Asia-Pacific", 2, 2, 0),
        ("Africa", 1, 1, 0),
        ("Global", 1, 0, 1),
    ]


def test_a_reader_of_every_section_gets_the_stored_issue_unchanged(
    settings: Settings, clock: FixedClock, server: SmtpServer, mailer: App
) -> None:
    app = _edited(mailer)
    ids = _readers(app, {"all@example.org": None, "europe@example.org": ["Europe"]})
    report = send_issue(app, WEEK, FAST)
    assert (report.sent, report.renders) == (2, 1)
    with app.transaction() as session:
        issue = session.scalars(select(Issue)).one()
        parts = IssueParts(issue.id, issue.week, issue.subject, issue.html, issue.text)
    tokens = Tokens(app.settings.secrets.secret_keys, app.settings.list_id)
    factory = MessageFactory(app.settings, tokens, parts)
    recipient = Recipient(ids["all@example.org"], "all@example.org", "Sam Reader")
    expected = factory.build_reference(recipient, clock.now())
    (got,) = [r.message() for r in server.received if r.recipient == "all@example.org"]
    assert _part(got, "html") == _part(_message(expected.message), "html")
    assert _part(got, "plain") == _part(_message(expected.message), "plain")
    assert "Your sections" not in _part(got, "plain")
    assert _preferences_url(app, ids["all@example.org"]) in _part(got, "plain")


def test_leaving_the_newsletter_after_the_send_was_queued_is_honoured(
    server: SmtpServer, mailer: App
) -> None:
    """The address stays active (the reader may keep other newsletters); only the
    subscription to this one ends between the snapshot and the send."""
    app = built(mailer)
    ids = _readers(app, {f"r{n}@example.org": None for n in range(4)})
    stop = SendOptions(rate=0, connections=1)
    stop.stop.set()
    send_issue(app, WEEK, stop)  # the snapshot only
    with app.transaction() as session:
        session.execute(
            update(Subscription)
            .where(Subscription.subscriber_id == ids["r2@example.org"])
            .values(status=SubscriptionStatus.UNSUBSCRIBED)
        )
    report = send_issue(app, WEEK, FAST)
    assert (report.sent, report.skipped, report.nothing_in_sections) == (3, 1, 0)
    assert sorted(r.recipient for r in server.received) == [
        "r0@example.org",
        "r1@example.org",
        "r3@example.org",
    ]


def test_a_dry_run_renders_each_combination_once_and_counts_empty_ones(
    settings: Settings, clock: FixedClock, server: SmtpServer, mailer: App
) -> None:
    app = _edited(mailer)
    _readers(app, READERS)
    report = dry_run(app, WEEK)
    assert (report.recipients, report.sent, report.nothing_in_sections) == (7, 6, 1)
    assert report.renders == 3
    assert server.received == []


def test_the_send_and_stats_commands_report_readers_with_nothing_in_their_sections(
    cli: Cli, database_url: str, tmp_path: Path
) -> None:
    setup = prepare(cli, database_url, tmp_path, 12)
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            for n, sections in enumerate(["Europe", "Africa", "Global", "Europe\nAmericas"]):
                connection.execute(
                    update(Subscription)
                    .where(
                        Subscription.subscriber_id.in_(
                            select(Subscriber.id).where(
                                Subscriber.email.in_(setup.emails[n * 3 : n * 3 + 2])
                            )
                        )
                    )
                    .values(sections=sections)
                )
    finally:
        engine.dispose()
    sent = cli("send", "--week", str(WEEK), "--yes")
    assert sent.exit_code == 0, sent.output
    assert "4 readers: nothing in their sections." in sent.stdout
    assert "Copies rendered for readers' sections: 2." in sent.stdout
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 8
    table = cli("stats", "--week", str(WEEK))
    lines = [" ".join(line.split()) for line in table.stdout.splitlines()]
    assert "skipped 4" in lines
    assert "skipped: nothing in their sections 4" in lines
    assert "all sections 4 4 0" in lines
    assert "Europe \u00b7 Americas 2 2 0" in lines
    assert "Global 2 0 2" in lines


def test_several_senders_share_a_send_by_sections_exactly_once(
    cli: Cli, database_url: str, tmp_path: Path
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("several senders share a send on PostgreSQL only")
    setup = prepare(cli, database_url, tmp_path, 600)
    combinations = ["", "Europe", "Asia-Pacific\nEurope", "Americas", "Global"]
    engine = create_engine(setup.database_url)
    try:
        with engine.begin() as connection:
            ids = dict(connection.execute(select(Subscriber.email, Subscriber.id)).all())
            for n, email in enumerate(setup.emails):
                connection.execute(
                    update(Subscription)
                    .where(Subscription.subscriber_id == ids[email])
                    .values(sections=combinations[n % len(combinations)])
                )
    finally:
        engine.dispose()
    with FaultServer(FaultPolicy()) as server:
        senders = [setup.start(server.url, "--connections", "3", "--rate", "0") for _ in range(3)]
        results = [p.communicate(timeout=300) for p in senders]
        received = server.received()
    for process, (out, err) in zip(senders, results, strict=True):
        assert process.returncode == 0, out + err
        renders = re.search(r"Copies rendered for readers' sections: (\d+)\.", out)
        assert renders is None or int(renders[1]) <= 3, out
    copies = Counter(r.recipient for r in received)
    wanted = [e for n, e in enumerate(setup.emails) if combinations[n % 5] != "Global"]
    assert sorted(copies) == sorted(wanted)
    assert set(copies.values()) == {1}
    # Every reader got the copy of their own sections, whichever sender mailed it.
    shown = {"": None, "Europe": "Europe", "Asia-Pacific\nEurope": "Europe \u00b7 Asia-Pacific"}
    shown["Americas"] = "Americas"
    for n, email in enumerate(setup.emails):
        sections = combinations[n % 5]
        if sections == "Global":
            continue
        (message,) = [_message(r.content or b"") for r in received if r.recipient == email]
        text = _part(message, "plain")
        line = re.search(r"^Your sections: (.*)$", text, re.MULTILINE)
        assert (line and line[1]) == shown[sections], email
    outcomes = setup.outcomes()
    skipped = {e for e, o in outcomes.items() if o.status is DeliveryStatus.SKIPPED}
    assert skipped == set(setup.emails) - set(wanted)
    assert {outcomes[e].reply for e in skipped} == {NOTHING_IN_SECTIONS}
