"""Per-issue statistics and subscriber growth, from a ledger and events built in the database."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from newsletter.app import App
from newsletter.config import NewsletterSettings
from newsletter.db.models import (
    Delivery,
    DeliveryStatus,
    EventKind,
    Issue,
    IssueStatus,
    Subscriber,
    SubscriberStatus,
)
from newsletter.delivery.stats import failure_reason, growth, issue_stats
from newsletter.delivery.variants import NOTHING_IN_SECTIONS
from newsletter.errors import NotFoundError
from newsletter.issue.periods import Week
from newsletter.subscribers import rules as subscribers

from .conftest import Cli

START = datetime(2024, 11, 19, 14, 0, tzinfo=UTC)

# (status, last reply) for each recipient of the 2024-W47 issue.
LEDGER = [
    (DeliveryStatus.SENT, "250 2.0.0 Ok: queued as 1"),
    (DeliveryStatus.SENT, "250 2.0.0 Ok: queued as 2"),
    (DeliveryStatus.SENT, "250 2.0.0 Ok: queued as 3"),
    (DeliveryStatus.SENT, "250 2.0.0 Ok: queued as 4"),
    (DeliveryStatus.SENT, "250 2.0.0 Ok: queued as 5"),
    (DeliveryStatus.FAILED, "550 5.1.1 <r5@example.com>: Recipient address rejected"),
    (DeliveryStatus.FAILED, "550-5.1.1 The email account that you tried to reach does not exist"),
    (DeliveryStatus.FAILED, "552 5.2.2 <r7@example.com>: Mailbox full"),
    (DeliveryStatus.DEFERRED, "451 4.7.1 Greylisted, try again later"),
    (DeliveryStatus.UNCERTAIN, ""),
    (DeliveryStatus.SKIPPED, ""),
    (DeliveryStatus.QUEUED, ""),
]


def _person(session: Session, n: int, at: datetime) -> Subscriber:
    return subscribers.create(
        session,
        f"r{n}@example.com",
        name=f"Reader {n}",
        status=SubscriberStatus.ACTIVE,
        at=at,
        source="test",
    )


@pytest.fixture
def ledger(app: App) -> list[int]:
    """Issue 2024-W47 sent to twelve readers (five sent over 100 s), and an older issue."""
    with app.transaction() as session:
        older = Issue(week="2024-W46", status=IssueStatus.SENT, created_at=START, subject="Old")
        issue = Issue(
            week="2024-W47",
            status=IssueStatus.SENDING,
            subject="The Weekly Round-up",
            created_at=START,
            send_started_at=START,
        )
        session.add_all([older, issue])
        people = [_person(session, n, START - timedelta(days=60)) for n in range(len(LEDGER))]
        session.flush()
        for n, (person, (status, reply)) in enumerate(zip(people, LEDGER, strict=True)):
            sent = START + timedelta(seconds=25 * n) if status is DeliveryStatus.SENT else None
            session.add(
                Delivery(
                    issue_id=issue.id,
                    subscriber_id=person.id,
                    status=status,
                    attempts=1,
                    last_reply=reply,
                    sent_at=sent,
                    updated_at=START,
                )
            )
        at = START + timedelta(hours=2)
        subscribers.mark_bounced(
            session, people[5], at=at, source="smtp", detail="5.1.1", issue_id=issue.id
        )
        for person in (people[0], people[0], people[1]):
            subscribers.record(
                session, person, EventKind.SOFT_BOUNCE, at=at, source="bounce", issue_id=issue.id
            )
        subscribers.record(
            session, people[2], EventKind.COMPLAINED, at=at, source="complaint", issue_id=issue.id
        )
        # Counted: sent readers who left one and six days after the start.
        subscribers.unsubscribe(session, people[2], at=START + timedelta(days=1), source="web")
        subscribers.unsubscribe(session, people[3], at=START + timedelta(days=6), source="web")
        # Not counted: too late, not a recipient of a sent copy, before the send.
        subscribers.unsubscribe(session, people[4], at=START + timedelta(days=8), source="web")
        subscribers.unsubscribe(session, people[9], at=START + timedelta(days=1), source="web")
        subscribers.unsubscribe(session, people[1], at=START - timedelta(hours=1), source="web")
        return [p.id for p in people]


def test_issue_stats_for_one_week(app: App, ledger: list[int]) -> None:
    (stats,) = issue_stats(app, Week.parse("2024-W47"))

    assert stats.week == "2024-W47"
    assert stats.status == "sending"
    assert (stats.recipients, stats.sent, stats.failed) == (12, 5, 3)
    assert (stats.deferred, stats.uncertain, stats.skipped, stats.pending) == (1, 1, 1, 1)
    assert stats.failed_by_reason == {
        "550 5.1.1 mailbox does not exist": 2,
        "552 5.2.2 mailbox full": 1,
    }
    assert (stats.hard_bounces, stats.soft_bounces, stats.complaints) == (1, 2, 1)
    assert stats.unsubscribed_7d == 2
    assert stats.started_at == START
    assert stats.finished_at == START + timedelta(seconds=100)
    assert stats.rate_per_second == pytest.approx(5 / 100)


def test_issue_stats_for_every_issue_newest_first(app: App, ledger: list[int]) -> None:
    weeks = [(s.week, s.recipients, s.rate_per_second) for s in issue_stats(app, None)]
    assert weeks == [("2024-W47", 12, pytest.approx(0.05)), ("2024-W46", 0, None)]


def test_a_week_without_an_issue_is_an_error(app: App) -> None:
    with pytest.raises(NotFoundError, match="no issue for 2024-W01"):
        issue_stats(app, Week.parse("2024-W01"))


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("550 5.1.1 <a@example.com>: User unknown", "550 5.1.1 mailbox does not exist"),
        ("550-5.7.26 Unauthenticated email", "550 5.7.26 failed authentication (DMARC)"),
        ("554 5.4.7 delivery time expired", "554 5.4.7"),
        ("550 Requested action not taken", "550"),
        ("connection refused by mx.example.com", "connection refused by mx.example.com"),
        ("", "no reply recorded"),
    ],
)
def test_failure_reasons_group_by_code(reply: str, reason: str) -> None:
    assert failure_reason(reply) == reason


def test_growth_per_week_in_the_publication_time_zone(app: App) -> None:
    # The clock reads Wednesday 2024-11-20 (2024-W47); the zone is New York.
    sunday_night_new_york = datetime(2024, 11, 18, 3, 0, tzinfo=UTC)  # 22:00 on the 17th
    with app.transaction() as session:
        a = _person(session, 1, datetime(2024, 11, 5, 12, 0, tzinfo=UTC))  # W45
        b = _person(session, 2, sunday_night_new_york)  # W46, though Monday in UTC
        c = _person(session, 3, datetime(2024, 11, 19, 12, 0, tzinfo=UTC))  # W47
        _person(session, 4, datetime(2024, 10, 1, 12, 0, tzinfo=UTC))  # before the window
        c.status = SubscriberStatus.PENDING
        subscribers.confirm(session, c, at=datetime(2024, 11, 20, 9, 0, tzinfo=UTC), source="web")
        subscribers.unsubscribe(session, a, at=sunday_night_new_york, source="web")
        subscribers.mark_bounced(
            session, b, at=datetime(2024, 11, 20, 10, 0, tzinfo=UTC), source="bounce", detail=""
        )

    rows = [(g.week, g.added, g.confirmed, g.unsubscribed, g.bounced) for g in growth(app, 3)]

    assert rows == [
        ("2024-W45", 1, 0, 0, 0),
        ("2024-W46", 1, 0, 1, 0),
        ("2024-W47", 1, 1, 0, 1),
    ]


def test_growth_counts_a_newsletter_s_own_changes_and_those_of_whole_addresses(
    app: App,
) -> None:
    """Joining or leaving the brief is the brief's; a bounce stops every newsletter."""
    brief_settings = replace(
        app.settings, newsletters=(*app.settings.newsletters, NewsletterSettings(slug="brief"))
    )
    weekly = replace(app, settings=brief_settings.for_newsletter("weekly"))
    brief = replace(app, settings=brief_settings.for_newsletter("brief"))
    at = datetime(2024, 11, 19, 12, 0, tzinfo=UTC)  # 2024-W47
    with app.transaction() as session:
        jane = _person(session, 1, at)  # joins the weekly
        omar = subscribers.create(
            session,
            "omar@example.com",
            name="Omar",
            status=SubscriberStatus.ACTIVE,
            at=at,
            source="test",
            newsletter="brief",
        )
        subscribers.unsubscribe(session, jane, at=at, source="web", newsletter="weekly")
        subscribers.mark_bounced(session, omar, at=at, source="bounce", detail="")

    def this_week(app: App) -> tuple[int, int, int, int]:
        g = growth(app, 1)[-1]
        return g.added, g.confirmed, g.unsubscribed, g.bounced

    assert this_week(weekly) == (1, 0, 1, 1)
    assert this_week(brief) == (1, 0, 0, 1)


