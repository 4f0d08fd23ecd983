"""Where finished messages go: an SMTP server, or an outbox folder of .eml files.

The delivery engine only sees `Transport.connect()` and `Connection.send()`; which one it
gets is decided by the `[delivery] transport` URL in `open_transport`, the one place that
reads it. Failures are reported as the three kinds the ledger distinguishes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from types import TracebackType
from typing import Protocol

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


def open_transport(
    url: str, *, base_dir: Path, password: str = "", timeout: float = 60.0
) -> Transport:
    """The transport named by a `[delivery] transport` URL."""
    if url.startswith("outbox:"):
        folder = Path(url.removeprefix("outbox:").removeprefix("//") or "outbox")
        return OutboxTransport(folder if folder.is_absolute() else base_dir / folder)
    raise ConfigError(
        f"delivery.transport {url!r} is not supported",
        hint="use smtp://, smtp+starttls://, smtps:// or outbox:DIR",
    )
