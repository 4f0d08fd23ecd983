"""An SMTP server on loopback that fails on purpose, in the ways real mail servers fail.

Built on aiosmtpd. A seeded `FaultPolicy` decides, transaction by transaction, whether to
answer with a temporary refusal (421, which also closes the connection, 451, 452, 454), a
policy refusal (554 5.7.1), to drop the connection in the middle of DATA, to accept a
message and then vanish before saying so (the one case where a client cannot know), or to
answer slowly. Hard bounces (550 5.1.1) are decided per recipient, so an address that does
not exist keeps not existing on every retry, as it would at a real server.

Every accepted message is recorded with its recipient, so a test can count exactly how many
copies each recipient received. The server binds 127.0.0.1 on a free port only.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import default as default_policy
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from .smtp_server import ehlo_reply

TRANSIENT_REPLIES = (
    "421 4.3.2 Service not available, closing transmission channel",
    "451 4.3.0 Temporary local problem, try again later",
    "452 4.3.1 Insufficient system storage",
    "454 4.7.0 Throttling failure: maximum sending rate exceeded",
)
BOUNCE_REPLY = "550 5.1.1 The email account that you tried to reach does not exist"
POLICY_REPLY = "554 5.7.1 Message rejected under local policy"


@dataclass(frozen=True)
class FaultPolicy:
    """Shares (0..1) of each fault. `transient`, `policy`, `drop` and `lost_reply` are drawn
    per transaction from one seeded generator; `bounce` is fixed per recipient address."""

    seed: int = 0
    transient: float = 0.0
    bounce: float = 0.0
    policy: float = 0.0
    drop: float = 0.0
    lost_reply: float = 0.0
    slow: float = 0.0
    slow_seconds: float = 0.5
    reply_delay: float = 0.0  # added before every reply: a round trip on a slow network
    pipelining: bool = True  # advertised, as real relays do, so clients pipeline the envelope

    def bounces(self, recipient: str) -> bool:
        return random.Random(f"{self.seed}:{recipient.lower()}").random() < self.bounce


@dataclass(frozen=True)
class Received:
    mail_from: str
    recipient: str
    message_id: str
    size: int
    content: bytes | None


@dataclass
class FaultLog:
    """What the server did, read by tests from another thread under `lock`."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    received: list[Received] = field(default_factory=list)
    replies: Counter[str] = field(default_factory=Counter)
    bounced: set[str] = field(default_factory=set)
    dropped: int = 0
    lost_replies: list[str] = field(default_factory=list)
    connections: int = 0

    def count(self, what: str) -> None:
        with self.lock:
            self.replies[what] += 1


class FaultHandler:
    """aiosmtpd handler: decides each transaction's fate and records what was accepted."""

    def __init__(self, policy: FaultPolicy, *, keep_content: bool = True) -> None:
        self.policy = policy
        self.keep_content = keep_content
        self.log = FaultLog()
        self._random = random.Random(policy.seed)

    def roll(self, share: float) -> bool:
        # Only the server's event loop thread draws, so the sequence is reproducible
        # for a given order of transactions.
        return share > 0 and self._random.random() < share

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        return ehlo_reply(session, hostname, responses, pipelining=self.policy.pipelining)

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if self.policy.bounces(address):
            with self.log.lock:
                self.log.bounced.add(address.lower())
                self.log.replies["550"] += 1
            return BOUNCE_REPLY
        if self.roll(self.policy.transient / 2):
            reply = self._random.choice(TRANSIENT_REPLIES)
            self.log.count(reply[:3])
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.roll(self.policy.policy):
            self.log.count("554")
            return POLICY_REPLY
        if self.roll(self.policy.transient / 2):
            reply = self._random.choice(TRANSIENT_REPLIES)
            self.log.count(reply[:3])
            return reply
        content = envelope.original_content or b""
        message_id = _message_id(content)
        lose = self.roll(self.policy.lost_reply)
        with self.log.lock:
            for recipient in envelope.rcpt_tos:
                self.log.received.append(
                    Received(
                        mail_from=envelope.mail_from or "",
                        recipient=recipient.lower(),
                        message_id=message_id,
                        size=len(content),
                        content=content if self.keep_content else None,
                    )
                )
                if lose:
                    self.log.lost_replies.append(recipient.lower())
            self.log.replies["250"] += 1
        if lose:
            session.lose_reply = True  # type: ignore[attr-defined]
        return "250 2.0.0 OK queued"


def _message_id(content: bytes) -> str:
    head = content.split(b"\r\n\r\n", 1)[0]
    parsed = message_from_bytes(head + b"\r\n\r\n", policy=default_policy)
    return str(parsed.get("Message-ID", ""))


class _FaultySMTP(SMTP):
    """The protocol side of the faults: delays, closing after 421, drops inside DATA."""

    def __init__(self, handler: FaultHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.faults = handler
        with handler.log.lock:
            handler.log.connections += 1

    async def push(self, status: Any) -> None:
        policy = self.faults.policy
        if policy.reply_delay:
            await asyncio.sleep(policy.reply_delay)
        if self.faults.roll(policy.slow):
            await asyncio.sleep(policy.slow_seconds)
        if self.session is not None and getattr(self.session, "lose_reply", False):
            self.session.lose_reply = False  # type: ignore[attr-defined]
            await self._abort()
            return
        await super().push(status)
        text = status if isinstance(status, str) else status.decode("ascii", "replace")
        if text.startswith("421"):
            await self._abort()

    async def smtp_DATA(self, arg: str) -> None:
        ready = self.envelope is not None and self.envelope.rcpt_tos and not arg
        if ready and self.faults.roll(self.faults.policy.drop):
            await super().push("354 End data with <CR><LF>.<CR><LF>")
            await self._reader.readuntil(b"\r\n")
            with self.faults.log.lock:
                self.faults.log.dropped += 1
            await self._abort()
            return
        await super().smtp_DATA(arg)

    async def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        # Let connection_lost() run now: it stops this connection's command loop, which
        # would otherwise go on reading the rest of the buffered message as commands.
        for _ in range(3):
            await asyncio.sleep(0)


class _Controller(Controller):
    """Binds port 0 and learns the port the kernel chose, so parallel runs never collide."""

    def factory(self) -> SMTP:
        assert isinstance(self.handler, FaultHandler)
        return _FaultySMTP(self.handler, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class FaultServer:
    """Start with `with FaultServer(policy) as server:`; `server.port` is where it listens."""

    def __init__(self, policy: FaultPolicy, *, keep_content: bool = True) -> None:
        self.handler = FaultHandler(policy, keep_content=keep_content)
        self._controller = _Controller(
            self.handler,
            hostname="127.0.0.1",
            port=0,
            ready_timeout=10.0,
            enable_SMTPUTF8=True,
        )

    @property
    def port(self) -> int:
        return int(self._controller.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def log(self) -> FaultLog:
        return self.handler.log

    def per_recipient(self) -> Counter[str]:
        with self.log.lock:
            return Counter(r.recipient for r in self.log.received)

    def received(self) -> list[Received]:
        with self.log.lock:
            return list(self.log.received)

    def start(self) -> FaultServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
