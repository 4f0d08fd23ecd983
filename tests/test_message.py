"""The MIME message: headers, parts, the fast path against the standard library, DKIM."""

from __future__ import annotations

import base64
import re
import subprocess
from dataclasses import replace
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path

import dkim
import pytest

from newsletter.config import DeliverySettings, NewsletterSettings, Secrets, Settings
from newsletter.issue.render import render_issue
from newsletter.mail.headers import HeaderInjectionError, Recipient, to_value
from newsletter.mail.message import DkimKey, IssueParts, MessageFactory
from newsletter.mail.tokens import Tokens
from newsletter.transport.smtp import data_section, dot_stuff

from .sample_issue import sample_issue

NOW = datetime(2024, 11, 20, 15, 0, tzinfo=UTC)
GOLDEN = Path(__file__).parent / "golden" / "message.eml"
KEY = "test-secret-key-not-for-production"
RECIPIENTS = [
    Recipient(1, "jane@example.org", "Jane Doe"),
    Recipient(2, "o'brien+news@example.org", "O'Brien, Pat"),
    Recipient(3, "zoe@example.org", "Zoë Müller-Lüdenscheidt"),
    Recipient(4, "nameless@example.org", ""),
    Recipient(5, "x" * 60 + "@example.org", "A Very Long Name " * 4),
    Recipient(6, "tom@example.org", 'Tom "<b>" & Jerry'),
    Recipient(7, "jürgen@example.org", "Jürgen"),
]


def make_settings(**delivery: object) -> Settings:
    return Settings(
        newsletter=NewsletterSettings(
            name="The Weekly Round-up",
            sender="Example Magazine <newsletter@example.org>",
            reply_to="editors@example.org",
            base_url="https://news.example.org",
        ),
        delivery=replace(DeliverySettings(), **delivery),  # type: ignore[arg-type]
        secrets=Secrets(secret_keys=(KEY,)),
    )


@pytest.fixture(scope="module")
def rendered() -> IssueParts:
    settings = make_settings()
    issue = render_issue(sample_issue(), settings, [Path(__file__).parent.parent / "templates"])
    return IssueParts(7, "2024-W47", issue.subject, issue.html, issue.text)


def factory_for(parts: IssueParts, settings: Settings | None = None) -> MessageFactory:
    settings = settings or make_settings()
    return MessageFactory(settings, Tokens((KEY,), settings.list_id), parts)


def parse(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_fast_path_gives_the_same_bytes_as_the_standard_library(rendered: IssueParts) -> None:
    factory = factory_for(rendered)
    assert factory.uses_template
    for recipient in RECIPIENTS:
        fast = factory.build(recipient, NOW)
        if recipient.email.isascii():
            assert parse(fast.message)["To"].addresses[0].addr_spec == recipient.email
        else:  # written as UTF-8, for a server that offers SMTPUTF8
            assert recipient.email.encode() in fast.message.partition(b"\r\n\r\n")[0]
        slow = factory.build_reference(recipient, NOW)
        assert (fast.sender, fast.recipient, fast.message) == (
            slow.sender,
            slow.recipient,
            slow.message,
        ), recipient
        if fast.data is not None:  # the pre-stuffed DATA section is the one SMTP would make
            assert fast.data == data_section(slow.message), recipient


def test_dot_stuffing_doubles_only_a_leading_dot() -> None:
    message = b".starts\r\nmid.dle\r\n.\r\n..two\r\nend"
    assert dot_stuff(message) == b"..starts\r\nmid.dle\r\n..\r\n...two\r\nend"
    assert data_section(message) == b"..starts\r\nmid.dle\r\n..\r\n...two\r\nend\r\n.\r\n"
    assert dot_stuff(b"no dots\r\n") == b"no dots\r\n"


def test_the_stuffed_template_has_work_to_do(rendered: IssueParts) -> None:
    """The rendered issue has lines that start with a dot, so the comparison above shows the
    template's stuffing, not an absence of dots."""
    message = factory_for(rendered).build(RECIPIENTS[0], NOW)
    assert b"\n." in message.message
    assert message.data is not None
    assert b"\n.." in message.data


def test_every_header_and_both_parts(rendered: IssueParts) -> None:
    factory = factory_for(rendered)
    raw = factory.build(RECIPIENTS[2], NOW).message
    message = parse(raw)
    for name in ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "List-Id"):
        assert len(message.get_all(name) or []) == 1, name
    assert message["From"] == "Example Magazine <newsletter@example.org>"
    assert message["To"] == "Zoë Müller-Lüdenscheidt <zoe@example.org>"
    assert b"=?utf-8?" in raw.partition(b"\r\n\r\n")[0]  # RFC 2047 for the name
    assert message["Subject"] == rendered.subject
    assert message["Reply-To"] == "editors@example.org"
    assert message["List-Id"] == "The Weekly Round-up <weekly.example.org>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Precedence"] == "bulk"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Feedback-ID"] == "2024-W47:weekly.example.org:newsletter:newsletter"
    assert message["Date"].datetime == NOW
    token = Tokens((KEY,), "weekly.example.org").unsubscribe(3)
    url = f"https://news.example.org/u/{token}"
    assert re.sub(r"\s+", " ", message["List-Unsubscribe"]) == (
        f"<{url}>, <mailto:unsubscribe@example.org?subject=unsubscribe-{token}>"
    )
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert html.get_content_type() == "text/html"
    for part in (text, html):
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] in ("quoted-printable", "base64")
        assert url in part.get_content()
        assert "1 Example Street" in part.get_content()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    assert all(len(line) <= 78 for line in body.split(b"\r\n"))


