"""Statements compiled once by SQLAlchemy and run on the driver's own cursor.

For the one commit a send makes per message: SQLAlchemy still decides the SQL, the
parameter style and how each value is bound, but only once per send, while its execution
path (cache lookup, parameter building, result objects) cost twice the driver's own work
on every message. The statements run inside an ordinary SQLAlchemy transaction, so its
transaction handling and events (SQLite's BEGIN IMMEDIATE) stay as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection, Dialect, UpdateBase
from sqlalchemy.exc import DBAPIError


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
            # What SQLAlchemy would have raised, so callers handle one kind of error.
            raise DBAPIError.instance(self.sql, bound, exc, self._driver_error) from None
        finally:
            cursor.close()
