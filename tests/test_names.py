"""A subscriber's display name is text for people: whatever a stranger puts in it (RFC 2047
encoded-words, control characters, bidi controls, line breaks) reaches a message only as the
To display name, never as a header, a blank line or a body of its own.

The email package decodes encoded-words when it writes a header, so a name that looks
harmless to a check of the raw value can still carry CR LF into the message. Names are
cleaned at every intake and again at build, and every message's serialised header block is
checked; the property tests below hold both builders (the weekly issue, fast and slow, and
the confirmation) to one From, one To naming only the recipient, one Subject, and no header
they did not write.
"""

from __future__ import annotations

import base64
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import replace
from email import message_from_bytes, message_from_string, policy
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from newsletter.app import App
from newsletter.config import DatabaseSettings
from newsletter.db.models import Subscriber
from newsletter.delivery.send import SendOptions, send_issue
from newsletter.feeds.store import fetch_sources
from newsletter.issue.build import build_issue
from newsletter.issue.periods import Week
from newsletter.issue.personal import ANONYMOUS_NAME
from newsletter.issue.render import render_issue
from newsletter.mail.confirmation import build as build_confirmation
from newsletter.mail.headers import (
    HeaderInjectionError,
    Recipient,
    header_fields,
    serialise,
    to_value,
)
from newsletter.mail.message import IssueParts, MessageFactory
from newsletter.subscribers.addresses import clean_name
from newsletter.subscribers.csv import import_csv
from newsletter.subscribers.rules import add_address
from newsletter.untrusted import BIDI_CONTROLS, person_name
from newsletter.web.endpoints import template_environment

from .sample_issue import sample_issue
from .test_message import NOW, factory_for, make_settings

REPO = Path(__file__).resolve().parent.parent
# The report's sample: CR LF "X-Injected: yes" CR LF CR LF "<h1>Phish</h1>".
INJECTION = "=?utf-8?b?DQpYLUluamVjdGVkOiB5ZXMNCg0KPGgxPlBoaXNoPC9oMT4=?="
ATTACKER = "=?utf-8?q?=3Cattacker=40evil=2Eexample=3E?="
# "=?utf-8?q?=0D=0ABcc=3A=20evil=40example=2Enet?=", base64-encoded in a word of its own.
NESTED = "=?utf-8?b?PT91dGYtOD9xPz0wRD0wQUJjYz0zQT0yMGV2aWw9NDBleGFtcGxlPTJFbmV0Pz0=?="
WEEKLY_FIELDS = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Precedence",
    "Auto-Submitted",
    "Feedback-ID",
    "MIME-Version",
    "Content-Type",
]
CONFIRMATION_FIELDS = [
    "From",
    "To",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "Auto-Submitted",
    "MIME-Version",
    "Content-Type",
]
ADDRESSES = ["jane@example.org", "o'brien+news@example.org", "jürgen@example.org"]


def _encoded(text: str, charset: str, encoding: str, padded: bool) -> str:
    data = text.encode("utf-8", "surrogatepass")
    if encoding in "bB":
        payload = base64.b64encode(data).decode("ascii")
        payload = payload if padded else payload.rstrip("=")
    else:
        payload = "".join(chr(b) if chr(b).isalnum() else f"={b:02X}" for b in data)
    return f"=?{charset}?{encoding}?{payload}?="


def encoded_words(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(
        _encoded,
        inner,
        st.sampled_from(["utf-8", "UTF-8", "utf-8*en", "iso-8859-1", "utf-16", "x-unknown"]),
        st.sampled_from("bBqQ"),
        st.booleans(),
    )


# Characters of attacks, and of names that need quoting or encoding; then longer pieces.
CHARACTERS = st.sampled_from(
    [
        *"\r\n\x0b\x0c\x1c\x85\u2028\u2029",  # line breaks
        *"\x00\x07\x1b\x7f\x9b\t",  # other controls
        *"\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f",  # bidi
        *'"\\<>@,;:()[]=?_ \udcff',
    ]
)
PIECES = st.sampled_from(
    [
        "=?",
        "?=",
        "=?utf-8?q?",
        "Bcc: evil@example.net",
        "Subject: You won",
        "<attacker@evil.example>",
        "\r\n\r\n<h1>Phish</h1>",
        INJECTION,
        ATTACKER,
    ]
)
LEAVES = st.one_of(
    CHARACTERS,
    PIECES,
    st.text(st.one_of(st.characters(codec="utf-8"), CHARACTERS), max_size=20),
)
NAMES = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        encoded_words(inner),
        st.lists(inner, min_size=1, max_size=4).map("".join),
        st.lists(inner, min_size=1, max_size=3).map(" ".join),
    ),
    max_leaves=10,
)
PROPERTY = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def factory() -> MessageFactory:
    settings = make_settings()
    issue = render_issue(sample_issue(), settings, [REPO / "templates"])
    return factory_for(IssueParts(7, "2024-W47", issue.subject, issue.html, issue.text), settings)


