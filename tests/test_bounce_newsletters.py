"""Bounce reports and mailto unsubscribes when the install sends two newsletters.

Each newsletter signs its VERP senders and unsubscribe tokens with its own List-Id. The reports
of test_bounces are rendered with the tokens of `brief`, the second newsletter, to which some
readers also subscribe: the processing must recognise them, leave only `brief` on a mailto
unsubscribe, and suppress the whole address on a bounce or a complaint.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from newsletter.app import App
from newsletter.bounces.apply import process_bounces
from newsletter.db.models import (
    EventKind,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
)
from newsletter.mail.tokens import Tokens
from newsletter.subscribers import rules

from .conftest import with_brief
from .test_bounces import SENT_AT, World, make_world, write_mbox

ACTIVE, LEFT = SubscriptionStatus.ACTIVE, SubscriptionStatus.UNSUBSCRIBED


@pytest.fixture
def two(app: App) -> Iterator[App]:
    with with_brief(app, ("Middle East",)) as both:
        yield both


@pytest.fixture
def brief(two: App) -> World:
    """The nine readers of test_bounces; alice, frank and grace also read `brief`, and the
    reports carry `brief`'s tokens."""
    world = make_world(two)
    with two.transaction() as session:
        for name in ("alice", "frank", "grace"):
            person = session.get(Subscriber, world.ids[name])
            assert person is not None
            rules.add(session, person.email, name="", at=SENT_AT, newsletter="brief")
    keys = two.settings.secrets.secret_keys
    return replace(world, tokens=Tokens(keys, two.settings.for_newsletter("brief").list_id))


def _subscriptions(world: World, name: str) -> dict[str, SubscriptionStatus]:
    with world.app.sessions() as session:
        rows = session.execute(
            select(Subscription.newsletter, Subscription.status).where(
                Subscription.subscriber_id == world.ids[name]
            )
        )
        return {row.newsletter: row.status for row in rows}


def _process(world: World, tmp_path: Path, name: str, *, mbox: str = "in.mbox") -> int:
    """Process one rendered report; returns how many addresses it newly suppressed."""
    path = write_mbox(tmp_path / mbox, [world.render(name)])
    report = process_bounces(world.app, str(path))
    assert report.problems == [], report.problems
    return report.suppressed


def test_a_mailto_unsubscribe_leaves_only_the_newsletter_of_its_token(
    brief: World, tmp_path: Path
) -> None:
    assert _process(brief, tmp_path, "mailto_unsubscribe.eml") == 0

    assert brief.subscriber("grace").status is SubscriberStatus.ACTIVE
    assert _subscriptions(brief, "grace") == {"weekly": ACTIVE, "brief": LEFT}
    (left,) = brief.events("grace", EventKind.UNSUBSCRIBED)
    assert (left.source, left.newsletter) == ("mailto", "brief")
    assert left.evidence is not None
    assert left.evidence["newsletter"] == "brief"

    # The weekly's own token, later, leaves the last newsletter: the address goes with it.
    weekly = replace(
        brief,
        tokens=Tokens(brief.app.settings.secrets.secret_keys, brief.app.settings.list_id),
    )
    later = weekly.render("mailto_unsubscribe.eml", message_id="<second@mail.example.com>")
    path = write_mbox(tmp_path / "later.mbox", [later])
    assert process_bounces(weekly.app, str(path)).suppressed == 1
    assert weekly.subscriber("grace").status is SubscriberStatus.UNSUBSCRIBED
    assert _subscriptions(weekly, "grace") == {"weekly": LEFT, "brief": LEFT}


def test_a_bounce_or_complaint_under_one_newsletter_suppresses_the_address(
    brief: World, tmp_path: Path
) -> None:
    assert _process(brief, tmp_path, "postfix_hard_511.eml", mbox="bounce.mbox") == 1
    assert brief.subscriber("alice").status is SubscriberStatus.BOUNCED
    (bounced,) = brief.events("alice", EventKind.BOUNCED)
    assert bounced.evidence is not None
    assert bounced.evidence["newsletter"] == "brief"

    assert _process(brief, tmp_path, "arf_complaint.eml", mbox="complaint.mbox") == 1
    assert brief.subscriber("frank").status is SubscriberStatus.UNSUBSCRIBED
    assert _subscriptions(brief, "frank") == {"weekly": LEFT, "brief": LEFT}


def test_a_token_of_no_configured_newsletter_is_not_acted_on(brief: World, tmp_path: Path) -> None:
    stranger = replace(
        brief, tokens=Tokens(brief.app.settings.secrets.secret_keys, "gone.example.org")
    )
    path = write_mbox(tmp_path / "in.mbox", [stranger.render("mailto_unsubscribe.eml")])
    report = process_bounces(stranger.app, str(path))
    (problem,) = report.problems
    assert "not valid" in problem.reason
    assert _subscriptions(brief, "grace") == {"weekly": ACTIVE, "brief": ACTIVE}
