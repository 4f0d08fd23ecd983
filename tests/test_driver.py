"""Statements and transactions run on the driver bind values and commit exactly as
SQLAlchemy would."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from newsletter.app import App
from newsletter.db.driver import DriverStatement, driver_transaction
from newsletter.db.models import Sender, Subscriber, SubscriberStatus
from newsletter.subscribers.rules import add

TABLE = Subscriber.__table__


def test_a_driver_statement_binds_enums_and_aware_datetimes(app: App) -> None:
    with app.transaction() as session:
        add(session, "ada@example.org", name="Ada", at=app.clock.now(), source="test")
        add(session, "bob@example.org", name="Bob", at=app.clock.now(), source="test")
    later = app.clock.now() + timedelta(hours=3)
    statement = DriverStatement(
        update(TABLE)
        .where(TABLE.c.email == bindparam("email"))
        .values(status=SubscriberStatus.UNSUBSCRIBED, updated_at=bindparam("at")),
        app.engine.dialect,
    )
    with app.engine.connect() as connection, connection.begin():
        assert statement.execute(connection, {"email": "ada@example.org", "at": later}) == 1
        assert statement.execute(connection, {"email": "nobody@example.org", "at": later}) == 0
    with app.transaction() as session:
        rows = {s.email: s for s in session.scalars(select(Subscriber))}
    assert rows["ada@example.org"].status is SubscriberStatus.UNSUBSCRIBED
    assert rows["ada@example.org"].updated_at == later
    assert rows["bob@example.org"].status is SubscriberStatus.ACTIVE


def test_expanding_in_lists_are_refused(app: App) -> None:
    with pytest.raises(ValueError, match="IN lists"):
        DriverStatement(
            update(TABLE).where(TABLE.c.id.in_([1, 2])).values(name="x"), app.engine.dialect
        )


def _rename(app: App) -> DriverStatement:
    return DriverStatement(
        update(TABLE).where(TABLE.c.email == bindparam("email")).values(name=bindparam("name")),
        app.engine.dialect,
    )


def _names(app: App) -> dict[str, str]:
    with app.transaction() as session:
        return {s.email: s.name for s in session.scalars(select(Subscriber))}


def _another_writer_gets_through(app: App) -> bool:
    """Whether a write from another thread completes: the writer turn was handed back."""
    done = threading.Event()

    def write() -> None:
        with app.engine.begin() as connection:
            connection.execute(update(TABLE).values(updated_at=app.clock.now()))
        done.set()

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    thread.join(10)
    return done.is_set()


def test_a_driver_transaction_commits_on_leaving(app: App) -> None:
    with app.transaction() as session:
        add(session, "ada@example.org", name="Ada", at=app.clock.now(), source="test")
    rename = _rename(app)
    with app.engine.connect() as connection:
        with driver_transaction(connection):
            rename.execute(connection, {"email": "ada@example.org", "name": "Ada L."})
        assert _names(app) == {"ada@example.org": "Ada L."}
        with driver_transaction(connection):  # the connection serves the next one as well
            rename.execute(connection, {"email": "ada@example.org", "name": "Ada Lovelace"})
    assert _names(app) == {"ada@example.org": "Ada Lovelace"}
    assert _another_writer_gets_through(app)


def test_an_error_inside_rolls_back_and_hands_the_turn_back(app: App) -> None:
    with app.transaction() as session:
        add(session, "ada@example.org", name="Ada", at=app.clock.now(), source="test")
    rename = _rename(app)
    with app.engine.connect() as connection:

        def fail_half_way() -> None:
            with driver_transaction(connection):
                rename.execute(connection, {"email": "ada@example.org", "name": "Lost"})
                raise RuntimeError("stop")

        with pytest.raises(RuntimeError, match="stop"):
            fail_half_way()
        assert _another_writer_gets_through(app)
        with driver_transaction(connection):
            rename.execute(connection, {"email": "ada@example.org", "name": "Kept"})
    assert _names(app) == {"ada@example.org": "Kept"}


def test_a_failed_commit_is_sqlalchemys_error_and_writes_nothing(app: App) -> None:
    if app.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL checks this foreign key at the statement, not at COMMIT")
    orphan = DriverStatement(
        insert(Sender.__table__).values(
            issue_id=bindparam("issue"),
            worker_id="orphan",
            connections=1,
            seen_at=bindparam("at"),
        ),
        app.engine.dialect,
    )
    with app.engine.connect() as connection:

        def commit_an_orphan() -> None:
            with driver_transaction(connection):
                connection.connection.cursor().execute("PRAGMA defer_foreign_keys = ON")
                orphan.execute(connection, {"issue": 12345, "at": app.clock.now()})

        with pytest.raises(IntegrityError, match="FOREIGN KEY"):
            commit_an_orphan()
        assert _another_writer_gets_through(app)
    with app.transaction() as session:
        assert session.scalars(select(Sender)).all() == []
