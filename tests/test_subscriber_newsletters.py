"""Subscribers of several newsletters: the CSV columns, and the subscriber commands.

The install has `weekly` (every feed section) and `brief` (Middle East and Europe only).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from newsletter.app import App
from newsletter.db.models import (
    Event,
    EventKind,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
)
from newsletter.subscribers import rules
from newsletter.subscribers.csv import import_csv
from newsletter.subscribers.export import export_csv

from .conftest import Cli, with_brief

ACTIVE, PENDING = SubscriptionStatus.ACTIVE, SubscriptionStatus.PENDING
LEFT = SubscriptionStatus.UNSUBSCRIBED
CONFIG = """\
[newsletter]
name = "The Weekly Round-up"

[newsletters.brief]
name = "The Middle East Brief"
sections = ["Middle East", "Europe"]
issue_closes = "Thursday 07:00"
"""


@pytest.fixture
def two(app: App) -> Iterator[App]:
    with with_brief(app, ("Middle East", "Europe")) as both:
        yield both


@pytest.fixture
def run(cli: Cli, tmp_path: Path) -> Cli:
    """The command line with a configuration file naming both newsletters."""
    (tmp_path / "newsletter.toml").write_text(CONFIG, encoding="utf-8")
    return replace(cli, env={**cli.env, "NEWSLETTER_CONFIG": "newsletter.toml"})


def _held(app: App) -> dict[str, dict[str, tuple[SubscriptionStatus, str]]]:
    """Each address's subscriptions: newsletter -> (status, sections as stored)."""
    found: dict[str, dict[str, tuple[SubscriptionStatus, str]]] = {}
    with app.sessions() as session:
        rows = session.execute(
            select(
                Subscriber.email,
                Subscription.newsletter,
                Subscription.status,
                Subscription.sections,
            ).join(Subscription, Subscription.subscriber_id == Subscriber.id)
        )
        for email, newsletter, status, sections in rows:
            found.setdefault(email, {})[newsletter] = (status, sections)
    return found


def _write(tmp_path: Path, text: str, name: str = "list.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_rows_name_newsletters_and_sections_and_wrong_names_are_reported_by_line(
    two: App, tmp_path: Path
) -> None:
    path = _write(
        tmp_path,
        "email,name,newsletters,sections\n"
        "ann@example.org,Ann,Weekly; brief,Middle East\n"
        "bob@example.org,Bob,,\n"
        "cy@example.org,Cy,brief,europe\n"
        "dee@example.org,Dee,monthly;brief,Mars;Africa\n"
        "eve@example.org,Eve,brief,Americas\n"
        "fay@example.org,Fay,weekly;brief,brief:Europe\n",
    )
    report = import_csv(two, path)
    assert (report.added, report.invalid) == (4, 2)
    assert report.reasons == [
        (5, "unknown newsletter 'monthly' (the newsletters are: weekly, brief)"),
        (
            5,
            "unknown section 'Mars' (the sections are: Europe, Middle East, Asia-Pacific, "
            "Americas, Africa, Global)",
        ),
        (5, "section 'Africa' is not carried by brief"),
        (6, "section 'Americas' is not carried by brief"),
    ]
    assert _held(two) == {
        "ann@example.org": {"weekly": (ACTIVE, "Middle East"), "brief": (ACTIVE, "Middle East")},
        "bob@example.org": {"weekly": (ACTIVE, "")},
        "cy@example.org": {"brief": (ACTIVE, "Europe")},  # as the configuration spells it
        "fay@example.org": {"weekly": (ACTIVE, ""), "brief": (ACTIVE, "Europe")},
    }
    out = io.StringIO()
    export_csv(two, out)
    cells = {
        r["email"]: (r["newsletters"], r["sections"])
        for r in csv.DictReader(io.StringIO(out.getvalue()))
    }
    assert cells == {
        "ann@example.org": ("weekly;brief", "Middle East"),
        "bob@example.org": ("weekly", ""),
        "cy@example.org": ("brief", "Europe"),
        "fay@example.org": ("weekly;brief", "brief:Europe"),
    }


def test_readers_held_gain_newsletters_and_sections_but_keep_what_they_left(
    two: App, tmp_path: Path
) -> None:
    now = two.clock.now()
    with two.transaction() as session:
        for email in ("ann@example.org", "bob@example.org", "cy@example.org"):
            rules.add(session, email, name="", at=now)
        rules.add(session, "bob@example.org", name="", at=now, newsletter="brief")
        bob = rules.get(session, "bob@example.org")
        rules.unsubscribe(session, bob, at=now, source="web", newsletter="brief")
        rules.create(
            session,
            "dee@example.org",
            name="",
            status=SubscriberStatus.PENDING,
            at=now,
            source="web",
        )
    path = _write(
        tmp_path,
        "email,status,newsletters,sections\n"
        "ann@example.org,active,weekly;brief,Europe\n"
        "bob@example.org,active,brief,\n"
        "cy@example.org,active,,\n"
        "dee@example.org,active,,\n",
    )
    report = import_csv(two, path)
    assert (report.added, report.updated, report.unchanged, report.suppressed) == (0, 2, 1, 1)
    assert _held(two) == {
        "ann@example.org": {"weekly": (ACTIVE, "Europe"), "brief": (ACTIVE, "Europe")},
        "bob@example.org": {"weekly": (ACTIVE, ""), "brief": (LEFT, "")},  # the reader's choice
        "cy@example.org": {"weekly": (ACTIVE, "")},
        "dee@example.org": {"weekly": (ACTIVE, "")},  # confirmed with its address
    }
    with two.sessions() as session:
        kinds = session.execute(
            select(Event.kind, Event.newsletter)
            .join(Subscriber, Subscriber.id == Event.subscriber_id)
            .where(Subscriber.email == "ann@example.org", Event.source == "import")
        ).all()
    assert sorted(kinds) == [(EventKind.SUBSCRIBED, "brief"), (EventKind.UPDATED, "weekly")]
    again = import_csv(two, path)
    assert (again.updated, again.unchanged, again.suppressed) == (0, 3, 1)


