"""What a send runs on, what it is asked to do and what it tells: its options, the progress
the bar shows while it runs, and the report it ends with."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from newsletter.errors import DatabaseError
from newsletter.runtime import Runtime
from newsletter.transport.base import Transport


class Sending(Runtime, Protocol):
    """What a send needs beyond the runtime: the transport, the engine the ledger's own
    connections come from, and the templates the copies of readers' sections are made with."""

    engine: Engine

    @property
    def transport(self) -> Transport: ...

    @property
    def templates_dirs(self) -> list[Path]: ...


@dataclass(frozen=True)
class SendOptions:
    rate: float | None = None  # messages per second across connections; 0 = unlimited
    connections: int | None = None
    resend_uncertain: bool = False
    stop: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    sent: int
    failed: int
    waiting: bool = False


ProgressCallback = Callable[[Progress], None]


@dataclass
class SendReport:
    week: str
    recipients: int = 0
    sent: int = 0
    already_sent: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    deferred: int = 0
    uncertain: int = 0
    skipped: int = 0
    # Of the readers, those whose sections had nothing in it (all runs).
    nothing_in_sections: int = 0
    # Copies of readers' sections this run rendered: at most one per combination.
    renders: int = 0
    elapsed: float = 0.0
    error: str = ""
    mode: str = "send"  # "send", "test" or "dry-run"

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def complete(self) -> bool:
        """Everyone who could be reached was, and nothing is left in doubt."""
        return not (self.error or self.failed or self.deferred or self.uncertain)


def database_error(exc: SQLAlchemyError) -> DatabaseError:
    """Every sent message is already recorded, so a database failure is a pause, not a loss."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return DatabaseError(
        f"the database failed during the send: {text[0] if text else type(exc).__name__}",
        hint="check that the database is reachable, then run `newsletter send` again to resume",
    )
