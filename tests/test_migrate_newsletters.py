"""Migration 0011 turns the previous release's data into several newsletters' shape, losing
nothing, on SQLite and PostgreSQL.

Each test starts from a database made by the previous release's migration head (0010) and
filled as that release left it (`release_0010.py`): subscribers in every standing, their
history, a sent issue, an issue whose send stopped half-way, a draft with overrides, counts.
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from newsletter.app import App
from newsletter.clock import FixedClock
from newsletter.config import (
    DatabaseSettings,
    DeliverySettings,
    NewsletterSettings,
    Secrets,
    Settings,
)
from newsletter.db.models import (
    Base,
    Delivery,
    Event,
    Issue,
    IssueStatus,
    Subscriber,
    Subscription,
    SubscriptionStatus,
)
from newsletter.db.session import (
    alembic_config,
    current_revision,
    head_revision,
    make_engine,
    upgrade,
)
from newsletter.delivery.send import SendOptions, send_issue
from newsletter.errors import StateError
from newsletter.issue.periods import Week
from newsletter.subscribers.subscriptions import receiving

from .conftest import PG_ENV, SECRET_KEY, Cli
from .release_0010 import (
    DRAFT_WEEK,
    HALF_SENT_WEEK,
    NOW,
    READERS,
    RELEASE,
    RESUMED,
    SENT_WEEK,
    create_0010,
    populate,
)
from .smtp_server import SmtpServer

LIST_EVENTS = {"subscribed", "confirmed", "unsubscribed", "resubscribed"}
Rows = dict[str, list[tuple[Any, ...]]]


@pytest.fixture(params=["sqlite", "postgresql"])
def blank_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of this test's own, with no tables at all."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'release.db'}"
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"PostgreSQL migration tests need {PG_ENV} naming a server")
    name = f"nl_migrate_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        reason = str(exc.orig).strip().splitlines()[0]
        pytest.skip(f"PostgreSQL at {PG_ENV} is unavailable: {reason}")
    yield make_url(base).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def old(blank_url: str) -> Iterator[Engine]:
    """The previous release's database, as it left it."""
    engine = make_engine(blank_url)
    create_0010(engine)
    yield engine
    engine.dispose()


def columns(engine: Engine) -> dict[str, list[str]]:
    with engine.connect() as connection:
        found = inspect(connection)
        return {
            name: [c["name"] for c in found.get_columns(name)]
            for name in found.get_table_names()
            if name != "alembic_version"
        }


def dump(engine: Engine, shape: dict[str, list[str]]) -> Rows:
    """Every row of these tables, these columns only, in a fixed order."""
    with engine.connect() as connection:
        return {
            name: sorted(
                (
                    tuple(row)
                    for row in connection.execute(text(f"SELECT {', '.join(cols)} FROM {name}"))  # noqa: S608
                ),
                key=repr,
            )
            for name, cols in shape.items()
        }


def test_migration_keeps_every_row_of_every_table(old: Engine) -> None:
    shape = columns(old)
    before = dump(old, shape)
    assert all(before.values()), [name for name, rows in before.items() if not rows]
    upgrade(old)
    assert set(columns(old)) == {*shape, "subscriptions"}
    after = dump(old, shape)
    assert {n: len(r) for n, r in after.items()} == {n: len(r) for n, r in before.items()}
    assert after == before


