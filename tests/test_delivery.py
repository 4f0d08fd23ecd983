"""The delivery engine against a real SMTP server on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from newsletter.app import App
from newsletter.clock import FixedClock
from newsletter.config import Settings
from newsletter.db.models import (
    Delivery,
    DeliveryStatus,
    Event,
    EventKind,
    Issue,
    IssueStatus,
    Subscriber,
    SubscriberStatus,
)
from newsletter.delivery.send import Progress, SendOptions, dry_run, send_issue, send_test
from newsletter.errors import DeliveryError, StateError
from newsletter.feeds.store import fetch_sources
from newsletter.issue.build import build_issue
from newsletter.issue.periods import Week
from newsletter.subscribers.rules import add, get, unsubscribe
from newsletter.transport.outbox import outbox_name

from .conftest import small_tmpfs
from .smtp_server import SmtpServer

REPO = Path(__file__).resolve().parent.parent
WEEK = Week(2024, 47)
FAST = SendOptions(rate=0, connections=2)


def subscribe(app: App, count: int, start: int = 0) -> list[str]:
    emails = [f"reader{n:04d}@example.org" for n in range(start, start + count)]
    with app.transaction() as session:
        for n, email in enumerate(emails):
            add(session, email, name=f"Reader {n}", at=app.clock.now())
    return emails


def built(app: App) -> App:
    fetch_sources(app, [str(REPO / "examples" / "feed.xml")])
    build_issue(app, WEEK)
    return app


def smtp_app(settings: Settings, clock: FixedClock, server: SmtpServer, **delivery: object) -> App:
    changed = replace(
        settings,
        delivery=replace(settings.delivery, transport=server.url(), timeout=10, **delivery),  # type: ignore[arg-type]
    )
    return App.create(changed, clock=clock)


def statuses(app: App) -> Counter[DeliveryStatus]:
    with app.transaction() as session:
        return Counter(session.scalars(select(Delivery.status)))


@pytest.fixture
def server() -> SmtpServer:
    with SmtpServer() as running:
        yield running  # type: ignore[misc]


def test_sends_once_to_every_active_subscriber(
    settings: Settings, clock: FixedClock, server: SmtpServer
) -> None:
    app = built(smtp_app(settings, clock, server))
    emails = subscribe(app, 30)
    with app.transaction() as session:
        unsubscribe(session, get(session, emails[0]), at=clock.now(), source="test")
    seen: list[Progress] = []
    report = send_issue(app, WEEK, FAST, seen.append)
    assert report.sent == 29
    assert report.complete
    assert sorted(r.recipient for r in server.received) == emails[1:]
    assert seen[-1].done == 29
    assert statuses(app) == {DeliveryStatus.SENT: 29}
    with app.transaction() as session:
        issue = session.scalars(select(Issue)).one()
        assert issue.status is IssueStatus.SENT
    message = server.received[0].message()
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    with pytest.raises(StateError, match="already sent"):
        send_issue(app, WEEK, FAST)
    app.close()


def test_resume_after_interruption_sends_everyone_exactly_once(
    settings: Settings, clock: FixedClock, server: SmtpServer
) -> None:
    app = built(smtp_app(settings, clock, server))
    emails = subscribe(app, 60)
    stop = threading.Event()
    seen: list[Progress] = []

    def stop_part_way(count: int) -> None:
        if count >= 15:
            stop.set()

    server.handler.on_received = stop_part_way
    first = send_issue(app, WEEK, SendOptions(rate=0, connections=3, stop=stop), seen.append)
    # A connection may have one message on the wire and have begun the next when the
    # stop comes; it finishes both.
    assert 15 <= first.sent <= 15 + 2 * 3
    assert seen[-1].sent == first.sent
    assert len(server.received) == first.sent
    with app.transaction() as session:
        assert session.scalars(select(Issue)).one().status is IssueStatus.SENDING
    second = send_issue(app, WEEK, FAST)
    assert first.sent + second.sent == 60
    assert second.already_sent == first.sent
    assert Counter(r.recipient for r in server.received) == Counter(emails)
    app.close()


def test_more_connections_than_the_database_pool_holds(
    settings: Settings, clock: FixedClock, server: SmtpServer
) -> None:
    """SQLAlchemy's pool holds 15 connections; a send's SMTP connections must not each
    keep one for the whole send, or the 16th waits for ever."""
    app = built(smtp_app(settings, clock, server))
    emails = subscribe(app, 40)
    report = send_issue(app, WEEK, SendOptions(rate=0, connections=20))
    assert (report.sent, report.error) == (40, "")
    assert sorted(r.recipient for r in server.received) == emails
    app.close()


def test_unsubscribed_during_the_send_is_skipped(
    settings: Settings, clock: FixedClock, server: SmtpServer
) -> None:
    app = built(smtp_app(settings, clock, server))
    emails = subscribe(app, 10)
    stop = threading.Event()
    stop.set()
    send_issue(app, WEEK, SendOptions(rate=0, connections=1, stop=stop))  # snapshot only
    with app.transaction() as session:
        unsubscribe(session, get(session, emails[3]), at=clock.now(), source="one-click")
    report = send_issue(app, WEEK, FAST)
    assert report.sent == 9
    assert report.skipped == 1
    assert emails[3] not in {r.recipient for r in server.received}
    app.close()


def test_transient_failures_are_retried_with_backoff(settings: Settings, clock: FixedClock) -> None:
    replies = {"reader0001@example.org": ["451 4.3.0 Try later", "452 4.3.1 Full"]}
    with SmtpServer(replies=replies) as server:
        app = built(smtp_app(settings, clock, server))
        emails = subscribe(app, 5)
        started = clock.now()
        report = send_issue(app, WEEK, FAST)
    assert report.sent == 5
    assert report.complete
    assert Counter(r.recipient for r in server.received) == Counter(emails)
    # Two retries: waited at least 60 s and then 120 s of (fake) time.
    assert (clock.now() - started).total_seconds() >= 180
    with app.transaction() as session:
        row = session.scalars(
            select(Delivery).join(Subscriber).where(Subscriber.email == emails[1])
        ).one()
        assert row.attempts == 3
    app.close()


def test_retries_are_bounded(settings: Settings, clock: FixedClock) -> None:
    replies = {"reader0000@example.org": ["451 4.3.0 Try later"] * 10}
    with SmtpServer(replies=replies) as server:
        app = built(smtp_app(settings, clock, server, max_attempts=3))
        subscribe(app, 2)
        report = send_issue(app, WEEK, FAST)
    assert report.sent == 1
    assert list(report.failed) == ["gave up after 3 attempts: 451 4.3.0 Try later"]
    assert not report.complete
    app.close()


def test_hard_bounce_fails_the_row_and_marks_the_subscriber_bounced(
    settings: Settings, clock: FixedClock
) -> None:
    replies = {"reader0002@example.org": ["550 5.1.1 <reader0002@example.org>: no such user"]}
    with SmtpServer(replies=replies) as server:
        app = built(smtp_app(settings, clock, server))
        subscribe(app, 4)
        report = send_issue(app, WEEK, FAST)
    assert report.sent == 3
    assert report.failed == {"550 5.1.1 <address>: no such user": 1}
    with app.transaction() as session:
        bounced = get(session, "reader0002@example.org")
        assert bounced.status is SubscriberStatus.BOUNCED
        kinds = session.scalars(select(Event.kind).where(Event.subscriber_id == bounced.id))
        assert EventKind.BOUNCED in set(kinds)
    app.close()


def test_policy_refusal_stops_the_send_and_loses_nothing(
    settings: Settings, clock: FixedClock
) -> None:
    replies = {"reader0005@example.org": ["554 5.7.1 Sending rate exceeded, account paused"]}
    with SmtpServer(replies=replies) as server:
        app = built(smtp_app(settings, clock, server))
        emails = subscribe(app, 20)
        report = send_issue(app, WEEK, SendOptions(rate=0, connections=1))
        assert "5.7.1" in report.error
        assert report.sent == 5
        counts = statuses(app)
        assert counts[DeliveryStatus.QUEUED] == 15
        with app.transaction() as session:
            paused = get(session, "reader0005@example.org")
            assert paused.status is SubscriberStatus.ACTIVE  # not the recipient's fault
        resumed = send_issue(app, WEEK, SendOptions(rate=0, connections=1))
        assert resumed.sent == 15
        assert Counter(r.recipient for r in server.received) == Counter(emails)
    app.close()


def test_rows_caught_sending_are_uncertain_and_resent_only_on_request(
    settings: Settings, clock: FixedClock, server: SmtpServer
) -> None:
    app = built(smtp_app(settings, clock, server))
    subscribe(app, 6)
    stop = threading.Event()
    stop.set()
    send_issue(app, WEEK, SendOptions(rate=0, connections=1, stop=stop))
    with app.transaction() as session:  # as if the sender died mid-transaction
        row = session.scalars(select(Delivery).order_by(Delivery.id)).first()
        assert row is not None
        row.status = DeliveryStatus.SENDING
        row.lease_until = clock.now()
    report = send_issue(app, WEEK, FAST)
    assert report.sent == 5
    assert report.uncertain == 1
    assert not report.complete
    again = send_issue(app, WEEK, replace(FAST, resend_uncertain=True))
    assert again.sent == 1
    assert again.uncertain == 0
    assert len(server.received) == 6
    app.close()


def test_rows_of_a_sender_that_dies_mid_run_are_resent_when_asked(
    settings: Settings, clock: FixedClock, server: SmtpServer
) -> None:
    if settings.database.url.startswith("sqlite"):
        pytest.skip("on SQLite the only sender recovers every row as it starts")
    app = built(smtp_app(settings, clock, server))
    emails = subscribe(app, 6)
    stop = threading.Event()
    stop.set()
    send_issue(app, WEEK, SendOptions(rate=0, connections=1, stop=stop))  # snapshot only
    # Another sender is in the middle of one row; it dies, and its lease runs out mid-run.
    with app.engine.begin() as connection:
        last = connection.execute(select(func.max(Delivery.id))).scalar_one()
        connection.execute(
            update(Delivery)
            .where(Delivery.id == last)
            .values(
                status=DeliveryStatus.SENDING,
                claimed_by="elsewhere:1:dead/0",
                lease_until=clock.now() + timedelta(seconds=30),
            )
        )
    report = send_issue(app, WEEK, replace(FAST, resend_uncertain=True))
    assert (report.sent, report.uncertain) == (6, 0)
    assert sorted(r.recipient for r in server.received) == emails
    app.close()


def test_second_sender_on_sqlite_is_refused(
    settings: Settings, clock: FixedClock, server: SmtpServer
) -> None:
    if not settings.database.url.startswith("sqlite"):
        pytest.skip("PostgreSQL allows several senders")
    app = built(smtp_app(settings, clock, server))
    subscribe(app, 3)
    other = App.create(app.settings, clock=clock)
    errors: list[str] = []

    def try_second(progress: Progress) -> None:
        if not errors:
            with pytest.raises(StateError) as caught:
                send_issue(other, WEEK, FAST)
            errors.append(str(caught.value))

    send_issue(app, WEEK, FAST, try_second)
    assert errors
    assert "already running" in errors[0]
    other.close()
    app.close()


def test_test_send_records_nothing(
    settings: Settings, clock: FixedClock, server: SmtpServer
) -> None:
    app = built(smtp_app(settings, clock, server))
    subscribe(app, 3)
    report = send_test(app, WEEK, ["editor@example.org", "reader0001@example.org"])
    assert report.sent == 2
    assert [r.recipient for r in server.received] == [
        "editor@example.org",
        "reader0001@example.org",
    ]
    assert statuses(app) == {}
    with app.transaction() as session:
        assert session.scalars(select(Issue)).one().status is IssueStatus.DRAFT
    app.close()


def test_dry_run_builds_every_message_and_sends_none(
    settings: Settings, clock: FixedClock, server: SmtpServer
) -> None:
    app = built(smtp_app(settings, clock, server))
    subscribe(app, 7)
    report = dry_run(app, WEEK)
    assert report.sent == 7
    assert server.received == []
    assert statuses(app) == {}
    app.close()


def test_outbox_transport_writes_one_eml_per_recipient(
    settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    app = built(App.create(settings, clock=clock))
    emails = subscribe(app, 4)
    report = send_issue(app, WEEK, FAST)
    assert report.sent == 4
    files = sorted(p.name for p in (tmp_path / "outbox").glob("*.eml"))
    assert files == sorted(outbox_name(e, settings.list_id) for e in emails)
    assert statuses(app) == {DeliveryStatus.SENT: 4}
    app.close()


def test_an_unreachable_server_is_reported_with_its_hint_once(
    settings: Settings, clock: FixedClock
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    changed = replace(
        settings,
        delivery=replace(settings.delivery, transport=f"smtp://127.0.0.1:{port}", timeout=5),
    )
    app = built(App.create(changed, clock=clock))
    subscribe(app, 2)
    report = send_issue(app, WEEK, SendOptions(rate=0, connections=1))
    assert "cannot open an SMTP session" in report.error
    assert report.error.count(DeliveryError.hint) == 1, report.error
    app.close()


@pytest.fixture
def small_outbox(tmp_path: Path) -> Iterator[Path]:
    """The test's outbox folder on a 512 KiB disk, room for a few messages of ~100 KB."""
    with small_tmpfs(tmp_path / "outbox", "512k") as folder:
        yield folder


def test_a_full_outbox_pauses_the_send_with_nothing_in_doubt(
    settings: Settings, clock: FixedClock, small_outbox: Path
) -> None:
    app = built(App.create(settings, clock=clock))
    emails = subscribe(app, 12)
    # Options of its own: the error stops the send by setting the options' event.
    report = send_issue(app, WEEK, SendOptions(rate=0, connections=2))
    assert "No space left on device" in report.error
    written = {p.name: p.read_bytes() for p in small_outbox.iterdir()}
    assert all(name.endswith(".eml") for name in written), sorted(written)
    assert 0 < len(written) < 12
    counts = statuses(app)
    assert counts == {DeliveryStatus.SENT: len(written), DeliveryStatus.QUEUED: 12 - len(written)}
    # Space is made (the small disk goes away), and the same send resumes.
    subprocess.run(["umount", str(small_outbox)], check=True, timeout=30)
    resumed = send_issue(app, WEEK, SendOptions(rate=0, connections=2))
    assert resumed.complete, resumed
    assert resumed.sent == 12 - len(written)
    again = {p.name for p in small_outbox.iterdir()}
    assert not again & written.keys()
    assert again | written.keys() == {outbox_name(e, app.settings.list_id) for e in emails}
    app.close()
