"""The transports against a real SMTP server on loopback (aiosmtpd), with TLS and AUTH."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from newsletter.errors import ConfigError
from newsletter.transport.outbox import (
    OutboxTransport,
    PermanentFailure,
    PolicyFailure,
    ServerUnavailable,
    SmtpTransport,
    TransientFailure,
    classify,
    open_transport,
    outbox_name,
    parse_smtp_url,
)

from .smtp_server import Certificate, SmtpServer, make_certificate

MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n\r\n.leading dot\r\nbody\r\n"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return make_certificate(tmp_path_factory.mktemp("tls"))


def transport(url: str, **kwargs: object) -> SmtpTransport:
    result = open_transport(url, base_dir=Path("."), timeout=10, **kwargs)  # type: ignore[arg-type]
    assert isinstance(result, SmtpTransport)
    return result


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "step-by-step"])
def test_plain_smtp_delivers_and_reuses_the_connection(pipelining: bool) -> None:
    server = SmtpServer(pipelining=pipelining)
    with server, transport(server.url()).connect() as connection:
        for n in range(3):
            connection.send("bounces@example.org", f"r{n}@example.org", MESSAGE)
    got = server.received
    assert [r.recipient for r in got] == ["r0@example.org", "r1@example.org", "r2@example.org"]
    assert got[0].mail_from == "bounces@example.org"
    assert b"\r\n.leading dot\r\n" in got[0].content  # dot-stuffing undone by the server


def test_messages_per_connection_reopens_the_session() -> None:
    with SmtpServer() as server:
        conn = transport(server.url(), messages_per_connection=2).connect()
        with conn:
            for n in range(5):
                conn.send("a@example.org", f"r{n}@example.org", MESSAGE)
        assert len(server.received) == 5


def test_starttls_with_auth(certificate: Certificate) -> None:
    with SmtpServer(certificate=certificate, login=("mailer", "s3cret")) as server:
        smtp = transport(
            server.url("smtp+starttls", "mailer"),
            password="s3cret",
            ssl_context=certificate.client_context(),
        )
        with smtp.connect() as connection:
            connection.send("a@example.org", "b@example.org", MESSAGE)
    assert [r.recipient for r in server.received] == ["b@example.org"]


def test_implicit_tls(certificate: Certificate) -> None:
    with SmtpServer(certificate=certificate, implicit_tls=True) as server:
        smtp = transport(server.url("smtps"), ssl_context=certificate.client_context())
        with smtp.connect() as connection:
            connection.send("a@example.org", "b@example.org", MESSAGE)
    assert len(server.received) == 1


def test_wrong_password_stops_with_a_policy_failure(certificate: Certificate) -> None:
    with SmtpServer(certificate=certificate, login=("mailer", "s3cret")) as server:
        smtp = transport(
            server.url("smtp+starttls", "mailer"),
            password="wrong",
            ssl_context=certificate.client_context(),
        )
        with pytest.raises(PolicyFailure, match="refused the login"):
            smtp.connect().send("a@example.org", "b@example.org", MESSAGE)
    assert server.received == []


def test_starttls_missing_never_falls_back_to_plain_text() -> None:
    with SmtpServer() as server:
        smtp = transport(server.url("smtp+starttls"))
        with pytest.raises(PolicyFailure, match="does not offer STARTTLS"):
            smtp.connect().send("a@example.org", "b@example.org", MESSAGE)
    assert server.received == []


def test_untrusted_certificate_is_refused(certificate: Certificate) -> None:
    with SmtpServer(certificate=certificate) as server:
        smtp = transport(server.url("smtp+starttls"))  # system CAs do not know the test cert
        with pytest.raises(PolicyFailure, match="cannot be trusted"):
            smtp.connect().send("a@example.org", "b@example.org", MESSAGE)
    assert server.received == []


def test_password_is_never_sent_without_tls() -> None:
    with SmtpServer() as server:
        smtp = transport(server.url("smtp", "mailer"), password="s3cret")
        with pytest.raises(PolicyFailure, match="without TLS"):
            smtp.connect().send("a@example.org", "b@example.org", MESSAGE)


@pytest.mark.parametrize(
    ("reply", "kind", "bounce"),
    [
        ("451 4.3.0 Try again later", TransientFailure, False),
        ("550 5.1.1 No such user", PermanentFailure, True),
        ("552 5.2.1 Mailbox disabled", PermanentFailure, True),
        ("550 Rejected", PermanentFailure, False),
        ("554 5.7.1 Rejected under policy", PolicyFailure, False),
    ],
)
@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "step-by-step"])
def test_recipient_replies_map_to_failure_kinds(
    reply: str, kind: type[Exception], bounce: bool, pipelining: bool
) -> None:
    server = SmtpServer(replies={"bad@example.org": [reply]}, pipelining=pipelining)
    with server, transport(server.url()).connect() as connection:
        with pytest.raises(kind) as caught:
            connection.send("a@example.org", "bad@example.org", MESSAGE)
        assert reply[:3] in str(caught.value)
        if isinstance(caught.value, PermanentFailure):
            assert caught.value.bounce is bounce
        # The session was reset and still works for the next recipient.
        connection.send("a@example.org", "good@example.org", MESSAGE)
    assert [r.recipient for r in server.received] == ["good@example.org"]


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "step-by-step"])
def test_an_abandoned_offer_delivers_nothing_and_the_next_message_goes(pipelining: bool) -> None:
    """The engine abandons an offered envelope when the ledger says the row must not go;
    the server may already have answered DATA with 354, so only dropping the session is safe."""
    server = SmtpServer(pipelining=pipelining)
    with server, transport(server.url()).connect() as connection:
        connection.send("a@example.org", "first@example.org", MESSAGE)
        connection.offer("a@example.org", "dropped@example.org")
        connection.abandon()
        connection.send("a@example.org", "after@example.org", MESSAGE)
    assert [r.recipient for r in server.received] == ["first@example.org", "after@example.org"]


def test_a_pipelined_offer_puts_the_envelope_on_the_wire_at_once() -> None:
    """With PIPELINING the envelope is written by `offer` and its replies are read by
    `transmit`, so the sender can commit to its ledger while they travel."""
    with SmtpServer() as server, transport(server.url()).connect() as connection:
        connection.offer("a@example.org", "r@example.org")
        deadline = time.monotonic() + 5
        while not server.handler.recipients_offered and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.handler.recipients_offered == ["r@example.org"]
        assert not server.received
        connection.transmit(MESSAGE)
        connection.confirm()
    assert [r.recipient for r in server.received] == ["r@example.org"]


def test_421_closes_and_the_next_message_reconnects() -> None:
    replies = {"busy@example.org": ["421 4.3.2 Shutting down"]}
    with SmtpServer(replies=replies) as server, transport(server.url()).connect() as connection:
        with pytest.raises(TransientFailure, match="421"):
            connection.send("a@example.org", "busy@example.org", MESSAGE)
        connection.send("a@example.org", "busy@example.org", MESSAGE)
    assert [r.recipient for r in server.received] == ["busy@example.org"]


def test_non_ascii_address_needs_smtputf8() -> None:
    strict = SmtpServer(smtputf8=False)
    with (
        strict,
        transport(strict.url()).connect() as connection,
        pytest.raises(PermanentFailure, match="SMTPUTF8"),
    ):
        connection.send("a@example.org", "jürgen@example.org", MESSAGE)
    with SmtpServer() as server, transport(server.url()).connect() as connection:
        connection.send("a@example.org", "jürgen@example.org", MESSAGE)
    assert [r.recipient for r in server.received] == ["jürgen@example.org"]


def test_unreachable_server_is_reported_as_such() -> None:
    with SmtpServer() as server:
        url = server.url()
    with pytest.raises(ServerUnavailable):
        transport(url).connect().send("a@example.org", "b@example.org", MESSAGE)


def test_classify_table() -> None:
    assert isinstance(classify(450, b"4.2.0 busy", "RCPT"), TransientFailure)
    assert isinstance(classify(550, b"sender rejected", "MAIL"), PolicyFailure)
    assert isinstance(classify(535, b"5.7.8 bad credentials", "AUTH"), PolicyFailure)
    failure = classify(550, b"5.1.10 null MX", "RCPT")
    assert isinstance(failure, PermanentFailure)
    assert failure.bounce


def test_smtp_urls() -> None:
    cfg = parse_smtp_url("smtp+starttls://news%40example.org@smtp.example.org", password="p")
    assert (cfg.security, cfg.host, cfg.port, cfg.username) == (
        "starttls",
        "smtp.example.org",
        587,
        "news@example.org",
    )
    assert parse_smtp_url("smtps://smtp.example.org").port == 465
    with pytest.raises(ConfigError, match="password"):
        parse_smtp_url("smtps://u:pw@smtp.example.org")
    with pytest.raises(ConfigError):
        open_transport("ftp://x", base_dir=Path("."))


def test_outbox_writes_one_file_per_recipient(tmp_path: Path) -> None:
    outbox = open_transport("outbox:mail", base_dir=tmp_path)
    assert isinstance(outbox, OutboxTransport)
    with outbox.connect() as connection:
        connection.send("a@example.org", "b@example.org", MESSAGE)
    assert (tmp_path / "mail" / outbox_name("b@example.org")).read_bytes() == MESSAGE


def test_a_reader_of_two_newsletters_keeps_a_file_for_each(tmp_path: Path) -> None:
    outbox = open_transport("outbox:mail", base_dir=tmp_path)
    weekly = b"List-Id: The Weekly Round-up <weekly.example.org>\r\n" + MESSAGE
    brief = b"List-Id: =?utf-8?q?The_Brief?= <brief.example.org>\r\n" + MESSAGE
    with outbox.connect() as connection:
        connection.send("a@example.org", "b@example.org", weekly)
        connection.send("a@example.org", "b@example.org", brief)
    mail = tmp_path / "mail"
    assert (mail / outbox_name("b@example.org", "weekly.example.org")).read_bytes() == weekly
    assert (mail / outbox_name("b@example.org", "brief.example.org")).read_bytes() == brief
    assert len(list(mail.iterdir())) == 2


def test_outbox_names_of_look_alike_addresses_differ_and_stay_put(tmp_path: Path) -> None:
    outbox = open_transport("outbox:mail", base_dir=tmp_path)
    with outbox.connect() as connection:
        connection.send("a@example.org", "jürgen@example.org", MESSAGE + b"one\r\n")
        connection.send("a@example.org", "j_rgen@example.org", MESSAGE + b"two\r\n")
        connection.send("a@example.org", "jürgen@example.org", MESSAGE + b"one\r\n")
    names = sorted(p.name for p in (tmp_path / "mail").iterdir())
    assert names == sorted([outbox_name("jürgen@example.org"), outbox_name("j_rgen@example.org")])
    assert all(name.startswith("j_rgen@example.org.") for name in names)
    assert (tmp_path / "mail" / outbox_name("jürgen@example.org")).read_bytes().endswith(b"one\r\n")
    assert (tmp_path / "mail" / outbox_name("j_rgen@example.org")).read_bytes().endswith(b"two\r\n")


def test_the_relay_can_be_asked_about_smtputf8_from_inside_a_send() -> None:
    """A send's event loop builds a message for a UTF-8 domain and asks the relay then."""

    async def ask(smtp: SmtpTransport) -> bool:
        return smtp.takes_utf8_addresses()

    with SmtpServer(smtputf8=False) as strict, SmtpServer() as server:
        assert asyncio.run(ask(transport(strict.url()))) is False
        assert asyncio.run(ask(transport(server.url()))) is True