def test_every_subscriber_gets_one_subscription_to_the_default_newsletter(old: Engine) -> None:
    with old.connect() as connection:
        before = {
            row.email: row
            for row in connection.execute(
                text(
                    "SELECT id, email, status, subscribed_at, updated_at, unsubscribed_at,"
                    " consent_source, consent_text FROM subscribers"
                )
            )
        }
    upgrade(old)
    # A bounced address keeps its subscription: the suppression is the address's.
    expected = {s: s for s in ("active", "pending", "unsubscribed")} | {"bounced": "active"}
    with Session(old) as session:
        rows = session.execute(select(Subscriber, Subscription).join(Subscription)).all()
        assert Counter(s.email for s, _ in rows) == Counter(r.email for r in READERS)
        for subscriber, subscription in rows:
            old_row = before[subscriber.email]
            assert subscriber.status == old_row.status  # the address keeps its standing
            assert subscription.newsletter == "weekly"
            assert subscription.status == expected[old_row.status]
            assert subscription.sections == ""
            assert (subscription.consent_source, subscription.consent_text) == (
                old_row.consent_source,
                old_row.consent_text,
            )
        readers = session.scalars(
            select(Subscriber.email).join(Subscription, receiving("weekly"))
        ).all()
    with old.connect() as connection:
        kept = connection.execute(
            text(
                "SELECT count(*) FROM subscriptions a JOIN subscribers b"
                " ON b.id = a.subscriber_id"
                " WHERE a.created_at = b.subscribed_at AND a.updated_at = b.updated_at"
                " AND (a.unsubscribed_at = b.unsubscribed_at"
                " OR (a.unsubscribed_at IS NULL AND b.unsubscribed_at IS NULL))"
            )
        ).scalar_one()
    assert kept == len(READERS)  # every date kept, to the microsecond
    wanted = {r.email for r in READERS if r.status == "active"}
    assert sorted(readers) == sorted(wanted)


def test_a_configured_default_newsletter_takes_over_the_old_list(old: Engine) -> None:
    upgrade(old, default_newsletter="roundup")
    with Session(old) as session:
        newsletters = Counter(session.scalars(select(Subscription.newsletter)))
        issues = dict(session.execute(select(Issue.week, Issue.newsletter)).all())
        events = Counter(
            (str(kind), newsletter)
            for kind, newsletter in session.execute(select(Event.kind, Event.newsletter))
        )
    assert newsletters == {"roundup": len(READERS)}
    assert issues == {SENT_WEEK: "roundup", HALF_SENT_WEEK: "roundup", DRAFT_WEEK: "roundup"}
    assert {n for (kind, n) in events if kind in LIST_EVENTS} == {"roundup"}
    assert {n for (kind, n) in events if kind not in LIST_EVENTS} == {""}


def test_init_migrates_the_old_list_into_the_configured_default_newsletter(
    old: Engine, tmp_path: Path
) -> None:
    cli = Cli(
        env={
            "NEWSLETTER_CONFIG": "",
            "NEWSLETTER_DATABASE_URL": old.url.render_as_string(hide_password=False),
            "NEWSLETTER_NEWSLETTER_SLUG": "roundup",
            "NEWSLETTER_NEWSLETTER_BASE_URL": "https://news.example.org",
            "NEWSLETTER_SECRET_KEY": SECRET_KEY,
        },
        cwd=tmp_path,
    )
    result = cli("init")
    assert result.exit_code == 0, result.output
    assert result.output == f"Database migrated from {RELEASE} to schema {head_revision()}.\n"
    with Session(old) as session:
        assert set(session.scalars(select(Subscription.newsletter))) == {"roundup"}
        assert set(session.scalars(select(Issue.newsletter))) == {"roundup"}
    assert cli("init").output.startswith("Database is up to date")


def test_events_keep_their_evidence_and_list_events_name_the_default_newsletter(
    old: Engine,
) -> None:
    query = "SELECT id, kind, evidence, dedupe_key, issue_id, source, detail FROM events"
    with old.connect() as connection:
        before = {row.id: row for row in connection.execute(text(query))}
    upgrade(old)
    with Session(old) as session:
        events = session.scalars(select(Event).order_by(Event.id)).all()
    assert [e.id for e in events] == sorted(before)
    for event in events:
        old_row = before[event.id]
        evidence = old_row.evidence
        if isinstance(evidence, str):  # SQLite hands JSON back as its text
            evidence = json.loads(evidence)
        assert event.evidence == evidence
        assert (event.kind, event.dedupe_key, event.issue_id) == (
            old_row.kind,
            old_row.dedupe_key,
            old_row.issue_id,
        )
        assert (event.source, event.detail) == (old_row.source, old_row.detail)
        assert event.newsletter == ("weekly" if event.kind in LIST_EVENTS else "")
    assert {"bounced", "soft_bounce", "complained", "updated", *LIST_EVENTS} == {
        str(e.kind) for e in events
    }
    assert sum(e.evidence is not None for e in events) == 3  # the reports' events


