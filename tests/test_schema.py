"""The migrations own the schema: they must agree with the models, and commands check them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event, text

from newsletter.app import App
from newsletter.db.models import Base
from newsletter.db.session import make_engine
from newsletter.delivery.ledger import Ledger

from .conftest import Cli


def test_migrated_database_matches_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert differences == []


def test_commands_refuse_an_empty_database(tmp_path: Path, cli: Cli) -> None:
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    result = cli("subscribers", "list", env={"NEWSLETTER_DATABASE_URL": empty})
    assert result.exit_code == 1
    assert "newsletter init" in result.output
    assert result.output.count("\n") == 1

    result = cli("init", env={"NEWSLETTER_DATABASE_URL": empty})
    assert result.exit_code == 0, result.output
    assert "migrated from empty" in result.output
    assert cli("init", env={"NEWSLETTER_DATABASE_URL": empty}).output.startswith(
        "Database is up to date"
    )
    assert cli("subscribers", "list", env={"NEWSLETTER_DATABASE_URL": empty}).exit_code == 0


def test_commands_refuse_an_outdated_schema(database_url: str, cli: Cli) -> None:
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    engine.dispose()
    result = cli("subscribers", "list")
    assert result.exit_code == 1
    assert "out of date" in result.output
    assert "newsletter init" in result.output


def test_unreachable_database_is_one_line(cli: Cli) -> None:
    result = cli(
        "subscribers",
        "list",
        env={"NEWSLETTER_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"},
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot open the database")
    assert "Traceback" not in result.output


def test_claims_find_their_rows_through_the_claim_index(app: App) -> None:
    """The claim index holds only claimable rows; a claim must still be able to use it."""
    if app.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL picks its plan from table statistics, not from the query alone")
    executed: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
        executed.append((statement, params))

    event.listen(app.engine, "before_cursor_execute", capture)
    try:
        Ledger(app, issue_id=1).claim("sender/0", 100, app.clock.now())
    finally:
        event.remove(app.engine, "before_cursor_execute", capture)
    statement, params = next((s, p) for s, p in executed if s.lstrip().startswith("SELECT"))
    with app.engine.connect() as connection:
        plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params).all()
    assert any("USING INDEX ix_deliveries_claim" in str(step) for step in plan), plan
