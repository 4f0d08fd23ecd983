"""SMTP as a transport: the `[delivery] transport` URL, and the client of `smtp_client.py`
for an event loop (a send's connections) or, one step at a time, for blocking callers.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from newsletter.errors import ConfigError
from newsletter.transport.base import StepwiseConnection
from newsletter.transport.smtp_client import SmtpSession, data_section, dot_stuff

__all__ = [
    "DEFAULT_PORTS",
    "SECURITY",
    "SmtpConfig",
    "SmtpConnection",
    "SmtpTransport",
    "data_section",
    "dot_stuff",
    "parse_smtp_url",
]

_T = TypeVar("_T")
SECURITY = {"smtp": "plain", "smtp+starttls": "starttls", "smtps": "tls"}
DEFAULT_PORTS = {"plain": 25, "starttls": 587, "tls": 465}


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


class SmtpConnection(StepwiseConnection):
    """An `SmtpSession` for code that does not run an event loop (a test send, the
    confirmation mail of a web request): each step runs to its end on a loop of its own, in
    a thread of its own, so that it works whether or not the caller's thread already runs
    an event loop (an asynchronous web server's, a browser driver's). Both live only while
    the session is open."""

    def __init__(self, config: SmtpConfig) -> None:
        self.session = SmtpSession(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: ThreadPoolExecutor | None = None

    def _run(self, step: Coroutine[Any, Any, _T]) -> _T:
        if self._loop is None or self._worker is None:
            self._loop = asyncio.new_event_loop()
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smtp")
        try:
            return self._worker.submit(self._loop.run_until_complete, step).result()
        finally:
            if not self.session.is_open:
                self._end_loop()

    def _end_loop(self) -> None:
        loop, self._loop = self._loop, None
        worker, self._worker = self._worker, None
        if loop is None or worker is None:
            return

        def finish() -> None:
            # A closed transport lets go of its socket in a callback still to run.
            for _ in range(3):
                loop.run_until_complete(asyncio.sleep(0))
            loop.close()

        worker.submit(finish).result()
        worker.shutdown()

    def offers(self, extension: str) -> bool:
        return self._run(self.session.offers(extension))

    def offer(self, envelope_from: str, recipient: str) -> None:
        self._run(self.session.offer(envelope_from, recipient))

    def transmit(self, message: bytes, data: bytes | None = None) -> None:
        self._run(self.session.transmit(message, data))

    def confirm(self) -> None:
        self._run(self.session.confirm())

    def abandon(self) -> None:
        self._run(self.session.abandon())

    def close(self) -> None:
        if self._loop is not None:
            self._run(self.session.close())


class SmtpTransport:
    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self.description = config.description
        self._utf8: bool | None = None

    def connect(self) -> SmtpConnection:
        """A blocking connection that opens its session on the first message."""
        return SmtpConnection(self.config)

    def stream(self) -> SmtpSession:
        """A connection for an event loop, opening its session on the first message."""
        return SmtpSession(self.config)

    def takes_utf8_addresses(self) -> bool:
        """Asks the relay once per process: its extensions do not change between requests.

        Asked from inside a send's event loop (a message for a UTF-8 domain), the one
        question runs in a thread of its own: a loop cannot wait for a second one in its
        thread."""
        if self._utf8 is None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                self._utf8 = self._ask_relay()
            else:
                with ThreadPoolExecutor(1) as thread:
                    self._utf8 = thread.submit(self._ask_relay).result()
        return self._utf8

    def _ask_relay(self) -> bool:
        with self.connect() as connection:
            return connection.offers("smtputf8")


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