def test_stats_command_table_and_json(cli: Cli, ledger: list[int]) -> None:
    table = cli("stats", "--week", "2024-W47", "--weeks", "2")
    assert table.exit_code == 0, table.output
    lines = [" ".join(line.split()) for line in table.stdout.splitlines()]
    assert "2024-W47 The Weekly Round-up [sending]" in lines
    assert "recipients 12" in lines
    assert "failed: 550 5.1.1 mailbox does not exist 2" in lines
    assert "unsubscribed within 7 days 2" in lines
    assert "rate 0.1/s" in lines
    assert "2024-W46" not in table.stdout.split("WEEK")[0]

    data = json.loads(cli("stats", "--json").stdout)
    assert [i["week"] for i in data["issues"]] == ["2024-W47", "2024-W46"]
    first = data["issues"][0]
    assert (first["sent"], first["failed"], first["hard_bounces"]) == (5, 3, 1)
    assert first["started_at"] == START.isoformat()
    assert len(data["growth"]) == 8


def test_stats_command_errors(cli: Cli) -> None:
    missing = cli("stats", "--week", "2024-W01")
    assert missing.exit_code == 1
    assert missing.stderr.startswith("Error: there is no issue for 2024-W01")
    assert cli("stats", "--week", "last week").exit_code == 2
    assert cli("stats", "--weeks", "0").exit_code == 2


