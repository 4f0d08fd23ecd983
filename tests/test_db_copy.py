"""`newsletter db copy`: a populated SQLite database to PostgreSQL and back, whole."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.engine import make_url

from newsletter.db.models import (
    Base,
    ClickCount,
    ClickEvent,
    ForgottenAddress,
    Issue,
    OpenCount,
    Sender,
    Throttle,
    UsedChallenge,
)
from newsletter.db.session import make_engine

from .conftest import PG_ENV, REPO, SECRET_KEY, Cli

FEED = str(REPO / "examples" / "feed.xml")
WEEK = "2024-W47"


@pytest.fixture
def empty_postgres() -> Iterator[str]:
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"copying to PostgreSQL needs {PG_ENV}")
    name = f"nl_copy_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(base).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _cli(url: str, tmp_path: Path) -> Cli:
    return Cli(
        env={
            "NEWSLETTER_CONFIG": "",
            "NEWSLETTER_DATABASE_URL": url,
            "NEWSLETTER_DELIVERY_TRANSPORT": f"outbox:{tmp_path / 'outbox'}",
            "NEWSLETTER_NEWSLETTER_BASE_URL": "https://news.example.org",
            "NEWSLETTER_SECRET_KEY": SECRET_KEY,
        },
        cwd=tmp_path,
    )


def _populate(url: str, tmp_path: Path) -> None:
    """A week's worth of use through the real commands, plus the rows only a running send or
    the web form leave behind."""
    cli = _cli(url, tmp_path)
    for args in (
        ("init",),
        ("subscribers", "import", str(REPO / "subscribers.example.csv")),
        ("subscribers", "add", "new@example.org", "--name", "Néo 新"),
        ("subscribers", "unsubscribe", "new@example.org"),
        ("articles", "fetch", FEED),
        ("issue", "build", "--week", WEEK),
        ("send", "--week", WEEK, "--yes", "--rate", "0"),
    ):
        result = cli(*args)
        assert result.exit_code in (0, 1), (args, result.output)
    engine = make_engine(url)
    now = datetime(2024, 11, 20, 15, 0, 0, 123456, tzinfo=UTC)
    with engine.begin() as conn:
        issue_id = conn.scalar(select(Issue.id))
        article_id = conn.scalar(text("SELECT article_id FROM issue_articles LIMIT 1"))
        conn.execute(insert(Throttle).values(key="k" * 64, window_start=now, hits=3))
        conn.execute(insert(UsedChallenge).values(nonce="n" * 32, served_at=now))
        conn.execute(insert(ForgottenAddress).values(digest="d" * 64, forgotten_at=now))
        conn.execute(
            insert(ClickCount).values(issue_id=issue_id, article_id=article_id, human=2, early=1)
        )
        conn.execute(insert(OpenCount).values(issue_id=issue_id, opens=5))
        subscriber_id = conn.scalar(text("SELECT id FROM subscribers LIMIT 1"))
        conn.execute(
            insert(ClickEvent).values(
                issue_id=issue_id,
                article_id=article_id,
                subscriber_id=subscriber_id,
                at=now,
                reason="",
            )
        )
        conn.execute(
            insert(Sender).values(issue_id=issue_id, worker_id="w1", connections=2, seen_at=now)
        )
        conn.execute(
            text(
                "INSERT INTO overrides (issue_id, article_id, kind, position, created_at) "
                "VALUES (:i, :a, 'feature', NULL, :t)"
            ),
            {"i": issue_id, "a": article_id, "t": now.replace(tzinfo=None)},
        )
    engine.dispose()


def _contents(url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = make_engine(url)
    with engine.connect() as conn:
        tables = {
            table.name: [
                tuple(row)
                for row in conn.execute(select(table).order_by(*table.primary_key.columns))
            ]
            for table in Base.metadata.sorted_tables
        }
    engine.dispose()
    return tables


def test_sqlite_to_postgresql_and_back(tmp_path: Path, empty_postgres: str) -> None:
    source = f"sqlite:///{tmp_path / 'newsletter.db'}"
    _populate(source, tmp_path)
    before = _contents(source)
    empty = [name for name, rows in before.items() if not rows]
    assert not empty, f"populate these tables too, so that copying them is checked: {empty}"

    result = _cli(source, tmp_path)("db", "copy", empty_postgres)
    assert result.exit_code == 0, result.output
    for name, rows in before.items():
        assert f"{name:16} {len(rows):>9}" in result.output
    assert _contents(empty_postgres) == before

    back = f"sqlite:///{tmp_path / 'back.db'}"
    assert _cli(empty_postgres, tmp_path)("db", "copy", back).exit_code == 0
    assert _contents(back) == before

    # The copy goes on working: new rows get new ids on PostgreSQL.
    moved = _cli(empty_postgres, tmp_path)
    assert moved("subscribers", "add", "after@example.org").exit_code == 0

    again = _cli(source, tmp_path)("db", "copy", empty_postgres)
    assert again.exit_code == 1
    assert "the target database is not empty" in again.output
    assert "Traceback" not in again.output
