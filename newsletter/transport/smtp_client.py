"""The SMTP client on asyncio streams: one session per connection, reused for many messages,
with the envelope pipelined (RFC 2920) where the server offers it.

Every connection of a send is a task on one event loop, so a connection waiting for the
server costs nothing but a registered socket. Replies become the failure kinds of
`failures.py` here, so nothing above this module reads a reply code.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import ssl
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from newsletter.errors import DeliveryError
from newsletter.transport.failures import (
    PermanentFailure,
    PolicyFailure,
    ServerUnavailable,
    TransientFailure,
    UncertainOutcome,
    classify,
)

if TYPE_CHECKING:
    from newsletter.transport.smtp import SmtpConfig

_LEADING_DOT = re.compile(rb"\n\.")
_REPLY = re.compile(rb"([2-5][0-9][0-9])([ -]?)(.*?)\r?\n?\Z", re.DOTALL)
WRITE_HIGH_WATER = 1 << 20  # a whole message is handed to the kernel before `drain` waits


class SessionLost(ConnectionError):
    """The server closed the session or answered with something that is not SMTP."""


def dot_stuff(lines: bytes) -> bytes:
    """Double the dot that starts any line (RFC 5321, 4.5.2); `lines` starts at a line start."""
    if b"\n." in lines:
        lines = _LEADING_DOT.sub(b"\n..", lines)
    return b"." + lines if lines.startswith(b".") else lines


def data_section(message: bytes) -> bytes:
    """The DATA section: dot-stuffed, CRLF-terminated, with the closing dot."""
    message = dot_stuff(message)
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    return message + b".\r\n"


def _path(address: str) -> str:
    """`<address>` for MAIL FROM and RCPT TO; the address was checked when it was stored."""
    if any(c in address for c in "\r\n<>"):
        raise PermanentFailure(f"{address!r} cannot be written into an SMTP envelope")
    return f"<{address}>"


@dataclass(frozen=True)
class _Offer:
    envelope_from: str
    recipient: str
    pipelined: bool  # the envelope went out in `offer`; its three replies are still unread


class SmtpSession:
    """One SMTP connection reused for many messages, reopened after a 421, a dropped
    connection or `messages_per_connection` messages. The steps are those of
    `transport.base.AsyncConnection`."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._extensions: dict[str, str] = {}
        self._sent = 0
        self._offer: _Offer | None = None

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    async def offers(self, extension: str) -> bool:
        await self._session()
        return extension.lower() in self._extensions

    async def _session(self) -> None:
        if self._writer is None:
            await self._open()
            self._sent = 0

    async def _open(self) -> None:
        cfg = self.config
        where = f"{cfg.host}:{cfg.port}"
        context = cfg.ssl_context or ssl.create_default_context()
        tls = cfg.security == "tls"
        try:
            async with asyncio.timeout(cfg.timeout):
                self._reader, self._writer = await asyncio.open_connection(
                    cfg.host,
                    cfg.port,
                    ssl=context if tls else None,
                    server_hostname=cfg.host if tls else None,
                )
            self._writer.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
            await self._expect(b"", 220, "EHLO")
            await self._hello()
            if cfg.security == "starttls":
                if "starttls" not in self._extensions:
                    raise PolicyFailure(
                        f"{where} does not offer STARTTLS; refusing to send in plain text",
                        hint="check the server, or use smtps:// on port 465",
                    )
                await self._expect(b"STARTTLS\r\n", 220, "STARTTLS")
                async with asyncio.timeout(cfg.timeout):
                    await self._writer.start_tls(context, server_hostname=cfg.host)
                await self._hello()
            if cfg.username:
                if cfg.security == "plain":
                    raise PolicyFailure(
                        "refusing to send the SMTP password over a connection without TLS",
                        hint="use smtp+starttls:// or smtps://",
                    )
                await self._login(where)
        except ssl.SSLCertVerificationError as exc:
            self._drop()
            raise PolicyFailure(
                f"the certificate of {where} cannot be trusted: {exc.verify_message}",
                hint="the server must present a certificate valid for its name",
            ) from None
        except OSError as exc:
            self._drop()
            reason = str(exc) or type(exc).__name__
            raise ServerUnavailable(f"cannot open an SMTP session with {where}: {reason}") from None
        except DeliveryError:
            self._drop()
            raise

    async def _hello(self) -> None:
        name = self.config.local_hostname or "localhost"
        code, lines = await self._command(f"EHLO {name}\r\n".encode("ascii"))
        if code != 250:
            raise classify(code, b" ".join(lines), "EHLO")
        self._extensions = {}
        for line in lines[1:]:
            keyword, _, params = line.decode("ascii", "replace").partition(" ")
            self._extensions[keyword.lower()] = params

    async def _login(self, where: str) -> None:
        cfg = self.config
        mechanisms = self._extensions.get("auth", "").upper().split()
        if "PLAIN" in mechanisms:
            secret = f"\0{cfg.username}\0{cfg.password}".encode()
            code, lines = await self._command(b"AUTH PLAIN " + base64.b64encode(secret) + b"\r\n")
        elif "LOGIN" in mechanisms:
            code, lines = await self._command(b"AUTH LOGIN\r\n")
            for answer in (cfg.username, cfg.password):
                if code != 334:
                    break
                code, lines = await self._command(base64.b64encode(answer.encode()) + b"\r\n")
        else:
            raise PolicyFailure(f"{where} offers no login this client can use (PLAIN, LOGIN)")
        if code != 235:
            text = b" ".join(lines).decode("utf-8", "replace")
            raise PolicyFailure(
                f"{where} refused the login for {cfg.username!r}: {code} {text}",
                hint="check the user in [delivery] transport and NEWSLETTER_SMTP_PASSWORD",
            )

    async def _expect(self, command: bytes, code: int, stage: str) -> None:
        got, lines = await self._command(command)
        if got != code:
            raise classify(got, b" ".join(lines), stage)

    async def _command(self, command: bytes) -> tuple[int, list[bytes]]:
        if command:
            self._write(command)
            await self._drain()
        return await self._reply()

    def _write(self, data: bytes) -> None:
        if self._writer is None:
            raise SessionLost("the session is closed")
        self._writer.write(data)

    async def _drain(self) -> None:
        """Wait while more than a whole message is still to be written; a lost connection
        shows at the next reply."""
        if self._writer is None:
            raise SessionLost("the session is closed")
        if self._writer.transport.get_write_buffer_size() > WRITE_HIGH_WATER:
            async with asyncio.timeout(self.config.timeout):
                await self._writer.drain()

    async def _reply(self) -> tuple[int, list[bytes]]:
        """One reply: its code and the text of each line."""
        if self._reader is None:
            raise SessionLost("the session is closed")
        lines: list[bytes] = []
        async with asyncio.timeout(self.config.timeout):
            while True:
                line = await self._reader.readline()
                if not line:
                    raise SessionLost("the server closed the connection")
                match = _REPLY.match(line)
                if match is None:
                    raise SessionLost(f"not an SMTP reply: {line[:80]!r}")
                lines.append(match[3].rstrip(b"\r\n"))
                if match[2] != b"-":
                    return int(match[1]), lines

    async def offer(self, envelope_from: str, recipient: str) -> None:
        await self._session()
        ascii_only = envelope_from.isascii() and recipient.isascii()
        if not ascii_only and "smtputf8" not in self._extensions:
            raise PermanentFailure(
                f"{recipient} needs SMTPUTF8, which {self.config.host} does not offer"
            )
        pipelined = "pipelining" in self._extensions
        if pipelined:
            # MAIL, RCPT and DATA in one write: their replies are read by `transmit`.
            await self._guard(self._send_envelope(envelope_from, recipient))
        self._offer = _Offer(envelope_from, recipient, pipelined)

    async def _send_envelope(self, envelope_from: str, recipient: str) -> None:
        utf8 = "" if envelope_from.isascii() and recipient.isascii() else " SMTPUTF8"
        mail, rcpt = _path(envelope_from), _path(recipient)
        self._write(f"MAIL FROM:{mail}{utf8}\r\nRCPT TO:{rcpt}\r\nDATA\r\n".encode())
        await self._drain()

    async def transmit(self, message: bytes, data: bytes | None = None) -> None:
        offer, self._offer = self._offer, None
        if offer is None or self._writer is None:
            raise TransientFailure("no transaction was offered before the message")
        if offer.pipelined:
            await self._guard(self._pipelined_replies())
        else:
            await self._guard(self._envelope(offer.envelope_from, offer.recipient))
        self._write(data if data is not None else data_section(message))
        await self._guard(self._drain())

    async def confirm(self) -> None:
        if self._writer is None:
            raise UncertainOutcome("the session closed before the server answered the message")
        try:
            code, lines = await self._reply()
        except OSError as exc:
            self._drop()
            raise UncertainOutcome(
                f"no answer after the message was transmitted ({exc or 'timed out'}); "
                "it may have been accepted"
            ) from None
        if code != 250:
            raise await self._refused(code, lines, "DATA")
        self._sent += 1
        if self._sent >= self.config.messages_per_connection:
            await self.close()

    async def abandon(self) -> None:
        """Ending the session before the end of data makes the server discard the transaction
        (RFC 5321, 3.8); RSET cannot be sent once the server may be reading the message."""
        self._offer = None
        self._drop()

    async def _guard(self, step: Awaitable[None]) -> None:
        """Await a step before the end of data: a lost session there loses no message."""
        try:
            await step
        except OSError as exc:
            self._drop()
            raise TransientFailure(
                f"connection lost before the message was accepted: {exc or 'timed out'}"
            ) from None

    async def _envelope(self, envelope_from: str, recipient: str) -> None:
        utf8 = "" if envelope_from.isascii() and recipient.isascii() else " SMTPUTF8"
        for command, stage, codes in (
            (f"MAIL FROM:{_path(envelope_from)}{utf8}\r\n", "MAIL", (250,)),
            (f"RCPT TO:{_path(recipient)}\r\n", "RCPT", (250, 251)),
            ("DATA\r\n", "DATA", (354,)),
        ):
            code, lines = await self._command(command.encode())
            if code not in codes:
                raise await self._refused(code, lines, stage)

    async def _pipelined_replies(self) -> None:
        (mail, mail_text), (rcpt, rcpt_text), (data, data_text) = [
            await self._reply() for _ in range(3)
        ]
        if data == 354 and (mail != 250 or rcpt not in (250, 251)):
            await self._command(b".\r\n")  # ends the empty transaction the server opened anyway
        if mail != 250:
            raise await self._refused(mail, mail_text, "MAIL")
        if rcpt not in (250, 251):
            raise await self._refused(rcpt, rcpt_text, "RCPT")
        if data != 354:
            raise await self._refused(data, data_text, "DATA")

    async def _refused(self, code: int, lines: list[bytes], stage: str) -> DeliveryError:
        """Map the reply, and leave the session ready for the next message (RSET) or closed."""
        if code == 421:
            self._drop()
        elif self._writer is not None:
            try:
                await self._command(b"RSET\r\n")
            except OSError:
                self._drop()
        return classify(code, b"\n".join(lines), stage)

    def _drop(self) -> None:
        """Close the connection at once, without a goodbye."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.transport.abort()

    async def close(self) -> None:
        writer = self._writer
        if writer is None:
            return
        with contextlib.suppress(OSError):
            await self._command(b"QUIT\r\n")
        self._writer = self._reader = None
        writer.close()
        with contextlib.suppress(OSError):
            async with asyncio.timeout(self.config.timeout):
                await writer.wait_closed()
