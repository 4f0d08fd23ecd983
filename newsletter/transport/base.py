"""What the delivery engine asks of a transport: connections that take one message at a time,
in three steps so that a sender can do its own work while the server answers.

    offer(sender, recipient)   the envelope goes out; with PIPELINING nobody waits for it
    transmit(message)          the envelope's replies are checked and the message sent
    confirm()                  the server's verdict on that message is awaited

Between `offer` and `transmit` the engine records in its ledger that the message is about to
go, and between `transmit` and `confirm` it prepares the next one; both waits then cost no
time of their own. `abandon` drops an offered transaction that must not go after all.
Failures are raised as the kinds in `failures.py`.

A send runs every connection as a task on one event loop, through `AsyncConnection`: the
same steps as coroutines. `Transport.stream()` gives one; a transport with nothing to wait
for (the outbox) wraps its blocking connection in `Blocking`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Protocol, Self


class Connection(Protocol):
    def offer(self, envelope_from: str, recipient: str) -> None: ...

    def transmit(self, message: bytes, data: bytes | None = None) -> None:
        """`data`, when given, is `message` already dot-stuffed and terminated for DATA."""
        ...

    def confirm(self) -> None: ...

    def abandon(self) -> None: ...

    def send(self, envelope_from: str, recipient: str, message: bytes) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Connection: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class AsyncConnection(Protocol):
    async def offer(self, envelope_from: str, recipient: str) -> None: ...

    async def transmit(self, message: bytes, data: bytes | None = None) -> None: ...

    async def confirm(self) -> None: ...

    async def abandon(self) -> None: ...

    async def close(self) -> None: ...


class Transport(Protocol):
    description: str

    def connect(self) -> Connection:
        """A blocking connection, for callers without an event loop."""
        ...

    def stream(self) -> AsyncConnection:
        """A connection for a task on an event loop."""
        ...

    def takes_utf8_addresses(self) -> bool:
        """Whether a non-ASCII local part can be delivered (SMTPUTF8, RFC 6531)."""
        ...


class StepwiseConnection(ABC):
    """`send` as the three steps in a row, and closing on leaving a `with` block."""

    @abstractmethod
    def offer(self, envelope_from: str, recipient: str) -> None: ...

    @abstractmethod
    def transmit(self, message: bytes, data: bytes | None = None) -> None: ...

    @abstractmethod
    def confirm(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def send(self, envelope_from: str, recipient: str, message: bytes) -> None:
        """Deliver one message to one recipient or raise one of the failure kinds."""
        self.offer(envelope_from, recipient)
        self.transmit(message)
        self.confirm()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Blocking:
    """A blocking connection behind the asynchronous steps, for a transport whose steps
    never wait on a network (the outbox writes a local file)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    async def offer(self, envelope_from: str, recipient: str) -> None:
        self.connection.offer(envelope_from, recipient)

    async def transmit(self, message: bytes, data: bytes | None = None) -> None:
        self.connection.transmit(message, data)

    async def confirm(self) -> None:
        self.connection.confirm()

    async def abandon(self) -> None:
        self.connection.abandon()

    async def close(self) -> None:
        self.connection.close()
