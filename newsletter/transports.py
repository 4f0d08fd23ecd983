"""Where finished messages go: an SMTP server, or an outbox folder of .eml files.

The delivery engine only sees `Transport.connect()` and `Connection.send()`; which one it
gets is decided by the `[delivery] transport` URL in `open_transport`, the one place that
reads it. Every SMTP reply is mapped onto the failure kinds the ledger distinguishes, so the
engine never looks at reply codes itself.
"""

from __future__ import annotations

import contextlib
import os
import re
import smtplib
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol
from urllib.parse import unquote, urlsplit

from .errors import ConfigError, DeliveryError


class TransientFailure(DeliveryError):
    """Try again later (4xx, a dropped connection before the message was accepted)."""


class PermanentFailure(DeliveryError):
    """This recipient cannot be reached (5xx on the recipient); `bounce` if the address is bad."""

    def __init__(self, message: str, *, bounce: bool = False) -> None:
        super().__init__(message)
        self.bounce = bounce


class PolicyFailure(DeliveryError):
    """The server refuses us, not the recipient (5.7.x, AUTH): stop the whole send."""

    hint = "fix the sending account or policy, then run `newsletter send` again to resume"


class UncertainOutcome(DeliveryError):
    """The message may or may not have been accepted (a timeout after end-of-data)."""


class ServerUnavailable(TransientFailure):
    """No session could be opened; no recipient is to blame, so none is charged an attempt."""


class Connection(Protocol):
    def send(self, envelope_from: str, recipient: str, message: bytes) -> None:
        """Deliver one message to one recipient or raise one of the failures above."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Connection: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class Transport(Protocol):
    description: str

    def connect(self) -> Connection: ...


class OutboxConnection:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def send(self, envelope_from: str, recipient: str, message: bytes) -> None:
        safe = re.sub(r"[^A-Za-z0-9._@+-]", "_", recipient)[:150]
        target = self.folder / f"{safe}.eml"
        tmp = target.with_suffix(f".eml.{os.getpid()}.tmp")
        # Written whole and renamed, so a crash never leaves half a message behind.
        with open(tmp, "wb") as handle:
            handle.write(message)
        os.replace(tmp, target)

    def close(self) -> None:
        return None

    def __enter__(self) -> OutboxConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class OutboxTransport:
    """One .eml file per recipient: the embedded default, and a way to look before sending."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.description = f"outbox {folder}"

    def connect(self) -> OutboxConnection:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create outbox folder {self.folder}: {exc.strerror}"
            ) from None
        return OutboxConnection(self.folder)