def test_message_id_is_stable_per_issue_and_subscriber(rendered: IssueParts) -> None:
    factory = factory_for(rendered)
    first = parse(factory.build(RECIPIENTS[0], NOW).message)["Message-ID"]
    again = parse(factory.build(RECIPIENTS[0], datetime(2025, 1, 1, tzinfo=UTC)).message)
    other = parse(factory.build(RECIPIENTS[1], NOW).message)["Message-ID"]
    other_issue = factory_for(replace(rendered, issue_id=8)).build(RECIPIENTS[0], NOW)
    assert again["Message-ID"] == first
    assert other != first
    assert parse(other_issue.message)["Message-ID"] != first
    assert first.endswith("@example.org>")


def test_envelope_sender_is_verp_when_a_bounce_domain_is_set(rendered: IssueParts) -> None:
    plain = factory_for(rendered).build(RECIPIENTS[0], NOW)
    assert plain.sender == "newsletter@example.org"
    settings = make_settings(bounce_domain="bounce.example.org")
    verp = factory_for(rendered, settings).build(RECIPIENTS[0], NOW)
    tokens = Tokens((KEY,), settings.list_id)
    assert verp.sender.endswith("@bounce.example.org")
    assert tokens.read_verp(verp.sender) == (1, 7)


EVIL = "x\r\nBcc: evil@example.net"


@pytest.mark.parametrize("field", ["email", "subject"])
def test_line_breaks_in_header_values_are_refused(rendered: IssueParts, field: str) -> None:
    if field == "subject":
        with pytest.raises(HeaderInjectionError):
            factory_for(replace(rendered, subject=EVIL))
        return
    recipient = Recipient(1, EVIL, "Eve")
    with pytest.raises(HeaderInjectionError):
        factory_for(rendered).build(recipient, NOW)
    with pytest.raises(HeaderInjectionError):
        factory_for(rendered).build_reference(recipient, NOW)


def test_a_display_name_with_a_line_break_is_refused_by_the_header_and_cleaned_by_the_builder(
    rendered: IssueParts,
) -> None:
    """The To value refuses the line break; the builder never hands it one, because it cleans
    the name (already stored, say) as every intake does."""
    with pytest.raises(HeaderInjectionError):
        to_value("a@example.org", EVIL)
    with pytest.raises(HeaderInjectionError):
        to_value("jürgen@example.org", EVIL)
    factory = factory_for(rendered)
    for build in (factory.build, factory.build_reference):
        message = parse(build(Recipient(1, "a@example.org", EVIL), NOW).message)
        assert message["Bcc"] is None
        assert message["To"].addresses == (
            Address(display_name="x Bcc: evil@example.net", addr_spec="a@example.org"),
        )


