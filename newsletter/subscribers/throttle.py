"""Rate limits kept in the database, so every web process behind a balancer counts together.

Each limited thing (an IP address, a target address) has one row: when its window opened and
how many hits it has seen since. A hit either opens a fresh window or adds one, in a single
atomic upsert, so two processes racing on the same key cannot both slip under the limit.
Keys are HMAC digests: the table never holds an address or an IP in the clear.

A subscribe form's challenge is the strictest limit of all: one use, ever. It is spent the
same way, by an insert that only one of two racing requests can make.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from newsletter.db.models import Throttle, UsedChallenge

# Rows older than this can no longer affect any limit we apply (the longest window is a day).
RETENTION = timedelta(days=2)


@dataclass(frozen=True)
class Limit:
    name: str
    hits: int
    window: timedelta


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: timedelta


def key_for(secret: str, limit: Limit, value: str) -> str:
    """A stable, non-reversible key: without the secret an IP cannot be recovered by brute force."""
    message = f"{limit.name}:{value}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def hit(session: Session, key: str, limit: Limit, *, now: datetime) -> Verdict:
    """Count one hit against `key` and say whether it stays within `limit`."""
    session.execute(delete(Throttle).where(Throttle.window_start < now - RETENTION))
    expired = Throttle.window_start <= now - limit.window
    statement = (
        _insert(session)(Throttle)
        .values(key=key, window_start=now, hits=1)
        .on_conflict_do_update(
            index_elements=[Throttle.key],
            set_={
                "window_start": case((expired, now), else_=Throttle.window_start),
                "hits": case((expired, 1), else_=Throttle.hits + 1),
            },
        )
        .returning(Throttle.hits, Throttle.window_start)
    )
    hits, window_start = session.execute(statement).one()
    retry_after = max(window_start + limit.window - now, timedelta(0))
    return Verdict(allowed=hits <= limit.hits, retry_after=retry_after)


def release(session: Session, key: str) -> None:
    """Forget a key's hits, for when the action they paid for did not happen after all."""
    session.execute(delete(Throttle).where(Throttle.key == key))


def first_use(session: Session, nonce: str, *, served_at: datetime, stale_before: datetime) -> bool:
    """Spend a form challenge: True the first time, False for every later use.

    On PostgreSQL a second transaction inserting the same nonce waits for the first and then
    inserts nothing; on SQLite writers take turns. Challenges served before `stale_before`
    cannot pass any more, so their rows are dropped.
    """
    session.execute(delete(UsedChallenge).where(UsedChallenge.served_at < stale_before))
    statement = (
        _insert(session)(UsedChallenge)
        .values(nonce=nonce, served_at=served_at)
        .on_conflict_do_nothing(index_elements=[UsedChallenge.nonce])
        .returning(UsedChallenge.nonce)
    )
    return session.execute(statement).first() is not None


def _insert(session: Session) -> Any:
    """The dialect's INSERT, which alone knows ON CONFLICT."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
