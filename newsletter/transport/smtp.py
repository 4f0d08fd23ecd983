"""The SMTP client: one session per connection, reused for many messages, with the envelope
pipelined (RFC 2920) where the server offers it. Replies become the failure kinds of
`failures.py` here, so nothing above this module reads a reply code.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from newsletter.errors import ConfigError, DeliveryError
from newsletter.transport.base import StepwiseConnection
from newsletter.transport.failures import (
    PermanentFailure,
    PolicyFailure,
    ServerUnavailable,
    TransientFailure,
    UncertainOutcome,
    classify,
)

SECURITY = {"smtp": "plain", "smtp+starttls": "starttls", "smtps": "tls"}
DEFAULT_PORTS = {"plain": 25, "starttls": 587, "tls": 465}
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.@-]+")


@dataclass(frozen=True)
class SmtpConfig:
    security: str  # "plain", "starttls" (never falls back to plain) or "tls"
    host: str
    port: int
    username: str = ""
    password: str = ""
    timeout: float = 60.0
    messages_per_connection: int = 1000
    ssl_context: ssl.SSLContext | None = None
    local_hostname: str | None = None

    @property
    def description(self) -> str:
        scheme = {v: k for k, v in SECURITY.items()}[self.security]
        user = f"{self.username}@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"


def _quote(address: str) -> str:
    """`<address>`; smtplib's quoteaddr parses every address, which is slow for plain ones."""
    if _PLAIN_ADDRESS.fullmatch(address):
        return f"<{address}>"
    return smtplib.quoteaddr(address)


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


_LEADING_DOT = re.compile(rb"\n\.")


def dot_stuff(lines: bytes) -> bytes:
    """Double the dot that starts any line (RFC 5321, 4.5.2); `lines` starts at a line start.

    On a whole message a regular expression finds "\\n." several times faster than
    `bytes.find`; on the short personal pieces of a copy, `in` is cheaper than the call.
    """
    found = _LEADING_DOT.search(lines) if len(lines) > 4096 else b"\n." in lines
    if found:
        lines = _LEADING_DOT.sub(b"\n..", lines)
    return b"." + lines if lines.startswith(b".") else lines


def data_section(message: bytes) -> bytes:
    """The DATA section: dot-stuffed, CRLF-terminated, with the closing dot."""
    message = dot_stuff(message)
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    return message + b".\r\n"


@dataclass(frozen=True)
class _Offer:
    envelope_from: str
    recipient: str
    pipelined: bool  # the envelope went out in `offer`; its three replies are still unread