def test_dkim_signature_verifies(rendered: IssueParts, tmp_path: Path) -> None:
    key = tmp_path / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    settings = make_settings(dkim_selector="nl2024", dkim_domain="example.org")
    settings = replace(settings, secrets=replace(settings.secrets, dkim_private_key_path=str(key)))
    factory = MessageFactory(
        settings, Tokens((KEY,), settings.list_id), rendered, DkimKey.from_settings(settings)
    )
    raw = factory.build(RECIPIENTS[0], NOW).message

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"nl2024._domainkey.example.org."
        return record

    assert dkim.verify(raw, dnsfunc=dns)
    signed = parse(raw)["DKIM-Signature"]
    covered = re.search(r"h=([^;]+)", re.sub(r"\s+", "", signed))
    assert covered is not None
    headers = set(covered[1].lower().split(":"))
    assert {
        "from", "to", "subject", "date", "message-id", "mime-version", "content-type",
        "list-id", "list-unsubscribe", "list-unsubscribe-post", "feedback-id",
    } <= headers  # fmt: skip
    tampered = raw.replace(b"Subject: ", b"Subject: Re: ", 1)
    assert not dkim.verify(tampered, dnsfunc=dns)


def test_golden_message(update_golden: bool) -> None:
    """A small fixed issue, serialised; only the unsubscribe token varies with the key."""
    parts = IssueParts(
        1,
        "2024-W47",
        "The Weekly Round-up: Week of 18 November 2024",
        '<html><body><p>Dear NLP-NAME-0D1C,</p><p><a href="NLP-UNSUBSCRIBE_URL-0D1C-URI">'
        "Unsubscribe</a> NLP-EMAIL-0D1C</p></body></html>\n",
        "Dear NLP-NAME-0D1C,\n\nUnsubscribe: NLP-UNSUBSCRIBE_URL-0D1C\n",
    )
    raw = factory_for(parts).build(Recipient(42, "reader@example.org", "Ann Reader"), NOW).message
    text = raw.decode("ascii").replace("\r\n", "\n")
    if update_golden:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text, encoding="ascii")
    assert text == GOLDEN.read_text(encoding="ascii")


def test_the_mailto_unsubscribe_address_can_be_set(rendered: IssueParts) -> None:
    """A mailbox that is not `unsubscribe@` the From domain (a separate bounce host, say)."""
    settings = make_settings(unsubscribe_mailto="leave@lists.example.org")
    envelope = factory_for(rendered, settings).build(RECIPIENTS[0], NOW)
    header = re.sub(r"\s+", " ", parse(envelope.message)["List-Unsubscribe"])
    assert "<mailto:leave@lists.example.org?subject=unsubscribe-" in header
    assert "unsubscribe@example.org" not in header


def test_every_message_links_to_the_readers_preferences_page(rendered: IssueParts) -> None:
    """One page per reader, whichever newsletter the message is from: its token is signed
    with the default newsletter's list id, where the unsubscribe token is the sender's."""
    weekly = make_settings()
    daily = replace(weekly.newsletter, slug="daily", name="The Daily")
    both = replace(weekly, newsletters=(weekly.newsletter, daily))
    page = f"https://news.example.org/p/{Tokens((KEY,), 'weekly.example.org').preferences(3)}"
    bodies = []
    for settings in (both, both.for_newsletter("daily")):
        envelope = factory_for(rendered, settings).build(RECIPIENTS[2], NOW)
        text, html = parse(envelope.message).iter_parts()
        assert f"Manage your subscription (newsletters, sections, your name):\n{page}\n" in (
            text.get_content().replace("\r\n", "\n")
        )
        assert f'href="{page}"' in html.get_content()
        bodies.append(envelope.message)
    assert b"List-Id: The Daily <daily.example.org>" in bodies[1]
    other = factory_for(rendered).build(RECIPIENTS[0], NOW).message
    assert page.encode() not in other  # each reader's own


def test_a_copy_of_some_sections_is_built_fast_like_the_whole_issue(
    rendered: IssueParts,
) -> None:
    """A reader's copy of their sections shares the issue's headers and personal fields, and
    the fast path still gives the standard library's bytes."""
    full = factory_for(rendered)
    copy = full.variant(rendered.html.replace("</body>", "<p>Only some</p></body>"), "Short\n")
    assert copy.uses_template
    for recipient in RECIPIENTS[:6]:
        fast, slow = copy.build(recipient, NOW), copy.build_reference(recipient, NOW)
        assert fast.message == slow.message, recipient
        mine, whole = parse(fast.message), parse(full.build(recipient, NOW).message)
        assert mine["Message-ID"] == whole["Message-ID"]
        assert mine["List-Unsubscribe"] == whole["List-Unsubscribe"]
        body = mine.get_body(("html",))
        assert body is not None
        assert "Only some" in body.get_content()
