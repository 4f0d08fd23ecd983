"""The per-issue, per-article click counters: one row each, incremented by an upsert."""

from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from newsletter.db.models import ClickCount

KINDS = ("human", "early", "burst", "head", "scanner")


def add(
    session: Session, issue_id: int, article_id: int, kind: str, *, moved_from: str = ""
) -> None:
    """One more click of `kind` (and, with `moved_from`, one fewer of that kind)."""
    if kind not in KINDS or (moved_from and moved_from not in KINDS):
        raise ValueError(f"unknown click kind {kind!r}")
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    values = dict.fromkeys(KINDS, 0)
    values[kind] = 1
    changes = {kind: getattr(ClickCount, kind) + 1}
    if moved_from:
        values[moved_from] = 0
        changes[moved_from] = getattr(ClickCount, moved_from) - 1
    statement = (
        insert(ClickCount)
        .values(issue_id=issue_id, article_id=article_id, **values)
        .on_conflict_do_update(
            index_elements=[ClickCount.issue_id, ClickCount.article_id], set_=changes
        )
    )
    session.execute(statement)
