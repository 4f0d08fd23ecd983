"""With VERP on, only a report that proves it answers our message is acted on.

Anyone can mail the bounce address. These reports name a reader but carry no token of ours,
or a tampered one, and must change nothing; the genuine ones in the same shapes still work,
delays are never failures, every report left alone is listed with its reason, and a wrong
suppression can be lifted with --force only. The reports are under data/bounces/proof/.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from newsletter.app import App
from newsletter.bounces.apply import process_bounces
from newsletter.bounces.reports import neutralise
from newsletter.db.models import EventKind, SubscriberStatus
from newsletter.untrusted import for_terminal

from .conftest import Cli
from .test_bounces import BOUNCE_DOMAIN, World, make_world, write_mbox


def _world(app: App, *, verp: bool = True, soft_bounce_limit: int = 3) -> World:
    delivery = replace(
        app.settings.delivery,
        bounce_domain=BOUNCE_DOMAIN if verp else "",
        soft_bounce_limit=soft_bounce_limit,
    )
    settings = replace(app.settings, delivery=delivery)
    return make_world(App(settings, app.engine, app.sessions, app.clock))


@pytest.fixture
def verp_world(app: App) -> World:
    """The nine readers of test_bounces, sent the issue under signed VERP senders."""
    return _world(app)


def _process(world: World, tmp_path: Path, *names: str) -> list[str]:
    """Process the named reports; return the reasons given for those not acted on."""
    mbox = write_mbox(tmp_path / "in.mbox", [world.render(n) for n in names])
    report = process_bounces(world.app, str(mbox))
    assert report.messages == len(names)
    return [p.reason for p in report.problems]


def _untouched(world: World, name: str) -> None:
    assert world.subscriber(name).status is SubscriberStatus.ACTIVE
    for kind in (EventKind.BOUNCED, EventKind.COMPLAINED, EventKind.UNSUBSCRIBED):
        assert world.events(name, kind) == []


def test_a_dsn_to_the_plain_bounce_address_is_not_acted_on(
    verp_world: World, tmp_path: Path
) -> None:
    (reason,) = _process(verp_world, tmp_path, "proof/plain_address_dsn.eml")

    _untouched(verp_world, "alice")
    assert reason.startswith("no VERP address or token of ours (it names alice@example.com)")


def test_a_dsn_to_a_tampered_verp_token_is_not_acted_on(verp_world: World, tmp_path: Path) -> None:
    raw = verp_world.render("proof/tampered_verp_dsn.eml")
    assert verp_world.forged_verp("alice").encode() in raw

    (reason,) = _process(verp_world, tmp_path, "proof/tampered_verp_dsn.eml")

    _untouched(verp_world, "alice")
    _untouched(verp_world, "ivan")  # whose signature the forger reused
    assert "the signed token in Delivered-To, To, returned Return-Path is not valid" in reason


def test_a_complaint_naming_only_original_rcpt_to_is_not_acted_on(
    verp_world: World, tmp_path: Path
) -> None:
    (reason,) = _process(verp_world, tmp_path, "proof/arf_rcpt_to_only.eml")

    _untouched(verp_world, "frank")
    assert reason.startswith("no VERP address or token of ours (it names frank@yahoo.com)")


@pytest.mark.parametrize("verp", [True, False], ids=["verp", "no-verp"])
def test_delays_are_never_failures(app: App, tmp_path: Path, verp: bool) -> None:
    world = _world(app, verp=verp, soft_bounce_limit=3)
    reports = [
        world.render("gmail_delayed_422.eml", message_id=f"<delay-{n}@mx.google.com>")
        for n in range(3)
    ]

    report = process_bounces(world.app, str(write_mbox(tmp_path / "d.mbox", reports)))

    carol = world.subscriber("carol")
    assert (carol.status, carol.soft_bounces) == (SubscriberStatus.ACTIVE, 0)
    assert world.events("carol", EventKind.SOFT_BOUNCE) == []
    assert [p.reason for p in report.problems] == [
        "a delay report for carol@gmail.com (4.2.2): the server is still trying; "
        "a delay is not a failure"
    ] * 3


def test_a_genuine_verp_bounce_suppresses_with_its_evidence(
    verp_world: World, tmp_path: Path
) -> None:
    assert _process(verp_world, tmp_path, "postfix_hard_511.eml") == []

    assert verp_world.subscriber("alice").status is SubscriberStatus.BOUNCED
    (bounced,) = verp_world.events("alice", EventKind.BOUNCED)
    assert bounced.evidence == {
        "report": "<20241120140211.9C5E41C0E2@mail.example.org>",
        "date": "Wed, 20 Nov 2024 14:02:11 +0000 (UTC)",
        "status": "5.1.1",
        "diagnostic": "smtp; 550 5.1.1 <alice@example.com>: Recipient address rejected: "
        "User unknown in virtual mailbox table",
        "matched": "our signed VERP address in Delivered-To",
        "newsletter": "weekly",
    }


def test_a_genuine_complaint_is_matched_by_the_token_in_the_returned_headers(
    verp_world: World, tmp_path: Path
) -> None:
    assert _process(verp_world, tmp_path, "proof/arf_returned_token_only.eml") == []

    assert verp_world.subscriber("frank").status is SubscriberStatus.UNSUBSCRIBED
    (complaint,) = verp_world.events("frank", EventKind.COMPLAINED)
    assert complaint.evidence is not None
    assert complaint.evidence["report"] == (
        "<1732178487.4410.yahoo-cfl-redacted@arf.mail.yahoo.com>"
    )
    assert complaint.evidence["matched"] == (
        "our signed unsubscribe token in returned List-Unsubscribe"
    )
    (left,) = verp_world.events("frank", EventKind.UNSUBSCRIBED)
    assert (left.source, left.evidence) == ("complaint", complaint.evidence)


def _verp_cli(cli: Cli) -> Cli:
    return replace(cli, env={**cli.env, "NEWSLETTER_DELIVERY_BOUNCE_DOMAIN": BOUNCE_DOMAIN})


def test_the_command_lists_what_it_left_alone_and_neutralises_it(
    verp_world: World, cli: Cli, tmp_path: Path
) -> None:
    hostile = "<\x1b[2J\x1b]0;owned\x07forged\u202eelpmaxe\u2066@mail.example.net>"
    forged = verp_world.render("proof/plain_address_dsn.eml", message_id=hostile)
    genuine = verp_world.render("exim_hard_511.eml")
    mbox = write_mbox(tmp_path / "cli.mbox", [forged, genuine])

    result = _verp_cli(cli)("bounces", "process", str(mbox))

    assert result.exit_code == 0, result.output
    assert "1 hard bounce(s)" in result.stdout
    assert "1 not acted on; 1 address(es) newly suppressed" in result.stdout
    (line,) = result.stderr.splitlines()
    # The raw 8-bit bidi controls arrive undecodable, as U+FFFD; the escapes are spelled out.
    lost = "\ufffd" * 3
    name = f"<\x1b[2J\x1b]0;owned\x07forged{lost}elpmaxe{lost}@mail.example.net>"
    assert line.startswith(f"not acted on: cli.mbox #1 {for_terminal(name)}: ")
    assert "no VERP address or token of ours (it names alice@example.com)" in line
    assert not any(ch in line for ch in "\x1b\x07\u202e\u2066")
    assert verp_world.subscriber("alice").status is SubscriberStatus.ACTIVE
    assert verp_world.subscriber("bob").status is SubscriberStatus.BOUNCED


def test_neutralise_drops_controls_and_bidi_and_keeps_letters() -> None:
    text = "caf\u00e9\u202e\u2067 \x1b[31mred\x07\r\nnext\u2028line\u200b \udcff!"
    assert neutralise(text) == "caf\u00e9 [31mred next line \ufffd!"
    assert neutralise("x" * 400, limit=10) == "xxxxxxxxx\u2026"


def test_add_keeps_a_bounced_address_and_says_how_to_lift_it(
    verp_world: World, cli: Cli, tmp_path: Path
) -> None:
    _process(verp_world, tmp_path, "postfix_hard_511.eml")

    result = cli("subscribers", "add", "alice@example.com")

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("alice@example.com stays bounced: bounced on 2024-11-20")
    assert "report <20241120140211.9C5E41C0E2@mail.example.org>" in result.stdout
    assert "matched by our signed VERP address in Delivered-To" in result.stdout
    assert result.stderr.strip() == (
        "If that was wrong, lift it with: newsletter subscribers add alice@example.com --force"
    )
    assert verp_world.subscriber("alice").status is SubscriberStatus.BOUNCED
    assert verp_world.events("alice", EventKind.RESUBSCRIBED) == []


def test_force_lifts_a_wrong_bounce_or_complaint(
    verp_world: World, cli: Cli, tmp_path: Path
) -> None:
    _process(verp_world, tmp_path, "postfix_hard_511.eml", "proof/arf_returned_token_only.eml")

    added = cli("subscribers", "add", "alice@example.com", "--force")
    readded = cli("subscribers", "add", "frank@yahoo.com", "--force")

    assert added.exit_code == readded.exit_code == 0, added.output + readded.output
    assert added.stdout.startswith("alice@example.com is active again; lifted: bounced on")
    assert verp_world.subscriber("alice").status is SubscriberStatus.ACTIVE
    (lifted,) = verp_world.events("alice", EventKind.RESUBSCRIBED)
    assert lifted.source == "cli"
    assert "report <20241120140211.9C5E41C0E2@mail.example.org>" in lifted.detail
    assert readded.stdout.startswith("frank@yahoo.com is active again; lifted: unsubscribed")
    assert verp_world.subscriber("frank").status is SubscriberStatus.ACTIVE


def test_unsubscribe_turns_a_bounce_into_an_unsubscribe_only_with_force(
    verp_world: World, cli: Cli, tmp_path: Path
) -> None:
    _process(verp_world, tmp_path, "postfix_hard_511.eml")

    kept = cli("subscribers", "unsubscribe", "alice@example.com")
    assert kept.exit_code == 0
    assert kept.stdout.startswith("alice@example.com stays bounced: ")
    assert "--force" in kept.stderr
    assert verp_world.subscriber("alice").status is SubscriberStatus.BOUNCED

    forced = cli("subscribers", "unsubscribe", "alice@example.com", "--force")
    assert forced.exit_code == 0, forced.output
    assert forced.stdout.startswith("Unsubscribed alice@example.com; lifted: bounced on")
    alice = verp_world.subscriber("alice")
    assert (alice.status, alice.soft_bounces) == (SubscriberStatus.UNSUBSCRIBED, 0)


def test_force_never_overrides_a_readers_own_unsubscribe(verp_world: World, cli: Cli) -> None:
    assert cli("subscribers", "unsubscribe", "grace@example.com").exit_code == 0

    result = cli("subscribers", "add", "grace@example.com", "--force")

    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "Error: grace@example.com unsubscribed by request (cli), not by a report "
        "(--force lifts only a bounce or a complaint; the reader can subscribe again)"
    ]
    assert verp_world.subscriber("grace").status is SubscriberStatus.UNSUBSCRIBED