def test_an_unsubscribed_row_ends_every_subscription_of_the_address(
    two: App, tmp_path: Path
) -> None:
    with two.transaction() as session:
        rules.add(session, "ann@example.org", name="", at=two.clock.now())
        rules.add(session, "ann@example.org", name="", at=two.clock.now(), newsletter="brief")
    import_csv(two, _write(tmp_path, "email,status\nann@example.org,unsubscribed\n"))
    assert _held(two) == {"ann@example.org": {"weekly": (LEFT, ""), "brief": (LEFT, "")}}


def test_cli_import_and_export_for_one_newsletter(run: Cli, tmp_path: Path) -> None:
    assert run("subscribers", "add", "ann@example.org").exit_code == 0
    chose = run(
        "subscribers", "add", "cy@example.org", "--newsletter", "brief", "--sections", "Europe"
    )
    assert chose.exit_code == 0, chose.output
    path = _write(
        tmp_path, "email,name\nann@example.org,Ann\nbob@example.org,Bob\ncy@example.org,\n"
    )
    result = run("subscribers", "import", str(path), "--newsletter", "brief")
    assert result.exit_code == 0, result.output
    assert "added 1, updated 1, unchanged 1" in result.output  # Cy keeps the sections chosen
    listed = run("subscribers", "list", "--newsletter", "brief")
    lines = [line.split() for line in listed.output.splitlines() if "@" in line]
    assert [(line[0], line[-1]) for line in lines] == [
        ("ann@example.org", "brief"),
        ("cy@example.org", "Europe"),
        ("bob@example.org", "brief"),
    ]
    assert "brief: Europe" in listed.output
    assert "weekly; brief" in listed.output
    exported = run("subscribers", "export", "--newsletter", "weekly")
    rows = exported.output.splitlines()[1:]
    assert len(rows) == 1
    assert rows[0].startswith("ann@example.org,Ann,active,")
    assert rows[0].endswith(",weekly;brief,")
    bad = _write(tmp_path, "email,newsletters\nzed@example.org,monthly\n", "bad.csv")
    refused = run("subscribers", "import", str(bad))
    assert refused.exit_code == 1
    assert "line 2: unknown newsletter 'monthly'" in refused.output


def test_cli_add_with_sections_unsubscribe_and_show(run: Cli) -> None:
    wrong = run(
        "subscribers",
        "add",
        "ann@example.org",
        "--newsletter",
        "brief",
        "--sections",
        "Europe;Asia-Pacific",
    )
    assert wrong.exit_code == 2
    assert "section 'Asia-Pacific' is not carried by brief" in wrong.output
    assert "Traceback" not in wrong.output
    added = run(
        "subscribers", "add", "ann@example.org", "--newsletter", "brief", "--sections", "europe"
    )
    assert added.exit_code == 0, added.output
    assert run("subscribers", "add", "ann@example.org").exit_code == 0
    shown = run("subscribers", "show", "ann@example.org").output
    assert "Subscriptions: 2" in shown
    assert "brief active Europe" in shown
    assert "weekly active all sections" in shown
    assert "Status history: 2" in shown  # joining the second newsletter is recorded too
    joined = shown.split("Status history: 2")[1].splitlines()[2]
    assert (joined.split()[0], joined.split()[-2:]) == ("subscribed", ["weekly", "cli"])

    both = run("subscribers", "unsubscribe", "ann@example.org", "--newsletter", "brief", "--all")
    assert both.exit_code == 2
    assert "--newsletter and --all cannot be used together" in both.output
    left = run("subscribers", "unsubscribe", "ann@example.org", "--newsletter", "brief")
    assert left.output.startswith("Unsubscribed ann@example.org from brief.")
    again = run("subscribers", "add", "ann@example.org", "--newsletter", "brief")
    assert again.output.startswith("ann@example.org unsubscribed from brief; left unchanged.")
    assert "ann@example.org" in run("subscribers", "list", "--status", "active").output
    everything = run("subscribers", "unsubscribe", "ann@example.org", "--all")
    assert everything.output.startswith("Unsubscribed ann@example.org from every newsletter.")
    assert "unsubscribed" in run("subscribers", "list").output


def test_an_unknown_newsletter_is_one_clear_line(run: Cli) -> None:
    for command in (("issue", "show"), ("send", "--if-new"), ("stats",), ("subscribers", "list")):
        result = run(*command, "--newsletter", "monthly")
        assert result.exit_code == 1, (command, result.output)
        assert result.output == (
            "Error: there is no newsletter 'monthly' (the newsletters are: weekly, brief)\n"
        )
