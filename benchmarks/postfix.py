"""What the send benchmarks share: Postfix's smtp-sink on a free loopback port, the paths of
Postfix's tools, the demo data the benchmarks send, and readers of the default newsletter."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, insert, literal, select

from newsletter.db.models import Subscriber, SubscriberStatus, Subscription, SubscriptionStatus

REPO = Path(__file__).resolve().parent.parent
FEED = REPO / "newsletter" / "data" / "feed.xml"
WEEK = "2024-W47"
SINK = "/usr/sbin/smtp-sink"
SOURCE = "/usr/sbin/smtp-source"


def add_readers(connection: Connection, emails: list[str], now: datetime) -> None:
    """Active subscribers of the default newsletter, every section, in two statements."""
    connection.execute(
        insert(Subscriber),
        [
            {
                "email": email,
                "name": f"Reader Number {n}",
                "status": SubscriberStatus.ACTIVE,
                "subscribed_at": now,
                "created_at": now,
                "updated_at": now,
                "confirmed_at": now,
                "consent_source": "benchmark",
                "soft_bounces": 0,
            }
            for n, email in enumerate(emails)
        ],
    )
    connection.execute(
        insert(Subscription).from_select(
            ["subscriber_id", "newsletter", "status", "sections", "created_at", "updated_at"],
            select(
                Subscriber.id,
                literal("weekly"),
                literal(SubscriptionStatus.ACTIVE.value),
                literal(""),
                Subscriber.created_at,
                Subscriber.updated_at,
            ).where(Subscriber.email.in_(emails)),
        )
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def smtp_sink() -> Iterator[int]:
    """smtp-sink accepting everything on loopback; yields its port once it answers."""
    port = free_port()
    process = subprocess.Popen(
        [SINK, "-u", "nobody", f"127.0.0.1:{port}", "1024"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.05)
    try:
        yield port
    finally:
        process.terminate()
        process.wait(10)
