"""A send's connection threads share one processor; nothing else is moved."""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field

import pytest

from newsletter import affinity
from newsletter.app import App
from newsletter.clock import FixedClock
from newsletter.config import Settings
from newsletter.delivery import SendOptions, send_issue
from newsletter.transports import Connection, Transport

from .smtp_server import SmtpServer
from .test_delivery import WEEK, built, smtp_app, subscribe

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or len(os.sched_getaffinity(0)) < 2,
    reason="threads are placed on one processor on Linux with two or more processors only",
)


@dataclass
class WhereConnected:
    """The real transport, noting the processors each sending thread may run on."""

    inner: Transport
    seen: list[set[int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    description: str = ""

    def __post_init__(self) -> None:
        self.description = self.inner.description

    def connect(self) -> Connection:
        with self.lock:
            self.seen.append(os.sched_getaffinity(0))
        return self.inner.connect()

    def takes_utf8_addresses(self) -> bool:
        return self.inner.takes_utf8_addresses()


def _send(settings: Settings, clock: FixedClock, connections: int) -> list[set[int]]:
    with SmtpServer() as server:
        smtp = smtp_app(settings, clock, server)
        where = WhereConnected(smtp.transport)
        app = built(App.create(smtp.settings, clock=clock, transport=where))
        subscribe(app, 20)
        report = send_issue(app, WEEK, SendOptions(rate=0, connections=connections))
        app.close()
        smtp.close()
        assert report.sent == 20
        assert len(server.received) == 20
    return where.seen


def test_the_threads_of_a_send_share_one_processor(settings: Settings, clock: FixedClock) -> None:
    allowed = os.sched_getaffinity(0)
    seen = _send(settings, clock, connections=4)
    assert len(seen) == 4
    assert len(seen[0]) == 1
    assert seen[0] <= allowed
    assert all(processors == seen[0] for processors in seen)
    assert os.sched_getaffinity(0) == allowed  # the calling thread stays where it was


def test_a_single_connection_is_left_to_the_scheduler(
    settings: Settings, clock: FixedClock
) -> None:
    allowed = os.sched_getaffinity(0)
    assert _send(settings, clock, connections=1) == [allowed]


def test_the_current_processor_is_one_the_thread_may_use() -> None:
    assert affinity.current_processor() in os.sched_getaffinity(0)
