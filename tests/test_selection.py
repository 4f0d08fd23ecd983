"""The week's selection: window, order, cap, overrides, already-sent articles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from newsletter.db.models import OverrideKind
from newsletter.issue.selection import (
    Candidate,
    Decision,
    LeftOut,
    Reason,
    Selection,
    select_articles,
)

SECTIONS = ("Europe", "Middle East", "Asia-Pacific", "Americas")
T0 = datetime(2024, 11, 18, 12, tzinfo=UTC)


def cand(aid: int, section: str, hours: int) -> Candidate:
    return Candidate(aid, section, T0 + timedelta(hours=hours))


WINDOW = [
    cand(1, "Americas", 1),
    cand(2, "Europe", 2),
    cand(3, "Europe", 30),
    cand(4, "Middle East", 5),
    cand(5, "Culture", 50),  # not a configured section: after all of them
    cand(6, "", 60),
    cand(7, "Asia-Pacific", 3),
]


def ids(selection: Selection) -> list[int]:
    return [s.article_id for s in selection.chosen]


def run(
    decisions: list[Decision] | None = None,
    *,
    outside: list[Candidate] | None = None,
    sent: frozenset[int] = frozenset(),
    max_articles: int = 12,
) -> list[int]:
    return ids(
        select_articles(
            WINDOW,
            outside or [],
            decisions or [],
            already_sent=sent,
            sections=SECTIONS,
            max_articles=max_articles,
        )
    )


def test_section_order_then_newest_first() -> None:
    assert run() == [3, 2, 4, 7, 1, 5, 6]


def test_articles_in_no_section_come_last_and_other_sections_stay_together() -> None:
    window = [
        cand(1, "", 10),
        cand(2, "Culture", 9),
        cand(3, "", 8),
        cand(4, "Culture", 7),
        cand(5, "Books", 6),
        cand(6, "Europe", 1),
    ]
    chosen = select_articles(
        window, [], [], already_sent=frozenset(), sections=SECTIONS, max_articles=12
    )
    assert ids(chosen) == [6, 5, 2, 4, 1, 3]


def test_at_most_max_articles() -> None:
    assert run(max_articles=3) == [3, 2, 4]


def test_already_sent_articles_are_left_out() -> None:
    assert run(sent=frozenset({3, 4})) == [2, 7, 1, 5, 6]


def test_feature_puts_articles_first_in_the_order_featured() -> None:
    selection = select_articles(
        WINDOW,
        [],
        [Decision(1, OverrideKind.FEATURE), Decision(4, OverrideKind.FEATURE)],
        already_sent=frozenset(),
        sections=SECTIONS,
        max_articles=12,
    )
    assert ids(selection) == [1, 4, 3, 2, 7, 5, 6]
    assert [s.featured for s in selection.chosen] == [True, True, False, False, False, False, False]


def test_exclude_and_later_decisions_win() -> None:
    assert run([Decision(3, OverrideKind.EXCLUDE)]) == [2, 4, 7, 1, 5, 6]
    assert run([Decision(3, OverrideKind.EXCLUDE), Decision(3, OverrideKind.INCLUDE)]) == run()
    assert run([Decision(1, OverrideKind.FEATURE), Decision(1, OverrideKind.EXCLUDE)]) == (
        [3, 2, 4, 7, 5, 6]
    )


def test_include_from_outside_the_window_takes_its_section_place() -> None:
    old = cand(99, "Europe", -200)
    assert run([Decision(99, OverrideKind.INCLUDE)], outside=[old]) == [3, 2, 99, 4, 7, 1, 5, 6]


def test_explicit_include_also_brings_back_an_already_sent_article() -> None:
    assert 3 in run([Decision(3, OverrideKind.INCLUDE)], sent=frozenset({3}))


def test_included_articles_survive_the_cap() -> None:
    old = cand(99, "Americas", -200)
    got = run([Decision(99, OverrideKind.INCLUDE)], outside=[old], max_articles=3)
    assert got == [3, 2, 99]


def test_unknown_articles_in_decisions_are_ignored() -> None:
    assert run([Decision(12345, OverrideKind.FEATURE), Decision(777, OverrideKind.MOVE, 1)]) == (
        run()
    )


def test_move_to_a_position() -> None:
    assert run([Decision(6, OverrideKind.MOVE, 1)]) == [6, 3, 2, 4, 7, 1, 5]
    assert run([Decision(3, OverrideKind.MOVE, 3)]) == [2, 4, 3, 7, 1, 5, 6]
    assert run([Decision(3, OverrideKind.MOVE, 100)]) == [2, 4, 7, 1, 5, 6, 3]


def test_moves_apply_in_order_after_features() -> None:
    decisions = [
        Decision(1, OverrideKind.FEATURE),
        Decision(6, OverrideKind.MOVE, 1),
        Decision(5, OverrideKind.MOVE, 2),
    ]
    assert run(decisions) == [6, 5, 1, 3, 2, 4, 7]


def test_excluded_article_cannot_be_moved_back_in() -> None:
    assert run([Decision(3, OverrideKind.EXCLUDE), Decision(3, OverrideKind.MOVE, 1)]) == (
        [2, 4, 7, 1, 5, 6]
    )


@given(
    st.permutations(WINDOW),
    st.lists(
        st.tuples(st.sampled_from([1, 2, 3, 4, 5, 6, 7]), st.sampled_from(list(OverrideKind))),
        max_size=6,
    ),
    st.integers(min_value=1, max_value=10),
)
def test_deterministic_and_bounded_whatever_the_input_order(
    window: list[Candidate], raw: list[tuple[int, OverrideKind]], cap: int
) -> None:
    decisions = [Decision(aid, kind, 2 if kind is OverrideKind.MOVE else None) for aid, kind in raw]
    first = select_articles(
        window, [], decisions, already_sent=frozenset(), sections=SECTIONS, max_articles=cap
    )
    again = select_articles(
        list(reversed(window)),
        [],
        decisions,
        already_sent=frozenset(),
        sections=SECTIONS,
        max_articles=cap,
    )
    assert first == again
    assert len(first.chosen) <= cap
    assert len(set(ids(first))) == len(first.chosen)
    left = {item.article_id for item in first.left_out}
    assert left.isdisjoint(ids(first))
    assert left | set(ids(first)) >= {c.article_id for c in window}


def full(decisions: list[Decision], *, max_articles: int = 3) -> Selection:
    return select_articles(
        WINDOW,
        [],
        decisions,
        already_sent=frozenset({5}),
        sections=SECTIONS,
        max_articles=max_articles,
    )


def test_what_is_left_out_comes_with_its_reason() -> None:
    selection = full([Decision(2, OverrideKind.EXCLUDE)])
    assert ids(selection) == [3, 4, 7]
    reasons = {item.article_id: item.reason for item in selection.left_out}
    assert reasons == {
        2: Reason.EXCLUDED,
        1: Reason.OVER_MAX,
        6: Reason.NO_SECTION,
        5: Reason.ALREADY_SENT,
    }
    assert LeftOut(2, Reason.EXCLUDED) in selection.left_out


def test_an_exclusion_names_the_article_that_replaced_it() -> None:
    assert full([]).replacements == ()
    assert full([Decision(2, OverrideKind.EXCLUDE)]).replacements == (7,)


def test_a_section_override_moves_the_article_and_its_rank() -> None:
    selection = full([Decision(6, OverrideKind.SECTION, section="Europe")], max_articles=12)
    placed = {s.article_id: s.section for s in selection.chosen}
    assert placed[6] == "Europe"
    assert ids(selection).index(6) < ids(selection).index(4)