SECURITY = {"smtp": "plain", "smtp+starttls": "starttls", "smtps": "tls"}
DEFAULT_PORTS = {"plain": 25, "starttls": 587, "tls": 465}
_ENHANCED = re.compile(rb"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
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


def classify(code: int, reply: bytes | str, stage: str) -> DeliveryError:
    """The failure kind for a non-success reply: 4xx retry, 5.1.x and 5.2.1 bounce, 5.7.x
    and refusals of the sender stop the send, any other 5xx fails the one recipient."""
    if isinstance(reply, str):
        reply = reply.encode("utf-8", "replace")
    text = f"{code} {reply.decode('utf-8', 'replace')}".strip()
    enhanced = _ENHANCED.match(reply)
    if 400 <= code < 500:
        return TransientFailure(text)
    if enhanced and enhanced[2] == b"7":
        return PolicyFailure(f"the server refused the send: {text}")
    if enhanced and (enhanced[2] == b"1" or (enhanced[2], enhanced[3]) == (b"2", b"1")):
        return PermanentFailure(text, bounce=True)
    if stage in ("MAIL", "AUTH"):
        return PolicyFailure(f"the server refused the sender: {text}")
    if code >= 500:
        return PermanentFailure(text)
    return TransientFailure(f"unexpected reply to {stage}: {text}")


def _quote(address: str) -> str:
    """`<address>`; smtplib's quoteaddr parses every address, which is slow for plain ones."""
    if _PLAIN_ADDRESS.fullmatch(address):
        return f"<{address}>"
    return smtplib.quoteaddr(address)


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


def _payload(message: bytes) -> bytes:
    """The DATA section: dot-stuffed, CRLF-terminated, with the closing dot."""
    pieces = []
    start = 0
    # find() skips ahead much faster than replace() or a regex scan line by line.
    while (found := message.find(b"\n.", start)) != -1:
        pieces.append(message[start : found + 1])
        start = found + 1
    if pieces:
        pieces.append(message[start:])
        message = b".".join(pieces)
    if message.startswith(b"."):
        message = b"." + message
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    return message + b".\r\n"


class SmtpConnection:
    """One SMTP session reused for many messages, reopened after a 421, a dropped connection
    or `messages_per_connection` messages."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._smtp: smtplib.SMTP | None = None
        self._sent = 0
        self._pipelining = False

    def _session(self) -> smtplib.SMTP:
        if self._smtp is None:
            self._smtp = self._open()
            self._sent = 0
            self._pipelining = self._smtp.has_extn("pipelining")
        return self._smtp

    def _open(self) -> smtplib.SMTP:
        cfg = self.config
        context = cfg.ssl_context or ssl.create_default_context()
        where = f"{cfg.host}:{cfg.port}"
        smtp: smtplib.SMTP | None = None
        try:
            if cfg.security == "tls":
                smtp = smtplib.SMTP_SSL(
                    cfg.host,
                    cfg.port,
                    local_hostname=cfg.local_hostname,
                    timeout=cfg.timeout,
                    context=context,
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
                smtp.starttls(context=context)
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

    def send(self, envelope_from: str, recipient: str, message: bytes) -> None:
        smtp = self._session()
        ascii_only = envelope_from.isascii() and recipient.isascii()
        if not ascii_only and not smtp.has_extn("smtputf8"):
            raise PermanentFailure(
                f"{recipient} needs SMTPUTF8, which {self.config.host} does not offer"
            )
        try:
            if self._pipelining and ascii_only:
                self._pipelined_envelope(smtp, envelope_from, recipient)
            else:
                self._envelope(smtp, envelope_from, recipient, ascii_only)
            smtp.send(_payload(message))
        except smtplib.SMTPServerDisconnected as exc:
            self._drop()
            raise TransientFailure(
                f"connection lost before the message was accepted: {exc}"
            ) from None
        try:
            code, reply = smtp.getreply()
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

    def _envelope(
        self, smtp: smtplib.SMTP, envelope_from: str, recipient: str, ascii_only: bool
    ) -> None:
        code, reply = smtp.mail(envelope_from, [] if ascii_only else ["SMTPUTF8"])
        if code != 250:
            raise self._refused(code, reply, "MAIL")
        code, reply = smtp.rcpt(recipient)
        if code not in (250, 251):
            raise self._refused(code, reply, "RCPT")
        code, reply = smtp.docmd("DATA")
        if code != 354:
            raise self._refused(code, reply, "DATA")

    def _pipelined_envelope(self, smtp: smtplib.SMTP, envelope_from: str, recipient: str) -> None:
        """MAIL, RCPT and DATA in one write (RFC 2920): one round trip instead of three."""
        smtp.send(f"MAIL FROM:{_quote(envelope_from)}\r\nRCPT TO:{_quote(recipient)}\r\nDATA\r\n")
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

    def __enter__(self) -> SmtpConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SmtpTransport:
    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self.description = config.description

    def connect(self) -> SmtpConnection:
        """A connection that opens its session on the first message."""
        return SmtpConnection(self.config)


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


def open_transport(
    url: str,
    *,
    base_dir: Path,
    password: str = "",
    timeout: float = 60.0,
    messages_per_connection: int = 1000,
    ssl_context: ssl.SSLContext | None = None,
) -> Transport:
    """The transport named by a `[delivery] transport` URL."""
    if url.startswith("outbox:"):
        folder = Path(url.removeprefix("outbox:").removeprefix("//") or "outbox")
        return OutboxTransport(folder if folder.is_absolute() else base_dir / folder)
    if url.split("://", 1)[0] in SECURITY:
        return SmtpTransport(
            parse_smtp_url(
                url,
                password=password,
                timeout=timeout,
                messages_per_connection=messages_per_connection,
                ssl_context=ssl_context,
            )
        )
    raise ConfigError(
        f"delivery.transport {url!r} is not supported",
        hint="use smtp://, smtp+starttls://, smtps:// or outbox:DIR",
    )
