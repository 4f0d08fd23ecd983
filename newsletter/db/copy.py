"""Copy every stored row from one database into another, empty one.

A magazine that starts on SQLite moves to PostgreSQL once several senders share a send; the
archive of sent issues, the delivery ledger and each subscriber's consent record must come
along whole. The tables are taken from the models' metadata, parents before children, so a
table added later is copied without anyone remembering to list it. Rows keep their ids, so
links between them and the tokens in mail already sent stay valid.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, Integer, func, insert, select
from sqlalchemy.engine import Connection

from newsletter.db.models import Base
from newsletter.db.session import upgrade
from newsletter.errors import StateError

BATCH = 1000


@dataclass(frozen=True)
class CopyReport:
    counts: dict[str, int]  # table name to rows copied, in the order they were copied


def copy_database(source: Engine, target: Engine) -> CopyReport:
    """Migrate `target`, refuse it if it holds any row, then copy in one transaction."""
    upgrade(target)
    counts: dict[str, int] = {}
    with source.connect() as reading, target.begin() as writing:
        held = {t.name: n for t in Base.metadata.sorted_tables if (n := _count(writing, t.name))}
        if held:
            listed = ", ".join(f"{n} in {name}" for name, n in held.items())
            raise StateError(
                f"the target database is not empty ({listed})",
                hint="copy into a new, empty database",
            )
        for table in Base.metadata.sorted_tables:
            copied = 0
            rows = reading.execution_options(yield_per=BATCH).execute(
                select(table).order_by(*table.primary_key.columns)
            )
            for batch in rows.mappings().partitions(BATCH):
                writing.execute(insert(table), [dict(row) for row in batch])
                copied += len(batch)
            counts[table.name] = copied
        if writing.dialect.name == "postgresql":
            _advance_sequences(writing)
    return CopyReport(counts)


def _count(connection: Connection, table: str) -> int:
    chosen = Base.metadata.tables[table]
    return connection.scalar(select(func.count()).select_from(chosen)) or 0


def _advance_sequences(connection: Connection) -> None:
    """Rows came with their ids, so PostgreSQL's sequences must start after them."""
    for table in Base.metadata.sorted_tables:
        keys = list(table.primary_key.columns)
        if len(keys) != 1 or not isinstance(keys[0].type, Integer):
            continue
        highest = connection.scalar(select(func.max(keys[0])))
        if highest is not None:
            sequence = func.pg_get_serial_sequence(table.name, keys[0].name)
            connection.execute(select(func.setval(sequence, highest)))