class SmtpConnection(StepwiseConnection):
    """One SMTP session reused for many messages, reopened after a 421, a dropped connection
    or `messages_per_connection` messages."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._smtp: smtplib.SMTP | None = None
        self._sent = 0
        self._pipelining = False
        self._offer: _Offer | None = None

    def _session(self) -> smtplib.SMTP:
        if self._smtp is None:
            self._smtp = self._open()
            self._sent = 0
            self._pipelining = self._smtp.has_extn("pipelining")
        return self._smtp

    def _open(self) -> smtplib.SMTP:
        cfg = self.config
        where = f"{cfg.host}:{cfg.port}"
        smtp: smtplib.SMTP | None = None
        try:
            if cfg.security == "tls":
                smtp = smtplib.SMTP_SSL(
                    cfg.host,
                    cfg.port,
                    local_hostname=cfg.local_hostname,
                    timeout=cfg.timeout,
                    context=cfg.ssl_context or ssl.create_default_context(),
                )
            else:
                smtp = smtplib.SMTP(
                    cfg.host, cfg.port, local_hostname=cfg.local_hostname, timeout=cfg.timeout
                )
            self._check(smtp.ehlo(), "EHLO")
            if cfg.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise PolicyFailure(
                        f"{where} does not offer STARTTLS; refusing to send in plain text",
                        hint="check the server, or use smtps:// on port 465",
                    )
                smtp.starttls(context=cfg.ssl_context or ssl.create_default_context())
                self._check(smtp.ehlo(), "EHLO")
            if cfg.username:
                if cfg.security == "plain":
                    raise PolicyFailure(
                        "refusing to send the SMTP password over a connection without TLS",
                        hint="use smtp+starttls:// or smtps://",
                    )
                smtp.login(cfg.username, cfg.password)
        except smtplib.SMTPAuthenticationError as exc:
            self._discard(smtp)
            raise PolicyFailure(
                f"{where} refused the login for {cfg.username!r}: "
                f"{exc.smtp_code} {_text(exc.smtp_error)}",
                hint="check the user in [delivery] transport and NEWSLETTER_SMTP_PASSWORD",
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            self._discard(smtp)
            raise PolicyFailure(f"{where}: {exc}") from None
        except ssl.SSLCertVerificationError as exc:
            self._discard(smtp)
            raise PolicyFailure(
                f"the certificate of {where} cannot be trusted: {exc.verify_message}",
                hint="the server must present a certificate valid for its name",
            ) from None
        except smtplib.SMTPResponseException as exc:
            self._discard(smtp)
            raise classify(exc.smtp_code, exc.smtp_error, "EHLO") from None
        except (OSError, smtplib.SMTPException) as exc:
            self._discard(smtp)
            raise ServerUnavailable(f"cannot open an SMTP session with {where}: {exc}") from None
        except DeliveryError:
            self._discard(smtp)
            raise
        return smtp

    @staticmethod
    def _check(reply: tuple[int, bytes], stage: str) -> None:
        code, text = reply
        if not 200 <= code < 300:
            raise smtplib.SMTPResponseException(code, text)

    def offers(self, extension: str) -> bool:
        return self._session().has_extn(extension)

    def offer(self, envelope_from: str, recipient: str) -> None:
        smtp = self._session()
        ascii_only = envelope_from.isascii() and recipient.isascii()
        if not ascii_only and not smtp.has_extn("smtputf8"):
            raise PermanentFailure(
                f"{recipient} needs SMTPUTF8, which {self.config.host} does not offer"
            )
        pipelined = self._pipelining and ascii_only
        if pipelined:
            # MAIL, RCPT and DATA in one write: their replies are read by `transmit`.
            mail, rcpt = _quote(envelope_from), _quote(recipient)
            command = f"MAIL FROM:{mail}\r\nRCPT TO:{rcpt}\r\nDATA\r\n"
            self._guard(lambda: smtp.send(command))
        self._offer = _Offer(envelope_from, recipient, pipelined)

    def transmit(self, message: bytes, data: bytes | None = None) -> None:
        offer, self._offer = self._offer, None
        if offer is None or self._smtp is None:
            raise TransientFailure("no transaction was offered before the message")
        smtp = self._smtp
        if offer.pipelined:
            self._guard(lambda: self._pipelined_replies(smtp))
        else:
            self._guard(lambda: self._envelope(smtp, offer.envelope_from, offer.recipient))
        self._guard(lambda: smtp.send(data if data is not None else data_section(message)))

    def confirm(self) -> None:
        if self._smtp is None:
            raise UncertainOutcome("the session closed before the server answered the message")
        try:
            code, reply = self._smtp.getreply()
        except smtplib.SMTPServerDisconnected as exc:
            self._drop()
            raise UncertainOutcome(
                f"no answer after the message was transmitted ({exc}); it may have been accepted"
            ) from None
        if code != 250:
            raise self._refused(code, reply, "DATA")
        self._sent += 1
        if self._sent >= self.config.messages_per_connection:
            self.close()

    def abandon(self) -> None:
        """Ending the session before the end of data makes the server discard the transaction
        (RFC 5321, 3.8); RSET cannot be sent once the server may be reading the message."""
        self._offer = None
        self._drop()

    def _guard(self, step: Callable[[], object]) -> None:
        """Run a step before the end of data: a lost session there loses no message."""
        try:
            step()
        except smtplib.SMTPServerDisconnected as exc:
            self._drop()
            raise TransientFailure(
                f"connection lost before the message was accepted: {exc}"
            ) from None

    def _envelope(self, smtp: smtplib.SMTP, envelope_from: str, recipient: str) -> None:
        ascii_only = envelope_from.isascii() and recipient.isascii()
        code, reply = smtp.mail(envelope_from, [] if ascii_only else ["SMTPUTF8"])
        if code != 250:
            raise self._refused(code, reply, "MAIL")
        code, reply = smtp.rcpt(recipient)
        if code not in (250, 251):
            raise self._refused(code, reply, "RCPT")
        code, reply = smtp.docmd("DATA")
        if code != 354:
            raise self._refused(code, reply, "DATA")

    def _pipelined_replies(self, smtp: smtplib.SMTP) -> None:
        replies = [smtp.getreply() for _ in range(3)]
        (mail_code, mail_reply), (rcpt_code, rcpt_reply), (data_code, data_reply) = replies
        if data_code == 354 and (mail_code != 250 or rcpt_code not in (250, 251)):
            smtp.send(b".\r\n")  # ends the empty transaction the server opened anyway
            smtp.getreply()
        if mail_code != 250:
            raise self._refused(mail_code, mail_reply, "MAIL")
        if rcpt_code not in (250, 251):
            raise self._refused(rcpt_code, rcpt_reply, "RCPT")
        if data_code != 354:
            raise self._refused(data_code, data_reply, "DATA")

    def _refused(self, code: int, reply: bytes, stage: str) -> DeliveryError:
        """Map the reply, and leave the session ready for the next message (RSET) or closed."""
        if code == 421:
            self._drop()
        elif self._smtp is not None:
            try:
                self._smtp.rset()
            except (OSError, smtplib.SMTPException):
                self._drop()
        return classify(code, reply, stage)

    def _drop(self) -> None:
        self._discard(self._smtp)
        self._smtp = None

    @staticmethod
    def _discard(smtp: smtplib.SMTP | None) -> None:
        if smtp is not None:
            with contextlib.suppress(OSError):
                smtp.close()

    def close(self) -> None:
        if self._smtp is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                self._smtp.quit()
            self._drop()


class SmtpTransport:
    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self.description = config.description
        self._utf8: bool | None = None

    def connect(self) -> SmtpConnection:
        """A connection that opens its session on the first message."""
        return SmtpConnection(self.config)

    def takes_utf8_addresses(self) -> bool:
        """Asks the relay once per process: its extensions do not change between requests."""
        if self._utf8 is None:
            with self.connect() as connection:
                self._utf8 = connection.offers("smtputf8")
        return self._utf8


def parse_smtp_url(
    url: str,
    *,
    password: str = "",
    timeout: float = 60.0,
    messages_per_connection: int = 1000,
    ssl_context: ssl.SSLContext | None = None,
) -> SmtpConfig:
    parts = urlsplit(url)
    security = SECURITY.get(parts.scheme)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if security is None or not parts.hostname or port == -1 or parts.path not in ("", "/"):
        raise ConfigError(
            f"delivery.transport {url!r} is not a valid SMTP URL",
            hint="write it as smtp+starttls://user@host:587, smtps://user@host:465 "
            "or smtp://host:25",
        )
    if parts.password:
        raise ConfigError(
            "delivery.transport must not contain the password",
            hint="put it in NEWSLETTER_SMTP_PASSWORD",
        )
    return SmtpConfig(
        security=security,
        host=parts.hostname,
        port=port or DEFAULT_PORTS[security],
        username=unquote(parts.username or ""),
        password=password,
        timeout=timeout,
        messages_per_connection=max(messages_per_connection, 1),
        ssl_context=ssl_context,
        local_hostname=_hello_name(parts.hostname),
    )


def _hello_name(host: str) -> str:
    """The EHLO name: looked up once per transport rather than by smtplib per connection."""
    return "localhost" if host in ("127.0.0.1", "::1", "localhost") else socket.getfqdn()
