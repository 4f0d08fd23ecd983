"""Several senders split the global rate between them through their heartbeats."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from newsletter.app import App
from newsletter.clock import FixedClock
from newsletter.db.models import Delivery, DeliveryStatus, Issue, IssueStatus
from newsletter.delivery.ledger import Ledger
from newsletter.delivery.rate_share import SENDER_STALE_SECONDS, heartbeat, leave

from .conftest import Cli
from .faultsmtp import FaultPolicy, FaultServer
from .test_faults import prepare


def _issue(app: App) -> int:
    with app.transaction() as session:
        issue = Issue(week="2024-W47", status=IssueStatus.SENDING, created_at=app.clock.now())
        session.add(issue)
        session.flush()
        return issue.id


def _sent_times(database_url: str) -> list[datetime]:
    """When each message of the send was recorded as sent, in order."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return sorted(
                connection.execute(
                    select(Delivery.sent_at).where(Delivery.status == DeliveryStatus.SENT)
                ).scalars()
            )
    finally:
        engine.dispose()


def test_heartbeats_count_the_connections_of_live_senders(app: App, clock: FixedClock) -> None:
    ledger = Ledger(app, _issue(app))
    assert heartbeat(ledger, "host-a:1", 4, clock.now()) == 4
    assert heartbeat(ledger, "host-b:2", 2, clock.now()) == 6
    assert heartbeat(ledger, "host-a:1", 4, clock.now()) == 6  # a repeat beat is not a sender

    clock.advance(SENDER_STALE_SECONDS + 1)
    assert heartbeat(ledger, "host-a:1", 4, clock.now()) == 4  # b died: its share comes back

    heartbeat(ledger, "host-b:2", 2, clock.now())
    leave(ledger, "host-a:1")
    assert heartbeat(ledger, "host-b:2", 2, clock.now() + timedelta(seconds=1)) == 2


def test_senders_starting_together_see_each_other(app: App, database_url: str) -> None:
    """Two first heartbeats at the same moment: without taking turns, each transaction
    counts only its own row and both senders take the whole rate."""
    if not database_url.startswith("postgresql"):
        pytest.skip("several senders share a send on PostgreSQL only")
    ledger = Ledger(app, _issue(app))

    def beat(name: str, start: threading.Barrier, totals: list[int]) -> None:
        start.wait(10)
        totals.append(heartbeat(ledger, name, 1, app.clock.now()))

    for attempt in range(20):
        start = threading.Barrier(2)
        totals: list[int] = []
        threads = [
            threading.Thread(target=beat, args=(f"{name}:{attempt}", start, totals))
            for name in ("a", "b")
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        # Every earlier pair is still live; the later of this pair must count its partner.
        assert max(totals) == 2 * (attempt + 1), totals


def test_two_senders_on_postgresql_keep_to_one_global_rate(
    cli: Cli, database_url: str, tmp_path: Path
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("several senders share a send on PostgreSQL only")
    count, rate = 120, 30
    setup = prepare(cli, database_url, tmp_path, count)
    with FaultServer(FaultPolicy(), keep_content=False) as server:
        options = ("--connections", "2", "--rate", str(rate))
        # A short lease makes small claims, so both senders get work from the start.
        short = {"NEWSLETTER_DELIVERY_LEASE_SECONDS": "8", "NEWSLETTER_DELIVERY_TIMEOUT": "2"}
        senders = [setup.start(server.url, *options, **short) for _ in range(2)]
        results = [p.communicate(timeout=120) for p in senders]
        copies = server.per_recipient()
    for process, (out, err) in zip(senders, results, strict=True):
        assert process.returncode == 0, out + err
    assert sorted(copies) == sorted(setup.emails)
    times = _sent_times(setup.database_url)
    span = (times[-1] - times[0]).total_seconds()
    # At the global rate the send takes about count / rate = 4 s; two senders each taking
    # the whole rate would finish in half that.
    assert span >= 0.75 * count / rate, f"{count} messages in {span:.2f} s exceed {rate}/s"
    # Nor is there a burst: no two-second window holds more than the rate allows (plus one
    # token of burst per connection), including the moment the second sender joins.
    window = timedelta(seconds=2)
    busiest = max(sum(1 for t in times[i:] if t - start < window) for i, start in enumerate(times))
    assert busiest <= 2 * rate + 4, f"{busiest} messages within two seconds at {rate}/s"


def test_a_sender_with_nothing_to_do_leaves_the_whole_rate_to_the_others(
    cli: Cli, database_url: str, tmp_path: Path
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("several senders share a send on PostgreSQL only")
    count, rate = 180, 30
    setup = prepare(cli, database_url, tmp_path, count)
    # A long lease makes large claims: the first sender takes every row at once, and the
    # second has nothing to do but wait in case the first dies.
    long = {"NEWSLETTER_DELIVERY_LEASE_SECONDS": "40", "NEWSLETTER_DELIVERY_TIMEOUT": "2"}
    options = ("--connections", "2", "--rate", str(rate))
    engine = create_engine(setup.database_url)
    try:
        with FaultServer(FaultPolicy(), keep_content=False) as server:
            busy = setup.start(server.url, *options, **long)
            deadline = time.monotonic() + 30
            claimed = 0
            while claimed < count and time.monotonic() < deadline:
                time.sleep(0.05)
                with engine.connect() as connection:
                    claimed = connection.execute(
                        select(func.count()).where(Delivery.claimed_by != "")
                    ).scalar_one()
            assert claimed == count
            idle = setup.start(server.url, *options, **long)
            results = [p.communicate(timeout=120) for p in (busy, idle)]
        for process, (out, err) in zip((busy, idle), results, strict=True):
            assert process.returncode == 0, out + err
    finally:
        engine.dispose()
    times = _sent_times(setup.database_url)
    span = (times[-1] - times[0]).total_seconds()
    # Alone at the whole rate the send takes count / rate = 6 s; halved by an idle sender's
    # share, it would take about 10 s.
    assert span < 8, f"{count} messages took {span:.2f} s at {rate}/s"
