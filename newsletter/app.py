"""The one place where settings become live objects: engine, sessions, transport, clock.

Commands, the web application and tests all build an `App`; tests pass their own clock,
transport or fetcher instead of patching anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from newsletter.clock import Clock, SystemClock
from newsletter.config import Settings
from newsletter.db import session as db
from newsletter.transport.outbox import Transport, open_transport

if TYPE_CHECKING:
    from newsletter.feeds.fetch import Fetcher


@dataclass
class App:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock = field(default_factory=SystemClock)
    _transport: Transport | None = None
    _fetcher: Fetcher | None = None

    @classmethod
    def create(
        cls,
        settings: Settings,
        *,
        clock: Clock | None = None,
        transport: Transport | None = None,
        fetcher: Fetcher | None = None,
    ) -> App:
        engine = db.make_engine(settings.database.url)
        return cls(
            settings=settings,
            engine=engine,
            sessions=db.make_sessionmaker(engine),
            clock=clock or SystemClock(),
            _transport=transport,
            _fetcher=fetcher,
        )

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            self._transport = open_transport(
                self.settings.delivery.transport,
                base_dir=self.settings.base_dir,
                password=self.settings.secrets.smtp_password,
                timeout=self.settings.delivery.timeout,
                messages_per_connection=self.settings.delivery.messages_per_connection,
            )
        return self._transport

    @property
    def fetcher(self) -> Fetcher:
        if self._fetcher is None:
            # Imported on first use: httpx is a tenth of a send's memory, and only a fetch
            # needs it.
            from newsletter.feeds.fetch import HttpFetcher  # noqa: PLC0415

            self._fetcher = HttpFetcher(
                timeout=self.settings.feeds.timeout, max_bytes=self.settings.feeds.max_bytes
            )
        return self._fetcher

    @property
    def templates_dirs(self) -> list[Path]:
        """The operator's templates first (file by file), then the packaged ones."""
        packaged = Path(__file__).parent / "templates"
        custom = self.settings.newsletter.templates_dir
        if not custom:
            return [packaged]
        path = Path(custom)
        return [path if path.is_absolute() else self.settings.base_dir / path, packaged]

    def check_schema(self) -> None:
        db.check_schema(self.engine)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with db.transaction(self.sessions) as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()
