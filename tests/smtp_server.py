"""A recording SMTP server on loopback for the sending tests, built on aiosmtpd.

It listens on 127.0.0.1 on a port the kernel picks, optionally offers STARTTLS or speaks
implicit TLS with a self-signed certificate made for the test by the `openssl` command,
optionally requires AUTH, and can answer scripted replies per recipient (a 451 then a 250,
a 550 5.1.1 for ever ...). Every accepted message is kept with its envelope.
"""

from __future__ import annotations

import ssl
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """Verifies the server against this certificate only, as a real CA bundle would."""
        return ssl.create_default_context(cafile=str(self.cert))


def make_certificate(folder: Path) -> Certificate:
    """A self-signed certificate for 127.0.0.1, valid for a day."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return Certificate(cert, key)


@dataclass(frozen=True)
class Received:
    mail_from: str
    recipient: str
    content: bytes

    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


def ehlo_reply(
    session: Session, hostname: str, responses: list[str], *, pipelining: bool
) -> list[str]:
    """aiosmtpd reads pipelined commands in order but does not say so; Postfix, Exim and
    the big providers do, and then the client takes the pipelined path. A handler that
    answers EHLO itself also records the client's name, as aiosmtpd otherwise would."""
    session.host_name = hostname
    if pipelining:
        return [*responses[:-1], "250-PIPELINING", responses[-1]]
    return responses


@dataclass
class Handler:
    """Scripted replies are consumed one per RCPT for that address; then it is accepted."""

    replies: dict[str, list[str]] = field(default_factory=dict)
    pipelining: bool = True
    received: list[Received] = field(default_factory=list)
    recipients_offered: list[str] = field(default_factory=list)
    transactions: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Called with the number of messages received so far, after each one: lets a test act
    # at a point of the send that does not depend on how fast this machine is.
    on_received: Callable[[int], None] | None = None

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        return ehlo_reply(session, hostname, responses, pipelining=self.pipelining)

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        with self.lock:
            self.recipients_offered.append(address)
            script = self.replies.get(address.lower())
            reply = script.pop(0) if script else ""
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        with self.lock:
            self.transactions += 1
            for recipient in envelope.rcpt_tos:
                self.received.append(Received(str(envelope.mail_from), recipient, content))
            count = len(self.received)
        if self.on_received is not None:
            self.on_received(count)
        return "250 2.0.0 Message accepted"


class _Controller(Controller):
    """Binds port 0 and learns the port the kernel chose."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpServer:
    """`with SmtpServer() as server:` then send to `server.url`."""

    def __init__(
        self,
        *,
        certificate: Certificate | None = None,
        implicit_tls: bool = False,
        login: tuple[str, str] | None = None,
        replies: dict[str, list[str]] | None = None,
        smtputf8: bool = True,
        pipelining: bool = True,
        size_limit: int | None = None,
    ) -> None:
        self.handler = Handler(
            replies={k.lower(): list(v) for k, v in (replies or {}).items()},
            pipelining=pipelining,
        )
        self.login = login
        self.implicit_tls = implicit_tls
        self.certificate = certificate
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": smtputf8}
        if size_limit is not None:  # announced as SIZE; aiosmtpd's default is 32 MiB
            kwargs["data_size_limit"] = size_limit
        if certificate is not None and implicit_tls:
            kwargs["ssl_context"] = certificate.server_context()
        elif certificate is not None:
            kwargs["tls_context"] = certificate.server_context()
        if login is not None:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_required"] = True
        self._controller = _Controller(self.handler, hostname="127.0.0.1", port=0, **kwargs)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and self.login == (
            data.login.decode(),
            data.password.decode(),
        )
        return AuthResult(success=ok, handled=False)

    @property
    def port(self) -> int:
        return int(self._controller.port)

    def url(self, scheme: str = "smtp", user: str = "") -> str:
        return f"{scheme}://{user + '@' if user else ''}127.0.0.1:{self.port}"

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    def __enter__(self) -> SmtpServer:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()
