"""Data rights: `subscribers show` lists all that is held, `subscribers forget` erases it and
keeps a keyed hash that stops an import or `subscribers add` from bringing it back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from newsletter.app import App
from newsletter.clock import FixedClock
from newsletter.config import Settings
from newsletter.db.models import Base
from newsletter.web.endpoints import create_app
from tests.conftest import SECRET_KEY, Cli
from tests.tracking_world import BROWSER, send_week, settle, tracking_app

READERS = ["ann@example.org", "bob@example.org"]


@pytest.fixture
def tracked(settings: Settings, clock: FixedClock) -> Iterator[App]:
    application = tracking_app(settings, clock, clicks="per-reader")
    yield application
    application.close()


@pytest.fixture
def history(tracked: App, clock: FixedClock) -> App:
    """Two readers sent an issue; Ann clicked two stories."""
    copies = send_week(tracked, READERS)
    clock.advance(3600)
    client = create_app(tracked).test_client()
    for path in copies[0].paths()[:2]:
        client.get(path, headers={"User-Agent": BROWSER})
        clock.advance(60)
    settle(client.application)
    return tracked


def values_anywhere(app: App, needles: set[object]) -> list[str]:
    """Every table and column, of every model, where one of `needles` is stored."""
    found = []
    with app.engine.connect() as conn:
        for name, table in Base.metadata.tables.items():
            for row in conn.execute(table.select()):
                for column, value in zip(table.columns, row, strict=True):
                    if value in needles or (isinstance(value, str) and "ann@" in value):
                        found.append(f"{name}.{column.name}")
    return found


def test_show_lists_consent_history_deliveries_and_clicks(history: App, cli: Cli) -> None:
    result = cli("subscribers", "show", "Ann@Example.org", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["record"]["status"] == "active"
    assert data["record"]["consent_source"] == "cli"
    assert [e["kind"] for e in data["events"]] == ["subscribed"]
    assert [(d["newsletter"], d["issue"], d["status"]) for d in data["deliveries"]] == [
        ("weekly", "2024-W47", "sent")
    ]
    assert [(s["newsletter"], s["status"], s["sections"]) for s in data["subscriptions"]] == [
        ("weekly", "active", "all sections")
    ]
    assert len(data["clicks"]) == 2
    assert all(c["article"].startswith("https://www.example.org/") for c in data["clicks"])
    shown = cli("subscribers", "show", "ann@example.org")
    assert "Clicks: 2" in shown.output
    assert "Deliveries: 1" in shown.output
    assert "Subscriptions: 1" in shown.output
    assert cli("subscribers", "show", "nobody@example.org").exit_code == 1


def test_forget_erases_everything_and_keeps_a_hash(history: App, cli: Cli, tmp_path: Path) -> None:
    with history.engine.connect() as conn:
        ann = conn.execute(text("SELECT id FROM subscribers WHERE email = 'ann@example.org'"))
        ann_id = ann.scalar_one()
        clicks_before = conn.execute(text("SELECT sum(human) FROM click_counts")).scalar_one()
    assert cli("subscribers", "forget", "ann@example.org").exit_code == 1  # asks first
    result = cli("subscribers", "forget", "ann@example.org", "--yes")
    assert result.exit_code == 0, result.output
    assert result.output.count("\n") == 1
    with history.engine.connect() as conn:
        per_subscriber = [
            f"{name}.{column.name}"
            for name, table in Base.metadata.tables.items()
            for column in table.columns
            if column.name == "subscriber_id"
            and conn.execute(table.select().where(column == ann_id)).first() is not None
        ]
        assert conn.execute(text("SELECT sum(human) FROM click_counts")).scalar_one() == (
            clicks_before
        )
        digests = conn.execute(text("SELECT digest FROM forgotten_addresses")).scalars().all()
    assert per_subscriber == []
    assert values_anywhere(history, {"ann@example.org"}) == []
    assert len(digests) == 1
    assert "ann" not in digests[0]
    shown = cli("subscribers", "show", "ann@example.org")
    assert "erased" in shown.output
    added = cli("subscribers", "add", "ann@example.org")
    assert added.exit_code == 1
    assert "erased at its owner's request" in added.output
    csv = tmp_path / "list.csv"
    csv.write_text("email\nann@example.org\ncyd@example.org\n", encoding="utf-8")
    imported = cli("subscribers", "import", str(csv))
    assert imported.exit_code == 0
    assert "line 2: skipped: the address was erased" in imported.output
    assert "added 1" in imported.output
    listing = cli("subscribers", "list")
    assert "ann@example.org" not in listing.output
    assert "bob@example.org" in listing.output


def test_forget_needs_the_secret_key(history: App, cli: Cli) -> None:
    result = cli(
        "subscribers", "forget", "ann@example.org", "--yes", env={"NEWSLETTER_SECRET_KEY": ""}
    )
    assert result.exit_code == 1
    assert "NEWSLETTER_SECRET_KEY" in result.output
    assert SECRET_KEY not in result.output
