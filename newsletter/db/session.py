"""Engines, sessions and the schema check every command makes before touching data."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from newsletter.config import DEFAULT_SLUG
from newsletter.errors import DatabaseError, SchemaOutdatedError

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str) -> Engine:
    """An engine with the per-dialect settings that concurrency and integrity rely on."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
            writers = _WriterTurns()
            _TURNS[engine] = writers
            event.listen(engine, "begin", writers.begin)
            event.listen(engine, "commit", writers.end)
            event.listen(engine, "rollback", writers.end)
        else:
            engine = create_engine(url, pool_pre_ping=True)
    except (ArgumentError, ModuleNotFoundError, ValueError) as exc:
        raise DatabaseError(f"database url {_redact(url)!r} is not usable: {exc}") from None
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Autocommit at the driver level so that SQLAlchemy's own BEGIN (below) is the only one.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class _WriterTurns:
    """Transactions on one SQLite engine take turns inside the process.

    BEGIN IMMEDIATE takes the write lock up front, so two writers wait for each other instead
    of one failing half-way with "database is locked". Between threads of one process a
    Python lock hands the turn over at once, where SQLite's busy handler would sleep in steps
    of milliseconds (a send's connections commit once per message each); other processes
    still wait on SQLite's own lock.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()

    def begin(self, connection: Any) -> None:
        self._lock.acquire()
        try:
            connection.connection.driver_connection.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise

    def end(self, _connection: Any) -> None:
        self._lock.release()


_TURNS: WeakKeyDictionary[Engine, _WriterTurns] = WeakKeyDictionary()


def writer_turns(engine: Engine) -> _WriterTurns | None:
    """How `engine`'s writers take turns, for transactions begun outside SQLAlchemy; None
    where the database itself lets writers wait for each other."""
    return _TURNS.get(engine)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def _redact(url: str) -> str:
    head, sep, tail = url.partition("@")
    if not sep or ":" not in head.partition("://")[2]:
        return url
    scheme, _, creds = head.partition("://")
    return f"{scheme}://{creds.partition(':')[0]}:***@{tail}"


def alembic_config(engine: Engine, default_newsletter: str = DEFAULT_SLUG) -> Config:
    """`default_newsletter` is the slug that the one list of older schemas becomes."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    config.attributes["default_newsletter"] = default_newsletter
    return config


def head_revision() -> str | None:
    script = ScriptDirectory(str(MIGRATIONS))
    return script.get_current_head()


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except OperationalError as exc:
        raise DatabaseError(f"cannot open the database: {_first_line(exc)}") from None


def upgrade(
    engine: Engine, default_newsletter: str = DEFAULT_SLUG
) -> tuple[str | None, str | None]:
    """Upgrade to head; returns the revisions before and after."""
    before = current_revision(engine)
    try:
        command.upgrade(alembic_config(engine, default_newsletter), "head")
    except OperationalError as exc:
        raise DatabaseError(f"migration failed: {_first_line(exc)}") from None
    return before, head_revision()


def check_schema(engine: Engine) -> None:
    current = current_revision(engine)
    if current != head_revision():
        state = "has no newsletter tables" if current is None else "is out of date"
        raise SchemaOutdatedError(f"the database {state}")


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work is committed on success and rolled back on any error."""
    with factory() as session, session.begin():
        yield session


# What the drivers call the failures an operator fixes outside the program: SQLite's primary
# result codes, PostgreSQL's SQLSTATEs.
_SQLITE_READONLY, _SQLITE_FULL = 8, 13
_PG_READ_ONLY, _PG_DISK_FULL = "25006", "53100"


def operator_error(exc: BaseException) -> DatabaseError | None:
    """One line for a database that cannot take a write (read-only, full) or went away;
    None for any other failure, which is a bug and keeps its traceback. The transaction
    was rolled back, so nothing stored is lost."""
    if not isinstance(exc, DBAPIError):
        return None
    code = getattr(exc.orig, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    state = getattr(exc.orig, "sqlstate", None)
    text = _first_line(exc)
    if primary == _SQLITE_READONLY or state == _PG_READ_ONLY:
        return DatabaseError(
            f"the database is read-only: {text}",
            hint="use a writable [database] url, or check the file's permissions",
        )
    if primary == _SQLITE_FULL or state == _PG_DISK_FULL:
        return DatabaseError(
            f"the database is full: {text}",
            hint="free space on the database's disk and run the command again; nothing was changed",
        )
    if isinstance(exc, OperationalError):
        return DatabaseError(f"the database failed: {text}")
    return None


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