def test_issues_belong_to_the_default_newsletter_and_deliveries_are_unchanged(
    old: Engine,
) -> None:
    with old.connect() as connection:
        weeks: dict[int, str] = dict(connection.execute(text("SELECT id, week FROM issues")).all())
        deliveries = Counter(
            (issue, status)
            for issue, status in connection.execute(text("SELECT issue_id, status FROM deliveries"))
        )
    upgrade(old)
    with Session(old) as session:
        issues = session.scalars(select(Issue)).all()
        assert {i.id: (i.newsletter, i.week) for i in issues} == {
            i: ("weekly", w) for i, w in weeks.items()
        }
        rows = session.scalars(select(Delivery)).all()
        assert Counter((d.issue_id, str(d.status)) for d in rows) == deliveries
        assert {d.sections for d in rows} == {""}
        half = next(i for i in issues if i.week == HALF_SENT_WEEK)
        assert half.status is IssueStatus.SENDING
        assert len(half.articles) == 4
    # One issue per newsletter and week: another newsletter may have this week's, the same
    # newsletter may not have two.
    insert = (
        "INSERT INTO issues (newsletter, week, status, subject, preheader, html, text,"
        " web_html, template_digest, created_at) VALUES (:n, :w, 'draft', '', '', '', '',"
        " '', '', :at)"
    )
    at = NOW.replace(tzinfo=None) if old.dialect.name == "sqlite" else NOW
    with old.begin() as connection:
        connection.execute(text(insert), {"n": "culture", "w": SENT_WEEK, "at": at})
    with pytest.raises(IntegrityError), old.begin() as connection:
        connection.execute(text(insert), {"n": "weekly", "w": SENT_WEEK, "at": at})


def test_migrated_data_and_the_models_agree(old: Engine) -> None:
    upgrade(old)
    with old.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    assert current_revision(old) == head_revision()


def test_downgrade_to_the_previous_release_and_upgrade_again_loses_nothing(
    old: Engine,
) -> None:
    shape = columns(old)
    before = dump(old, shape)
    upgrade(old)
    migrated = dump(old, columns(old))
    command.downgrade(alembic_config(old), RELEASE)
    assert current_revision(old) == RELEASE
    assert columns(old) == shape
    assert dump(old, shape) == before
    upgrade(old)
    assert dump(old, columns(old)) == migrated


def test_downgrade_takes_readers_of_other_newsletters_off_the_one_list(old: Engine) -> None:
    """Going back to one list must not start mailing anyone who is not on the default one."""
    upgrade(old)
    with Session(old) as session, session.begin():
        by_email = {s.email: s for s in session.scalars(select(Subscriber))}
        for subscription in session.scalars(select(Subscription)):
            if by_email["ben@example.org"].id == subscription.subscriber_id:
                subscription.status = SubscriptionStatus.UNSUBSCRIBED
                subscription.unsubscribed_at = NOW
        ivy = by_email["ivy@example.org"]
        session.execute(text("DELETE FROM subscriptions WHERE subscriber_id = :id"), {"id": ivy.id})
        session.add(
            Subscription(
                subscriber_id=ivy.id,
                newsletter="culture",
                status=SubscriptionStatus.ACTIVE,
                created_at=NOW,
                updated_at=NOW,
            )
        )
    command.downgrade(alembic_config(old), RELEASE)
    with old.connect() as connection:
        status: dict[str, str] = dict(
            connection.execute(text("SELECT email, status FROM subscribers")).all()
        )
    assert status["ben@example.org"] == status["ivy@example.org"] == "unsubscribed"
    assert {e: s for e, s in status.items() if e not in ("ben@example.org", "ivy@example.org")} == {
        r.email: r.status for r in READERS if r.email not in ("ben@example.org", "ivy@example.org")
    }


