"""Which articles make the week's issue, and in what order.

Pure and deterministic: the same candidates and overrides always give the same issue, so a
rebuilt draft only changes when the articles or the editors' decisions do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from newsletter.db.models import OverrideKind


@dataclass(frozen=True)
class Candidate:
    article_id: int
    section: str
    published_at: datetime


@dataclass(frozen=True)
class Decision:
    """An editor's override, in the order it was made."""

    article_id: int
    kind: OverrideKind
    position: int | None = None  # 1-based, for MOVE


@dataclass(frozen=True)
class Selected:
    article_id: int
    featured: bool


def select_articles(
    window: Sequence[Candidate],
    outside: Sequence[Candidate],
    decisions: Sequence[Decision],
    *,
    already_sent: frozenset[int],
    sections: Sequence[str],
    max_articles: int,
) -> tuple[Selected, ...]:
    """The ordered selection.

    `window` holds the articles published inside the week, `outside` the ones editors
    brought in by id (included or featured). Articles already sent are dropped unless an
    editor asks for them explicitly. Later decisions about an article override earlier ones;
    moves are applied last, in the order they were made.
    """
    known = {c.article_id: c for c in (*outside, *window)}
    chosen = {c.article_id for c in window if c.article_id not in already_sent}
    featured: list[int] = []
    explicit: set[int] = set()
    for decision in decisions:
        aid = decision.article_id
        if aid not in known or decision.kind is OverrideKind.MOVE:
            continue
        if aid in featured:
            featured.remove(aid)
        if decision.kind is OverrideKind.EXCLUDE:
            chosen.discard(aid)
            explicit.discard(aid)
            continue
        chosen.add(aid)
        explicit.add(aid)
        if decision.kind is OverrideKind.FEATURE:
            featured.append(aid)

    def rank(aid: int) -> tuple[int, int, str, float, int]:
        candidate = known[aid]
        if aid in featured:
            return (0, featured.index(aid), "", 0.0, 0)
        order = _section_rank(candidate.section, sections)
        return (1, order, candidate.section.casefold(), -candidate.published_at.timestamp(), -aid)

    by_rank = sorted(chosen, key=rank)
    # Editors' explicit choices are kept first when the issue is full.
    kept = [aid for aid in by_rank if aid in explicit][:max_articles]
    room = max_articles - len(kept)
    kept += [aid for aid in by_rank if aid not in explicit][:room]
    ordered = sorted(kept, key=rank)
    for decision in decisions:
        if decision.kind is OverrideKind.MOVE and decision.article_id in ordered:
            ordered.remove(decision.article_id)
            index = min(max((decision.position or 1) - 1, 0), len(ordered))
            ordered.insert(index, decision.article_id)
    return tuple(Selected(aid, aid in featured) for aid in ordered)


def _section_rank(section: str, sections: Sequence[str]) -> int:
    """Configured sections in their order, then sections no longer configured (each kept
    together, by name), then the articles in no section, last."""
    folded = [s.casefold() for s in sections]
    key = section.casefold()
    if not key:
        return len(folded) + 1
    return folded.index(key) if key in folded else len(folded)
