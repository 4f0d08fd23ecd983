"""Crashes and concurrency, with real processes: `kill -9` at random points, several senders
on one PostgreSQL send, a second sender on SQLite, and the database failing under a send.

Invariants checked per recipient: nobody is lost; a second copy is possible only for a row
that was reported uncertain and then explicitly resent; at most one row per connection is
ever in doubt after a crash.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text

from newsletter.db.models import Delivery, DeliveryStatus

from .conftest import Cli
from .faultsmtp import FaultPolicy, FaultServer
from .test_faults import SendSetup, prepare

CONNECTIONS = 4
LEASE = 2
SEEDS = range(10)


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def _error_lines(stderr: str) -> int:
    """Lines of an error report, leaving out log records (the short test lease warns)."""
    return len([line for line in stderr.strip().splitlines() if " level=" not in line])


def _statuses(setup: SendSetup) -> Counter[DeliveryStatus]:
    return Counter(o.status for o in setup.outcomes().values())


def _in_flight(setup: SendSetup) -> set[str]:
    """The rows a killed sender left in the middle of their SMTP transaction."""
    return {e for e, o in setup.outcomes().items() if o.status is DeliveryStatus.SENDING}


def _finish(process: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"the sender did not finish within {timeout:g} s: {err}") from None
    return process.returncode, out, err


def _kill_at_random(
    setup: SendSetup, server: FaultServer, rng: random.Random, *options: str, **env: str
) -> None:
    """Start a send and SIGKILL it: before the first message or part-way through."""
    process = setup.start(server.url, *options, **env)
    try:
        if rng.random() < 0.25:
            time.sleep(rng.uniform(0.0, 1.5))
        else:
            base = len(server.received())
            _wait_for(
                lambda: len(server.received()) > base or process.poll() is not None,
                60,
                "the first message",
            )
            time.sleep(rng.uniform(0.0, 0.5))
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_kill_9_at_random_points_loses_nobody_and_duplicates_only_uncertain_rows(
    cli: Cli, database_url: str, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    setup = prepare(cli, database_url, tmp_path, 150)
    options = ("--connections", str(CONNECTIONS), "--rate", "0")
    # A short lease so that, on PostgreSQL, the restarted sender may take over the dead
    # one's rows within the test's time.
    env = {"NEWSLETTER_DELIVERY_LEASE_SECONDS": str(LEASE)}
    policy = FaultPolicy(seed=seed, reply_delay=0.003, transient=0.02)
    with FaultServer(policy, keep_content=False) as server:
        _kill_at_random(setup, server, rng, *options, **env)
        in_doubt = _in_flight(setup)
        assert len(in_doubt) <= CONNECTIONS, "more rows in doubt than connections"
        if database_url.startswith("postgresql"):
            # Another sender may still be alive as far as PostgreSQL knows: its rows are
            # declared uncertain only once their lease has run out.
            time.sleep(LEASE + 0.5)
        if seed % 2:
            code, out, err = _finish(setup.start(server.url, *options, **env))
            assert "Traceback" not in err, err
            outcomes = setup.outcomes()
            uncertain = {e for e, o in outcomes.items() if o.status is DeliveryStatus.UNCERTAIN}
            assert uncertain == in_doubt
            assert {o.status for o in outcomes.values()} <= {
                DeliveryStatus.SENT,
                DeliveryStatus.UNCERTAIN,
            }, out + err
            if uncertain:
                assert "uncertain" in (out + err).lower()
        code, out, err = _finish(setup.start(server.url, *options, "--resend-uncertain", **env))
        assert code == 0, out + err
        copies = server.per_recipient()
    assert _statuses(setup) == Counter({DeliveryStatus.SENT: 150})
    assert sorted(copies) == sorted(setup.emails), "a recipient was lost"
    duplicated = {e for e, n in copies.items() if n > 1}
    assert duplicated <= in_doubt
    assert max(copies.values()) <= 2


def test_sqlite_refuses_a_second_concurrent_sender(
    cli: Cli, database_url: str, tmp_path: Path
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("the single-sender rule is SQLite's; PostgreSQL shares sends")
    setup = prepare(cli, database_url, tmp_path, 60)
    with FaultServer(FaultPolicy(reply_delay=0.03), keep_content=False) as server:
        first = setup.start(server.url, "--connections", "1", "--rate", "0")
        _wait_for(lambda: len(server.received()) > 0, 60, "the first sender to start")
        second = setup.send(server.url, "--connections", "1", "--rate", "0", timeout=60)
        assert first.poll() is None, "the first sender finished too early for this test"
        assert second.returncode == 1
        assert "already running" in second.stderr
        assert _error_lines(second.stderr) == 1, second.stderr
        code, out, err = _finish(first)
        assert code == 0, out + err
        assert all(n == 1 for n in server.per_recipient().values())
        assert len(server.received()) == 60


@pytest.mark.slow
def test_three_senders_share_one_postgresql_send_exactly_once(
    cli: Cli, database_url: str, tmp_path: Path
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("several senders share a send on PostgreSQL only")
    setup = prepare(cli, database_url, tmp_path, 5000)
    with FaultServer(FaultPolicy(), keep_content=False) as server:
        senders = [setup.start(server.url, "--connections", "4", "--rate", "0") for _ in range(3)]
        results = [_finish(p, timeout=300) for p in senders]
        copies = server.per_recipient()
    for code, out, err in results:
        assert code == 0, out + err
    assert sorted(copies) == sorted(setup.emails)
    assert set(copies.values()) == {1}
    engine = create_engine(setup.database_url)
    try:
        with engine.connect() as connection:
            claimers = connection.execute(
                select(Delivery.claimed_by).where(Delivery.status == DeliveryStatus.SENT)
            ).scalars()
            processes = Counter(c.rsplit("/", 1)[0] for c in claimers)
    finally:
        engine.dispose()
    assert len(processes) == 3, f"not every sender took part: {processes}"


def test_sqlite_locked_by_another_process_pauses_the_send_and_it_completes(
    cli: Cli, database_url: str, tmp_path: Path
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("locks the SQLite file")
    setup = prepare(cli, database_url, tmp_path, 120)
    path = database_url.removeprefix("sqlite:///")
    with FaultServer(FaultPolicy(reply_delay=0.01), keep_content=False) as server:
        sender = setup.start(server.url, "--connections", "2", "--rate", "0")
        _wait_for(lambda: len(server.received()) > 5, 60, "the send to get going")
        holder = sqlite3.connect(path, timeout=30, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        paused_at = len(server.received())
        time.sleep(2.0)
        during = len(server.received())
        holder.execute("ROLLBACK")
        holder.close()
        code, out, err = _finish(sender)
        copies = server.per_recipient()
    assert code == 0, out + err
    assert during - paused_at <= 2, "messages went out while the ledger could not be written"
    assert sorted(copies) == sorted(setup.emails)
    assert set(copies.values()) == {1}


def test_postgresql_connections_killed_mid_send_give_a_clear_error_and_resume(
    cli: Cli, database_url: str, tmp_path: Path
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("terminates PostgreSQL backends")
    setup = prepare(cli, database_url, tmp_path, 400)
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    stop = threading.Event()

    def terminate_backends() -> None:
        # Only this test's own database: every other connection to it is the sender's.
        with admin.connect() as connection:
            while not stop.wait(0.15):
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )

    env = {"NEWSLETTER_DELIVERY_LEASE_SECONDS": str(LEASE)}
    options = ("--connections", "4", "--rate", "0")
    try:
        with FaultServer(FaultPolicy(reply_delay=0.005), keep_content=False) as server:
            sender = setup.start(server.url, *options, **env)
            _wait_for(lambda: len(server.received()) > 10, 60, "the send to get going")
            killer = threading.Thread(target=terminate_backends)
            killer.start()
            try:
                first_code, _, first_err = _finish(sender)
            finally:
                stop.set()
                killer.join(10)
            time.sleep(LEASE + 0.5)
            code, out, err = _finish(setup.start(server.url, *options, **env))
            assert code in (0, 1), out + err
            uncertain = {
                e for e, o in setup.outcomes().items() if o.status is DeliveryStatus.UNCERTAIN
            }
            code, out, err = _finish(setup.start(server.url, *options, "--resend-uncertain", **env))
            assert code == 0, out + err
            copies = server.per_recipient()
    finally:
        admin.dispose()
    assert sorted(copies) == sorted(setup.emails)
    assert {e for e, n in copies.items() if n > 1} <= uncertain
    # Checked last, so that the resume above is proven even while this part fails.
    assert "Traceback" not in first_err, first_err
    if first_code != 0:
        assert _error_lines(first_err) == 1, first_err
        assert "database" in first_err.lower()
