"""Which articles make the issue, in what order, and what was left out and why.

Pure and deterministic: the same candidates and overrides always give the same issue, so a
rebuilt draft only changes when the articles or the editors' decisions do. Everything the
selection drops is returned with its reason, so the editors see every decision it made.
"""

from __future__ import annotations

import enum
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
    section: str = ""  # for SECTION


@dataclass(frozen=True)
class Selected:
    article_id: int
    featured: bool
    section: str


class Reason(enum.StrEnum):
    OVER_MAX = "over max_articles"
    NO_SECTION = "no section, so ranked last and over max_articles"
    EXCLUDED = "excluded"
    ALREADY_SENT = "already sent in another issue"


@dataclass(frozen=True)
class LeftOut:
    article_id: int
    reason: Reason


@dataclass(frozen=True)
class Selection:
    chosen: tuple[Selected, ...]
    left_out: tuple[LeftOut, ...]
    # Articles that are in only because an excluded article made room for them.
    replacements: tuple[int, ...]


def select_articles(
    window: Sequence[Candidate],
    outside: Sequence[Candidate],
    decisions: Sequence[Decision],
    *,
    already_sent: frozenset[int],
    sections: Sequence[str],
    max_articles: int,
) -> Selection:
    """The ordered selection.

    `window` holds the articles of the issue's period (and late ones), `outside` the ones
    editors brought in by id (included or featured). Articles already sent are dropped
    unless an editor asks for them explicitly. Later decisions about an article override
    earlier ones; moves are applied last, in the order they were made.
    """

    def choose(
        made: Sequence[Decision],
    ) -> tuple[tuple[Selected, ...], tuple[LeftOut, ...]]:
        return _choose(
            window,
            outside,
            made,
            already_sent=already_sent,
            sections=sections,
            max_articles=max_articles,
        )

    chosen, left_out = choose(decisions)
    unexcluded, _ = choose([d for d in decisions if d.kind is not OverrideKind.EXCLUDE])
    before = {item.article_id for item in unexcluded}
    replacements = tuple(item.article_id for item in chosen if item.article_id not in before)
    return Selection(chosen, left_out, replacements)


def _choose(
    window: Sequence[Candidate],
    outside: Sequence[Candidate],
    decisions: Sequence[Decision],
    *,
    already_sent: frozenset[int],
    sections: Sequence[str],
    max_articles: int,
) -> tuple[tuple[Selected, ...], tuple[LeftOut, ...]]:
    known = {c.article_id: c for c in (*outside, *window)}
    section = {aid: c.section for aid, c in known.items()}
    chosen = {c.article_id for c in window if c.article_id not in already_sent}
    featured: list[int] = []
    explicit: set[int] = set()
    excluded: set[int] = set()
    for decision in decisions:
        aid = decision.article_id
        if aid not in known or decision.kind is OverrideKind.MOVE:
            continue
        if decision.kind is OverrideKind.SECTION:
            section[aid] = decision.section
            continue
        if aid in featured:
            featured.remove(aid)
        if decision.kind is OverrideKind.EXCLUDE:
            chosen.discard(aid)
            explicit.discard(aid)
            excluded.add(aid)
            continue
        excluded.discard(aid)
        chosen.add(aid)
        explicit.add(aid)
        if decision.kind is OverrideKind.FEATURE:
            featured.append(aid)

    def rank(aid: int) -> tuple[int, int, str, float, int]:
        if aid in featured:
            return (0, featured.index(aid), "", 0.0, 0)
        order = _section_rank(section[aid], sections)
        return (1, order, section[aid].casefold(), -known[aid].published_at.timestamp(), -aid)

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
    left_out = [
        LeftOut(aid, Reason.OVER_MAX if section[aid] else Reason.NO_SECTION)
        for aid in by_rank
        if aid not in kept
    ]
    left_out += [LeftOut(aid, Reason.EXCLUDED) for aid in sorted(excluded)]
    left_out += [
        LeftOut(aid, Reason.ALREADY_SENT)
        for aid in sorted(c.article_id for c in window)
        if aid in already_sent and aid not in explicit | excluded
    ]
    selected = tuple(Selected(aid, aid in featured, section[aid]) for aid in ordered)
    return selected, tuple(left_out)


def _section_rank(section: str, sections: Sequence[str]) -> int:
    """Configured sections in their order, then sections no longer configured (each kept
    together, by name), then the articles in no section, last."""
    folded = [s.casefold() for s in sections]
    key = section.casefold()
    if not key:
        return len(folded) + 1
    return folded.index(key) if key in folded else len(folded)
