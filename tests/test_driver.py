"""Statements run on the driver's cursor bind values exactly as SQLAlchemy would."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import bindparam, select, update

from newsletter.app import App
from newsletter.db.driver import DriverStatement
from newsletter.db.models import Subscriber, SubscriberStatus
from newsletter.subscribers import add

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
