"""Building the week's draft: selection stored in order, rendering, overrides, sent issues."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from sqlalchemy import select

from newsletter.app import App
from newsletter.clock import FixedClock
from newsletter.config import Settings
from newsletter.db.models import Article, Issue, IssueStatus, OverrideKind
from newsletter.errors import NotFoundError, StateError, UsageError
from newsletter.feeds.store import fetch_sources
from newsletter.issue.build import build_issue, show_issue
from newsletter.issue.overrides import add_override
from newsletter.issue.periods import Week

from .conftest import REPO, Cli

DEMO = REPO / "examples" / "feed.xml"
W47 = Week(2024, 47)
SUNDAY_URL = "https://www.example.org/2024/11/24/pacific-undersea-cables-diplomacy/"
OUTSIDE_URL = "https://www.example.org/2024/11/14/baltic-grid-synchronisation/"
MONDAY_UTC_BUT_SUNDAY_NY = "https://www.example.org/2024/11/17/election-observers-reporting/"


@pytest.fixture
def demo(app: App) -> App:
    (report,) = fetch_sources(app, [str(DEMO)])
    assert report.ok
    return app


def article_id(app: App, url: str) -> int:
    with app.transaction() as session:
        return session.scalars(select(Article.id).where(Article.url == url)).one()


def urls(app: App, week: Week = W47) -> list[str]:
    return [row.url for row in show_issue(app, week).articles]


def set_status(app: App, week: Week, status: IssueStatus) -> None:
    with app.transaction() as session:
        issue = session.scalars(select(Issue).where(Issue.week == str(week))).one()
        issue.status = status


def test_build_selects_the_week_in_section_order_and_stores_the_render(demo: App) -> None:
    report = build_issue(demo, W47)
    assert (report.week, report.articles, report.featured) == (W47, 11, 0)
    assert report.html_bytes > 0
    view = show_issue(demo, W47)
    assert [a.position for a in view.articles] == list(range(1, 12))
    sections = [a.section for a in view.articles]
    assert sections == sorted(sections, key=demo.settings.feeds.sections.index)
    for section in set(sections):
        times = [a.published_at for a in view.articles if a.section == section]
        assert times == sorted(times, reverse=True)
    assert SUNDAY_URL in urls(demo)  # Sunday 23:30 New York, Monday in UTC
    assert MONDAY_UTC_BUT_SUNDAY_NY not in urls(demo)  # Monday in UTC, but the week before
    with demo.transaction() as session:
        issue = session.scalars(select(Issue)).one()
        assert issue.status is IssueStatus.DRAFT
        assert issue.subject == report.subject
        assert issue.html
        assert issue.text
        assert issue.web_html
        assert issue.built_at == demo.clock.now()
        assert "Nordic defence ministers" in issue.text


def test_rebuilding_is_deterministic(demo: App) -> None:
    build_issue(demo, W47)
    first = show_issue(demo, W47)
    with demo.transaction() as session:
        html = session.scalars(select(Issue.html)).one()
    build_issue(demo, W47)
    assert show_issue(demo, W47).articles == first.articles
    with demo.transaction() as session:
        assert session.scalars(select(Issue.html)).one() == html


def test_at_most_max_articles(settings: Settings, clock: FixedClock) -> None:
    small = replace(settings, feeds=replace(settings.feeds, max_articles=4))
    application = App.create(small, clock=clock)
    try:
        fetch_sources(application, [str(DEMO)])
        assert build_issue(application, W47).articles == 4
    finally:
        application.close()


def test_an_empty_week_builds_an_empty_draft(demo: App) -> None:
    report = build_issue(demo, Week(2024, 30))
    assert report.articles == 0
    assert show_issue(demo, Week(2024, 30)).articles == ()


def test_without_a_week_the_next_issue_is_built(demo: App) -> None:
    # The test clock is in 2024-W47: the next issue is the closed 2024-W46 until it is sent.
    assert build_issue(demo, None).week == Week(2024, 46)
    set_status(demo, Week(2024, 46), IssueStatus.SENT)
    assert build_issue(demo, None).week == W47


def test_overrides_apply_and_survive_rebuilds(demo: App) -> None:
    build_issue(demo, W47)
    add_override(demo, W47, SUNDAY_URL, OverrideKind.FEATURE)
    excluded = urls(demo)[3]
    add_override(demo, W47, str(article_id(demo, excluded)), OverrideKind.EXCLUDE)
    add_override(demo, W47, OUTSIDE_URL, OverrideKind.INCLUDE)
    last = urls(demo)[-1]
    add_override(demo, W47, last, OverrideKind.MOVE, 2)
    expected = urls(demo)
    assert expected[0] == SUNDAY_URL
    assert expected[1] == last
    assert excluded not in expected
    assert OUTSIDE_URL in expected
    view = show_issue(demo, W47)
    assert view.articles[0].featured
    assert [o.kind for o in view.overrides] == [
        OverrideKind.FEATURE,
        OverrideKind.EXCLUDE,
        OverrideKind.INCLUDE,
        OverrideKind.MOVE,
    ]
    build_issue(demo, W47)
    assert urls(demo) == expected


def test_a_later_decision_replaces_an_earlier_one(demo: App) -> None:
    add_override(demo, W47, SUNDAY_URL, OverrideKind.EXCLUDE)
    assert SUNDAY_URL not in urls(demo)
    add_override(demo, W47, SUNDAY_URL, OverrideKind.INCLUDE)
    assert SUNDAY_URL in urls(demo)
    assert [o.kind for o in show_issue(demo, W47).overrides] == [OverrideKind.INCLUDE]


def test_unknown_article_is_a_clear_error(demo: App) -> None:
    with pytest.raises(NotFoundError, match="no article with id or URL '99999'"):
        add_override(demo, W47, "99999", OverrideKind.FEATURE)
    with pytest.raises(NotFoundError, match=re.escape("https://nowhere.example/")):
        add_override(demo, W47, "https://nowhere.example/", OverrideKind.INCLUDE)


def test_move_needs_a_positive_position(demo: App) -> None:
    with pytest.raises(UsageError):
        add_override(demo, W47, SUNDAY_URL, OverrideKind.MOVE, 0)


def test_show_before_build_says_what_to_do(demo: App) -> None:
    with pytest.raises(NotFoundError, match="no issue for 2024-W47") as caught:
        show_issue(demo, W47)
    assert "issue build" in caught.value.hint


@pytest.mark.parametrize("status", [IssueStatus.SENDING, IssueStatus.SENT])
def test_an_issue_sending_or_sent_cannot_be_rebuilt_or_changed(
    demo: App, status: IssueStatus
) -> None:
    build_issue(demo, W47)
    before = urls(demo)
    set_status(demo, W47, status)
    with pytest.raises(StateError, match=f"already {status.value}"):
        build_issue(demo, W47)
    with pytest.raises(StateError):
        add_override(demo, W47, SUNDAY_URL, OverrideKind.EXCLUDE)
    assert urls(demo) == before


def test_articles_in_a_sent_issue_are_not_candidates_again(demo: App) -> None:
    build_issue(demo, Week(2024, 48))  # Monday's and Tuesday's articles
    add_override(demo, Week(2024, 48), SUNDAY_URL, OverrideKind.INCLUDE)
    assert SUNDAY_URL in urls(demo, Week(2024, 48))
    set_status(demo, Week(2024, 48), IssueStatus.SENT)
    build_issue(demo, W47)
    assert SUNDAY_URL not in urls(demo)
    assert len(urls(demo)) == 10


# -- the command line ---------------------------------------------------------------------


def test_cli_build_show_and_overrides(cli: Cli) -> None:
    assert cli("articles", "fetch", str(DEMO)).exit_code == 0
    built = cli("issue", "build", "--week", "2024-W47")
    assert built.exit_code == 0, built.output
    assert "Built 2024-W47: 11 article(s), 0 featured" in built.stdout
    featured = cli("issue", "feature", SUNDAY_URL, "--week", "2024-W47")
    assert featured.exit_code == 0, featured.output
    assert "feature: [" in featured.stdout
    moved = cli("issue", "move", SUNDAY_URL, "3", "--week", "2024-W47")
    assert moved.exit_code == 0
    shown = cli("issue", "show", "--week", "2024-W47")
    assert shown.exit_code == 0
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("2024-W47  [draft]")
    third = next(line for line in lines if line.lstrip().startswith("3."))
    assert "* [" in third
    assert "undersea cables" in third
    assert "Overrides:" in lines


def test_cli_errors_are_one_line(cli: Cli) -> None:
    result = cli("issue", "exclude", "424242", "--week", "2024-W47")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "Error: no article with id or URL '424242' "
        "(`newsletter articles list --week WEEK` shows ids and URLs)"
    ]
    assert cli("issue", "move", "1", "0", "--week", "2024-W47").exit_code == 2
    assert cli("issue", "show", "--week", "2024-W47").exit_code == 1


def test_cli_empty_week_build_says_send_waits(cli: Cli) -> None:
    result = cli("issue", "build", "--week", "2024-W30")
    assert result.exit_code == 0
    assert "No articles yet: `newsletter send` sends nothing" in result.stdout


def test_cli_one_top_story_unfeature_section_and_reset(cli: Cli) -> None:
    assert cli("articles", "fetch", str(DEMO)).exit_code == 0
    week = ("--week", "2024-W47")
    assert cli("issue", "feature", SUNDAY_URL, *week).exit_code == 0
    assert cli("issue", "feature", OUTSIDE_URL, *week).exit_code == 0
    shown = cli("issue", "show", *week).stdout
    (top,) = [line for line in shown.splitlines() if ". * [" in line]
    assert "Baltic" in top
    assert shown.count(". * [") == 1  # the second feature replaced the first top story
    assert "undersea cables" in shown  # which stays in the issue
    assert cli("issue", "feature", SUNDAY_URL, "--also", *week).exit_code == 0
    assert cli("issue", "show", *week).stdout.count(". * [") == 2
    assert cli("issue", "unfeature", SUNDAY_URL, *week).exit_code == 0
    again = cli("issue", "unfeature", SUNDAY_URL, *week)
    assert again.exit_code == 1
    assert "is not featured" in again.stderr
    assert cli("issue", "section", SUNDAY_URL, "Briefing", *week).exit_code == 0
    placed = cli("issue", "show", *week).stdout
    assert "] Briefing / " in placed
    assert "section in Briefing:" in placed
    reset = cli("issue", "reset", *week)
    # Features, the unfeature's include and the section: three decisions to drop.
    assert "Dropped 3 override(s)." in reset.stdout, reset.output
    assert "Overrides:" not in cli("issue", "show", *week).stdout


def test_cli_build_and_show_say_what_was_left_out_and_what_replaced_it(cli: Cli) -> None:
    assert cli("articles", "fetch", str(DEMO)).exit_code == 0
    cli.env["NEWSLETTER_FEEDS_MAX_ARTICLES"] = "3"
    built = cli("issue", "build", "--week", "2024-W47")
    assert "Built 2024-W47: 3 article(s)" in built.stdout
    assert built.stdout.count(": over max_articles") == 8, built.stdout
    first = next(
        line
        for line in cli("issue", "show", "--week", "2024-W47").stdout.splitlines()
        if line.lstrip().startswith("1.")
    )
    first_id = first.split("[")[1].split("]")[0]
    excluded = cli("issue", "exclude", first_id, "--week", "2024-W47")
    assert "Came in for excluded articles:" in excluded.stdout
    shown = cli("issue", "show", "--week", "2024-W47").stdout
    assert f"[{first_id}]" in shown.split("Left out:")[1]
    assert ": excluded" in shown
    assert ": came in for an excluded article" in shown