def test_deliveries_by_combination_of_sections(app: App) -> None:
    """A combination stored in another order or spelling is the same combination; readers
    with nothing in their sections are counted apart from those who left before the send."""
    rows = [
        ("", DeliveryStatus.SENT, ""),
        ("", DeliveryStatus.SKIPPED, "the subscriber was no longer active at send time"),
        ("Europe", DeliveryStatus.SENT, ""),
        ("europe", DeliveryStatus.QUEUED, ""),
        ("Asia-Pacific\nEurope", DeliveryStatus.SENT, ""),
        ("Europe\nAsia-Pacific\n", DeliveryStatus.SENT, ""),
        ("Africa", DeliveryStatus.SKIPPED, NOTHING_IN_SECTIONS),
    ]
    with app.transaction() as session:
        issue = Issue(week="2024-W47", status=IssueStatus.SENDING, created_at=START)
        session.add(issue)
        people = [_person(session, n, START) for n in range(len(rows))]
        session.flush()
        for person, (sections, status, reply) in zip(people, rows, strict=True):
            session.add(
                Delivery(
                    issue_id=issue.id,
                    subscriber_id=person.id,
                    status=status,
                    last_reply=reply,
                    sections=sections,
                    updated_at=START,
                )
            )
    (stats,) = issue_stats(app, Week.parse("2024-W47"))
    assert (stats.recipients, stats.skipped, stats.nothing_in_sections) == (7, 2, 1)
    assert [(f.sections, f.recipients, f.sent, f.skipped) for f in stats.by_sections] == [
        ("all sections", 2, 1, 1),
        ("Europe", 2, 1, 0),
        ("Europe \u00b7 Asia-Pacific", 2, 2, 0),
        ("Africa", 1, 0, 1),
    ]