@pytest.fixture(scope="module")
def confirm() -> Iterator[Callable[[str, str], bytes]]:
    settings = replace(make_settings(), database=DatabaseSettings(url="sqlite://"))
    app = App.create(settings)
    templates = template_environment(app)

    def build(address: str, name: str) -> bytes:
        return build_confirmation(
            settings,
            templates,
            email=address,
            name=name,
            confirm_url="https://news.example.org/confirm/t",
            now=NOW,
            expires_hours=48,
        ).message

    yield build
    app.close()


def parse(raw: bytes) -> EmailMessage:
    """The message as a reader's client sees it (one to a non-ASCII address is UTF-8)."""
    message = (
        message_from_bytes(raw, policy=policy.default)
        if raw.isascii()
        else message_from_string(raw.decode("utf-8"), policy=policy.default)
    )
    assert isinstance(message, EmailMessage)
    return message


def check_message(
    raw: bytes, fields: list[str], address: str, name: str, greeting: str
) -> EmailMessage:
    """One From, one To naming only `address` (shown as `name`), one Subject, exactly the
    header fields the builder writes, and a text part that greets the reader by `name`."""
    message = parse(raw)
    assert list(message.keys()) == fields
    for field in ("From", "To", "Subject"):
        assert len(message.get_all(field) or []) == 1, field
    [to] = message["To"].addresses
    assert to.addr_spec == address
    # Python's parser keeps a blank between two encoded-words that folding split a long name
    # into (RFC 2047 says to drop it), so blanks are left out of the comparison.
    assert "".join(to.display_name.split()) == "".join(name.split())
    assert len(message["From"].addresses) == 1
    text = message.get_body(("plain",))
    assert text is not None
    assert greeting in text.get_content().splitlines()
    return message


def weekly_greeting(name: str) -> str:
    return f"Dear {name or ANONYMOUS_NAME},"


def confirmation_greeting(name: str) -> str:
    return f"Hello {name}," if name else "Hello,"


def weekly_paths(factory: MessageFactory, address: str, name: str) -> bytes:
    recipient = Recipient(3, address, name)
    fast = factory.build(recipient, NOW)
    slow = factory.build_reference(recipient, NOW)
    assert fast.message == slow.message
    return fast.message


@PROPERTY
@given(name=NAMES, address=st.sampled_from(ADDRESSES))
def test_any_name_gives_a_weekly_message_with_one_from_to_and_subject(
    factory: MessageFactory, name: str, address: str
) -> None:
    shown = person_name(name)
    raw = weekly_paths(factory, address, name)
    check_message(raw, WEEKLY_FIELDS, address, shown, weekly_greeting(shown))


@PROPERTY
@given(name=NAMES, address=st.sampled_from(ADDRESSES))
def test_any_name_gives_a_confirmation_with_one_from_to_and_subject(
    confirm: Callable[[str, str], bytes], name: str, address: str
) -> None:
    shown = person_name(name)
    raw = confirm(address, name)
    check_message(raw, CONFIRMATION_FIELDS, address, shown, confirmation_greeting(shown))


@PROPERTY
@given(name=NAMES)
def test_a_cleaned_name_is_plain_text_and_cleaning_it_again_changes_nothing(name: str) -> None:
    shown = person_name(name)
    assert person_name(shown) == shown
    assert "=?" not in shown
    assert shown == " ".join(shown.split())
    assert not [ch for ch in shown if unicodedata.category(ch) in {"Cc", "Cs", "Zl", "Zp"}]
    assert not set(shown) & BIDI_CONTROLS


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (INJECTION, "X-Injected: yes <h1>Phish</h1>"),
        (ATTACKER, "<attacker@evil.example>"),
        ("=?UTF-8?Q?Zo=C3=AB?= =?UTF-8?B?IE3DvGxsZXI=?=", "Zoë Müller"),  # blanks between words
        (NESTED, "Bcc: evil@example.net"),  # a word inside a word
        ("=?x-unknown?q?abc?=", "?x-unknown?q?abc?="),  # not decodable: no longer a word
        ("Eve\r\nBcc: victim@example.net", "Eve Bcc: victim@example.net"),
        ("Eve\u2028Bcc:\x85x\u2029y", "Eve Bcc: x y"),
        ("\u202eevil\u202c \u2067Ann\u2069", "evil Ann"),
        ("Bel\x07 \x1b[31mRed\x7f\x9b", "Bel [31mRed"),
        ("  Jane \t Doe  ", "Jane Doe"),
        ("Zoë Müller-Lüdenscheidt", "Zoë Müller-Lüdenscheidt"),
        ("a\udcffb", "a\ufffdb"),
    ],
)
def test_names_are_decoded_and_stripped_to_text_for_people(raw: str, shown: str) -> None:
    assert person_name(raw) == shown
    assert clean_name(raw) == shown


@pytest.mark.parametrize(
    ("name", "shown"),
    [(INJECTION, "X-Injected: yes <h1>Phish</h1>"), (ATTACKER, "<attacker@evil.example>")],
)
def test_the_reported_names_write_no_header_in_either_message(
    factory: MessageFactory, confirm: Callable[[str, str], bytes], name: str, shown: str
) -> None:
    weekly = weekly_paths(factory, "jane@example.org", name)
    check_message(weekly, WEEKLY_FIELDS, "jane@example.org", shown, weekly_greeting(shown))
    confirmation = confirm("jane@example.org", name)
    check_message(
        confirmation, CONFIRMATION_FIELDS, "jane@example.org", shown, confirmation_greeting(shown)
    )
    for raw in (weekly, confirmation):
        assert b"\nX-Injected" not in raw
        html = parse(raw).get_body(("html",))
        assert html is not None
        assert "<h1>Phish" not in html.get_content()


