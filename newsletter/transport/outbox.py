"""Where finished messages go: an SMTP server, or an outbox folder of .eml files.

The delivery engine only sees `Transport.connect()` and the stepwise `Connection` of
`connection.py`; which transport it gets is decided by the `[delivery] transport` URL in
`open_transport`, the one place that reads it.
"""

from __future__ import annotations

import contextlib
import email.policy
import hashlib
import os
import re
import ssl
from email.parser import BytesHeaderParser
from pathlib import Path

from newsletter.errors import ConfigError
from newsletter.transport.base import Blocking, Connection, StepwiseConnection, Transport
from newsletter.transport.failures import (
    PermanentFailure,
    PolicyFailure,
    ServerUnavailable,
    TransientFailure,
    UncertainOutcome,
    classify,
)
from newsletter.transport.smtp import (
    SECURITY,
    SmtpConfig,
    SmtpConnection,
    SmtpTransport,
    parse_smtp_url,
)

__all__ = [
    "Connection",
    "OutboxTransport",
    "PermanentFailure",
    "PolicyFailure",
    "ServerUnavailable",
    "SmtpConfig",
    "SmtpConnection",
    "SmtpTransport",
    "TransientFailure",
    "Transport",
    "UncertainOutcome",
    "classify",
    "open_transport",
    "outbox_name",
    "parse_smtp_url",
]

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]")


def outbox_name(recipient: str, list_id: str = "") -> str:
    """The file for `recipient`'s message of the list `list_id`: readable, and unique because
    it ends with a digest of the exact address (`jürgen@` and `j_rgen@` look alike once made
    safe for a file name) and of the list, so that a reader of two newsletters keeps both."""
    key = f"{recipient}\0{list_id}" if list_id else recipient
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]
    return f"{_UNSAFE.sub('_', recipient)[:150]}.{digest}.eml"


def list_id_of(message: bytes) -> str:
    """The List-Id of a message as it would be sent ("" for one without), as the name of the
    list between its angle brackets."""
    end = message.find(b"\r\n\r\n")
    headers = BytesHeaderParser(policy=email.policy.default).parsebytes(
        message if end < 0 else message[: end + 4]
    )
    value = str(headers.get("List-Id", ""))
    return value[value.rfind("<") + 1 : value.rfind(">")] if "<" in value else value.strip()


class OutboxConnection(StepwiseConnection):
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._recipient: str | None = None

    def offer(self, envelope_from: str, recipient: str) -> None:
        self._recipient = recipient

    def transmit(self, message: bytes, data: bytes | None = None) -> None:
        recipient, self._recipient = self._recipient, None
        if recipient is None:
            raise TransientFailure("no recipient was offered before the message")
        target = self.folder / outbox_name(recipient, list_id_of(message))
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        # Written whole and renamed, so a crash never leaves half a message behind.
        try:
            with open(tmp, "wb") as handle:
                handle.write(message)
            os.replace(tmp, target)
        except OSError as exc:
            # Nothing was handed over, so nothing is in doubt; a full or read-only folder
            # is no recipient's fault either: the send pauses with every message queued.
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise ServerUnavailable(
                f"cannot write to the outbox {self.folder}: {exc.strerror or exc}"
            ) from None

    def confirm(self) -> None:
        return None

    def abandon(self) -> None:
        self._recipient = None

    def close(self) -> None:
        return None


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

    def stream(self) -> Blocking:
        return Blocking(self.connect())

    def takes_utf8_addresses(self) -> bool:
        return True


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
