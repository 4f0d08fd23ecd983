"""Statements compiled once by SQLAlchemy and run on the driver's own cursor and connection.

For the one commit a send makes per message: SQLAlchemy still decides the SQL, the
parameter style and how each value is bound, but only once per send, while its execution
path (cache lookup, parameter building, result objects) cost twice the driver's own work
on every message. For the same reason the transaction around them is the driver's own;
what SQLAlchemy's did for us, SQLite's writers taking turns and BEGIN IMMEDIATE, is done
here too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Dialect, UpdateBase
from sqlalchemy.exc import DBAPIError, StatementError

from newsletter.db.session import writer_turns


@contextmanager
def driver_transaction(connection: Connection) -> Iterator[None]:
    """Commit what runs inside on leaving, roll it back on an error.

    Only `DriverStatement`s may run inside: SQLAlchemy does not know the transaction is
    there. Driver errors come out as SQLAlchemy's, as from any other statement.
    """
    driver = connection.connection
    driver_error: type[Exception] = connection.dialect.loaded_dbapi.Error
    turns = writer_turns(connection.engine)
    if turns is not None:
        try:
            turns.begin(connection)
        except driver_error as exc:
            raise _as_sqlalchemy("BEGIN IMMEDIATE", None, exc, driver_error) from None
    try:
        yield
        driver.commit()
    except BaseException as exc:
        try:
            driver.rollback()
        except driver_error:
            # Lost with its server, most likely: not to be reset and reused by the pool. The
            # first error is the one worth reporting.
            connection.invalidate()
        if isinstance(exc, driver_error):
            raise _as_sqlalchemy("COMMIT", None, exc, driver_error) from None
        raise
    finally:
        if turns is not None:
            turns.end(connection)


def _as_sqlalchemy(
    sql: str, params: Any, exc: Exception, driver_error: type[Exception]
) -> StatementError:
    """What SQLAlchemy would have raised, so callers handle one kind of error."""
    return DBAPIError.instance(sql, params, exc, driver_error)


class DriverStatement:
    def __init__(self, statement: UpdateBase, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        if any(bind.expanding for bind in compiled.bind_names):
            raise ValueError("IN lists are expanded per execution; use OR of comparisons")
        if compiled.escaped_bind_names:
            raise ValueError("parameter names must not need escaping")
        self.sql = str(compiled)
        self._order = compiled.positiontup  # None for named parameter styles
        self._driver_error: type[Exception] = dialect.loaded_dbapi.Error
        # The statement's own literals are bound once, here; per execution only the
        # caller's values are, each by its type's processor when it has one.
        self._fixed: dict[str, Any] = {}
        self._given: dict[str, tuple[str, Callable[[Any], Any] | None]] = {}
        for bind, name in compiled.bind_names.items():
            if bind.callable is not None:
                raise ValueError("parameters with a callable value are not supported")
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required:
                self._given[name] = (bind.key, processor)  # a name used twice is bound once
            else:
                value = bind.effective_value
                self._fixed[name] = value if processor is None else processor(value)

    def execute(self, connection: Connection, params: Mapping[str, Any]) -> int:
        """Run in `connection`'s current transaction; returns the rows it touched."""
        values = dict(self._fixed)
        for name, (key, processor) in self._given.items():
            value = params[key]
            values[name] = value if processor is None else processor(value)
        bound = values if self._order is None else tuple(values[n] for n in self._order)
        cursor = connection.connection.cursor()
        try:
            cursor.execute(self.sql, bound)
            return int(cursor.rowcount)
        except self._driver_error as exc:
            raise _as_sqlalchemy(self.sql, bound, exc, self._driver_error) from None
        finally:
            cursor.close()