def test_a_week_rule_under_another_name_is_replaced(blank_url: str) -> None:
    """A database whose one-issue-per-week rule is named otherwise (PostgreSQL's own naming)
    or not at all (SQLite's inline form) migrates too."""
    engine = make_engine(blank_url)
    try:
        command.upgrade(alembic_config(engine), RELEASE)
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                connection.execute(
                    text("ALTER TABLE issues RENAME CONSTRAINT uq_issues_week TO issues_week_key")
                )
            else:
                schema = connection.execute(
                    text("SELECT sql FROM sqlite_master WHERE name = 'issues'")
                ).scalar_one()
                assert "CONSTRAINT uq_issues_week UNIQUE (week)" in schema
                connection.execute(text("DROP TABLE issues"))  # still empty: nothing refers to it
                connection.execute(
                    text(schema.replace("CONSTRAINT uq_issues_week UNIQUE (week)", "UNIQUE (week)"))
                )
            populate(connection)
        with engine.connect() as connection:
            rules = inspect(connection).get_unique_constraints("issues")
        assert [r["column_names"] for r in rules] == [["week"]]
        assert rules[0]["name"] != "uq_issues_week"
        upgrade(engine)
        with engine.connect() as connection:
            rules = inspect(connection).get_unique_constraints("issues")
            deliveries = connection.execute(text("SELECT count(*) FROM deliveries")).scalar_one()
        assert [r["column_names"] for r in rules] == [["newsletter", "week"]]
        assert deliveries == 17
    finally:
        engine.dispose()


def test_half_sent_issue_resumes_after_the_migration_without_second_copies(
    old: Engine, tmp_path: Path
) -> None:
    upgrade(old)
    with old.connect() as connection:
        sent_before: dict[str, datetime | str] = dict(
            connection.execute(
                text(
                    "SELECT s.email, d.sent_at FROM deliveries d"
                    " JOIN subscribers s ON s.id = d.subscriber_id"
                    " JOIN issues i ON i.id = d.issue_id"
                    " WHERE i.week = :week AND d.status = 'sent'"
                ),
                {"week": HALF_SENT_WEEK},
            ).all()
        )
    assert sorted(sent_before) == ["ada@example.org", "hal@example.org"]
    clock = FixedClock(NOW)
    with SmtpServer() as server:
        app = App.create(
            _settings(str(old.url.render_as_string(hide_password=False)), server, tmp_path),
            clock=clock,
        )
        try:
            report = send_issue(app, Week.parse(HALF_SENT_WEEK), SendOptions(rate=0, connections=2))
            with pytest.raises(StateError, match="already sent"):
                send_issue(app, Week.parse(SENT_WEEK), SendOptions(rate=0, connections=2))
            with app.transaction() as session:
                after = dict(
                    session.execute(
                        select(Subscriber.email, Delivery)
                        .join(Delivery, Delivery.subscriber_id == Subscriber.id)
                        .join(Issue, Issue.id == Delivery.issue_id)
                        .where(Issue.week == HALF_SENT_WEEK)
                    ).all()
                )
                half = session.scalars(select(Issue).where(Issue.week == HALF_SENT_WEEK)).one()
        finally:
            app.close()
        received = server.received
    # Queued and deferred, still on the list: one copy each; nobody else gets anything.
    assert Counter(r.recipient for r in received) == Counter(RESUMED)
    assert (report.sent, report.already_sent, report.skipped, report.uncertain) == (3, 2, 2, 1)
    assert {e: str(d.status) for e, d in after.items()} == {
        "ada@example.org": "sent",
        "hal@example.org": "sent",
        "ben@example.org": "sent",
        "fay@example.org": "sent",
        "ivy@example.org": "sent",
        "dee@example.org": "skipped",  # unsubscribed after the snapshot
        "eve@example.org": "skipped",  # bounced after the snapshot
        "gil@example.org": "uncertain",  # its sender died mid-message: resent only on request
    }
    assert {e: after[e].sent_at for e in sent_before} == {
        e: _aware(t) for e, t in sent_before.items()
    }
    assert half.status is IssueStatus.SENT
    message = received[0].message()
    assert "<weekly.example.org>" in str(message["List-Id"])
    assert message["Subject"] == f"The round-up, {HALF_SENT_WEEK}"


def _settings(url: str, server: SmtpServer, tmp_path: Path) -> Settings:
    return Settings(
        newsletter=NewsletterSettings(
            name="The Weekly Round-up",
            sender="Example Magazine <newsletter@example.org>",
            reply_to="editors@example.org",
            base_url="https://news.example.org",
        ),
        database=DatabaseSettings(url=url),
        delivery=replace(DeliverySettings(), transport=server.url(), timeout=10),
        secrets=Secrets(secret_keys=(SECRET_KEY,)),
        source="tests",
        base_dir=tmp_path,
    )


def _aware(value: datetime | str) -> datetime:
    """A timestamp as read back by plain SQL: naive text on SQLite, aware on PostgreSQL."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
