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
        self.sql = str(compiled)
        self._compiled = compiled
        self._order = compiled.positiontup  # None for named parameter styles
        self._driver_error: type[Exception] = dialect.loaded_dbapi.Error
        self._processors: dict[str, Callable[[Any], Any]] = {}
        for bind, name in compiled.bind_names.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self._processors[name] = processor

    def execute(self, connection: Connection, params: Mapping[str, Any]) -> int:
        """Run in `connection`'s current transaction; returns the rows it touched."""
        values = self._compiled.construct_params(dict(params))
        for name, processor in self._processors.items():
            values[name] = processor(values[name])
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