def test_with_the_cleaning_switched_off_the_serialised_check_still_refuses(
    factory: MessageFactory,
    confirm: Callable[[str, str], bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Defence in depth: the header check does not rely on the names being clean, in the
    standard library's message, in the fast path's copy and in the confirmation."""
    monkeypatch.setattr("newsletter.mail.message.person_name", lambda name: name)
    monkeypatch.setattr("newsletter.mail.confirmation.person_name", lambda name: name)
    for name in (INJECTION, "=?utf-8?q?Ann=0ABcc:_evil@example.net?=", "=?utf-8?q?Ann=0D?="):
        recipient = Recipient(3, "jane@example.org", name)
        with pytest.raises(HeaderInjectionError):
            factory.build(recipient, NOW)
        with pytest.raises(HeaderInjectionError):
            factory.build_reference(recipient, NOW)
        with pytest.raises(HeaderInjectionError):
            confirm("jane@example.org", name)


@pytest.mark.parametrize(
    "head",
    [
        b"From: a@example.org\r\nTo: x\nBcc: b@example.org\r\n\r\nbody",
        b"From: a@example.org\r\nTo: x\rBcc: b@example.org\r\n\r\nbody",
        b"From: a@example.org\nTo: x\r\n\r\nbody",
    ],
)
def test_a_bare_cr_or_lf_in_the_header_block_is_refused(head: bytes) -> None:
    with pytest.raises(HeaderInjectionError, match="bare CR or LF"):
        header_fields(head)


def test_only_the_fields_that_were_set_may_leave() -> None:
    folded = b"From: a@example.org\r\nTo: Ann\r\n B <b@example.org>\r\nSubject: s\r\n\r\nx\r\n"
    assert header_fields(folded) == (b"From", b"To", b"Subject")
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = "a@example.org"
    message["To"] = Address(display_name=INJECTION, addr_spec="b@example.org")
    message["Subject"] = "s"
    message.set_content("x")
    with pytest.raises(HeaderInjectionError, match="header lines it was not built with"):
        serialise(message)
    with pytest.raises(HeaderInjectionError):
        to_value("b@example.org", "Ann\r\nBcc: c@example.org")


# ---------------------------------------------------------------- intake and stored names

HOSTILE_CSV = (
    "email,name\n"
    f"inject@example.org,{INJECTION}\n"
    f"attacker@example.org,{ATTACKER}\n"
    "bidi@example.org,\u202eevil\u202c Ann\n"
    '"ctrl@example.org","Bel\x07\x1b[31mRed"\n'
)


def test_every_intake_cleans_the_name_with_the_same_function(app: App, tmp_path: Path) -> None:
    path = tmp_path / "names.csv"
    path.write_text(HOSTILE_CSV, encoding="utf-8")
    report = import_csv(app, path)
    assert report.added == 4
    add_address(app, "cli@example.org", INJECTION)
    with app.sessions() as session:
        names = dict(session.execute(select(Subscriber.email, Subscriber.name)).all())
    assert names == {
        "inject@example.org": "X-Injected: yes <h1>Phish</h1>",
        "attacker@example.org": "<attacker@evil.example>",
        "bidi@example.org": "evil Ann",
        "ctrl@example.org": "Bel[31mRed",
        "cli@example.org": "X-Injected: yes <h1>Phish</h1>",
    }


def test_names_stored_before_the_cleaning_are_cleaned_when_the_issue_is_sent(
    app: App, tmp_path: Path
) -> None:
    """A name the database already holds raw (from an older version, or written by hand)
    still reaches the weekly issue only as a display name."""
    stored = {
        "inject@example.org": INJECTION,
        "attacker@example.org": ATTACKER,
        "lines@example.org": "Eve\r\nBcc: victim@example.net\r\nSubject: Win",
    }
    for address in stored:
        add_address(app, address, "Placeholder")
    with app.transaction() as session:
        for address, name in stored.items():
            session.execute(update(Subscriber).where(Subscriber.email == address).values(name=name))
    fetch_sources(app, [str(REPO / "examples" / "feed.xml")])
    build_issue(app, Week(2024, 47))
    report = send_issue(app, Week(2024, 47), SendOptions(rate=0, connections=1))
    assert report.sent == len(stored)
    outbox = Path(app.settings.delivery.transport.removeprefix("outbox:"))
    sent = {}
    for path in outbox.glob("*.eml"):
        message = parse(path.read_bytes())
        sent[message["To"].addresses[0].addr_spec] = path.read_bytes()
    assert sent.keys() == stored.keys()
    for address, name in stored.items():
        shown = person_name(name)
        check_message(sent[address], WEEKLY_FIELDS, address, shown, weekly_greeting(shown))
