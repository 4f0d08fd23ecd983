"""What the core asks of whoever calls it: the settings, a clock and database transactions.

The core never builds these itself and never sees the composition root (`app.App`), which
only the command line, the web application and the demo use. Each package that needs more
(a transport, a fetcher, the engine) names it in a protocol of its own built on this one, so
a function's signature says what it can touch, and a test can hand in any object that has it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from sqlalchemy.orm import Session

from newsletter.clock import Clock
from newsletter.config import Settings


class Runtime(Protocol):
    settings: Settings
    clock: Clock

    def transaction(self) -> AbstractContextManager[Session]:
        """A session whose work commits on leaving the block, or rolls back on an error."""
        ...
