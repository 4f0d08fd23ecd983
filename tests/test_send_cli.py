"""`newsletter send` through the real command line, against a real SMTP server."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .conftest import Cli
from .smtp_server import SmtpServer

REPO = Path(__file__).resolve().parent.parent
FEED = str(REPO / "examples" / "feed.xml")
WEEK = "2024-W47"


@pytest.fixture
def server() -> SmtpServer:
    with SmtpServer(replies={"bounce@example.org": ["550 5.1.1 no such user"]}) as running:
        yield running  # type: ignore[misc]


@pytest.fixture
def ready(cli: Cli, server: SmtpServer) -> Cli:
    cli.env["NEWSLETTER_DELIVERY_TRANSPORT"] = server.url()
    for email in ("ann@example.org", "bob@example.org", "cyd@example.org"):
        assert cli("subscribers", "add", email).exit_code == 0
    assert cli("articles", "fetch", FEED).exit_code == 0
    return cli


def test_send_builds_the_issue_sends_and_reports(ready: Cli, server: SmtpServer) -> None:
    result = ready("send", "--week", WEEK, "--yes", "--rate", "0")
    assert result.exit_code == 0, result.output
    assert "Sent 3 message(s)" in result.output
    assert sorted(r.recipient for r in server.received) == [
        "ann@example.org",
        "bob@example.org",
        "cyd@example.org",
    ]
    again = ready("send", "--week", WEEK, "--yes")
    assert again.exit_code == 1
    assert "already sent" in again.output
    cron = ready("send", "--week", WEEK, "--yes", "--if-new")
    assert cron.exit_code == 0
    assert "Nothing to do" in cron.output
    assert len(server.received) == 3


def test_permanent_failures_exit_1_with_reasons(ready: Cli, server: SmtpServer) -> None:
    assert ready("subscribers", "add", "bounce@example.org").exit_code == 0
    result = ready("send", "--week", WEEK, "--yes", "--rate", "0", "--connections", "2")
    assert result.exit_code == 1
    assert "550 5.1.1 no such user" in result.output
    listing = ready("subscribers", "list", "--status", "bounced")
    assert "bounce@example.org" in listing.output


def test_without_a_terminal_or_yes_it_refuses(ready: Cli, server: SmtpServer) -> None:
    result = ready("send", "--week", WEEK)
    assert result.exit_code == 2
    assert "--yes" in result.output
    assert server.received == []


def test_test_addresses_only(ready: Cli, server: SmtpServer) -> None:
    result = ready("send", "--week", WEEK, "--test", "editor@example.org")
    assert result.exit_code == 0, result.output
    assert [r.recipient for r in server.received] == ["editor@example.org"]
    real = ready("send", "--week", WEEK, "--yes", "--rate", "0")
    assert real.exit_code == 0
    assert len(server.received) == 4


def test_dry_run_sends_nothing(ready: Cli, server: SmtpServer) -> None:
    result = ready("send", "--week", WEEK, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Built 3 message(s)" in result.output
    assert server.received == []


def test_empty_week_is_refused_but_fine_for_cron(ready: Cli, server: SmtpServer) -> None:
    result = ready("send", "--week", "2020-W01", "--yes")
    assert result.exit_code == 1
    assert "no articles" in result.output
    assert ready("send", "--week", "2020-W01", "--yes", "--if-new").exit_code == 0
    assert server.received == []


def test_bad_option_is_a_usage_error(ready: Cli) -> None:
    assert ready("send", "--connections", "0").exit_code == 2
    assert ready("send", "--week", WEEK, "--test", "a@example.org", "--dry-run").exit_code == 2


def test_an_unknown_transport_leaves_the_issue_as_it_was(ready: Cli, server: SmtpServer) -> None:
    ftp = {"NEWSLETTER_DELIVERY_TRANSPORT": "ftp://127.0.0.1/outbox"}
    assert ready("issue", "build", "--week", WEEK).exit_code == 0
    failed = ready("send", "--week", WEEK, "--yes", "--rate", "0", env=ftp)
    assert failed.exit_code == 1
    assert failed.output.count("\n") == 1, failed.output
    assert "delivery.transport 'ftp://127.0.0.1/outbox' is not supported" in failed.output
    assert "[draft]" in ready("issue", "show", "--week", WEEK).output
    # Still a draft: a reader who joins now is in the audience the real send takes.
    assert ready("subscribers", "add", "dee@example.org").exit_code == 0
    result = ready("send", "--week", WEEK, "--yes", "--rate", "0")
    assert result.exit_code == 0, result.output
    assert sorted(r.recipient for r in server.received) == [
        "ann@example.org",
        "bob@example.org",
        "cyd@example.org",
        "dee@example.org",
    ]


def test_idn_domains_go_out_in_ascii_through_a_relay_without_smtputf8(cli: Cli) -> None:
    with SmtpServer(smtputf8=False) as relay:
        cli.env["NEWSLETTER_DELIVERY_TRANSPORT"] = relay.url()
        assert cli("subscribers", "add", "ann@xn--bcher-kva.example").exit_code == 0
        assert cli("subscribers", "add", "jürgen@bücher.example").exit_code == 0
        assert "ann@bücher.example" in cli("subscribers", "list").output
        assert cli("articles", "fetch", FEED).exit_code == 0
        result = cli("send", "--week", WEEK, "--yes", "--rate", "0")
        [received] = relay.received
    assert received.recipient == "ann@xn--bcher-kva.example"
    assert received.message()["To"].addresses[0].addr_spec == "ann@xn--bcher-kva.example"
    assert received.content.isascii()
    # A non-ASCII local part has no ASCII form: refused as before, and reported.
    assert result.exit_code == 1
    assert "needs SMTPUTF8" in result.output


def test_issue_and_send_commands_act_on_the_chosen_newsletter(
    ready: Cli, server: SmtpServer, tmp_path: Path
) -> None:
    (tmp_path / "newsletter.toml").write_text(
        '[newsletters.brief]\nname = "The Europe Brief"\nsections = ["Europe"]\n',
        encoding="utf-8",
    )
    ready.env["NEWSLETTER_CONFIG"] = "newsletter.toml"
    built = ready("issue", "build", "--week", WEEK, "--newsletter", "brief")
    assert built.exit_code == 0, built.output
    shown = ready("issue", "show", "--week", WEEK, "--newsletter", "brief").output
    rows = [line for line in shown.splitlines() if re.match(r"\d+\. ", line)]
    assert len(rows) == 3, shown
    assert all(" Europe " in row for row in rows), shown
    assert "there is no issue for 2024-W47" in ready("issue", "show", "--week", WEEK).output
    preview = ready("issue", "preview", "--week", WEEK, "--text", "--newsletter", "brief")
    assert "The Europe Brief" in preview.output

    assert ready("subscribers", "add", "ann@example.org", "--newsletter", "brief").exit_code == 0
    sent = ready("send", "--week", WEEK, "--yes", "--rate", "0", "--newsletter", "brief")
    assert sent.exit_code == 0, sent.output
    (copy,) = server.received
    assert copy.recipient == "ann@example.org"
    assert copy.message()["List-Id"].endswith("<brief.example.org>")
    stats = json.loads(ready("stats", "--newsletter", "brief", "--json").output)
    assert [(i["subject"], i["recipients"], i["sent"]) for i in stats["issues"]] == [
        ("The Europe Brief: Week of 18 November 2024", 1, 1)
    ]
    assert "Sent 3 message(s)" in ready("send", "--week", WEEK, "--yes", "--rate", "0").output
