"""A send through a mail server that fails in every way a network can, run as the real
`newsletter send` process: every deliverable message arrives exactly once, every permanent
failure is recorded with the server's reply, and the exit status and report say so.

Also checks the fault server itself, so that a passing send test means what it says.
"""

from __future__ import annotations

import os
import smtplib
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from newsletter.db.models import Delivery, DeliveryStatus, Issue, Subscriber, SubscriberStatus

from .conftest import REPO, SECRET_KEY, Cli
from .faultsmtp import FaultPolicy, FaultServer

WEEK = "2024-W47"
FEED = REPO / "newsletter" / "data" / "feed.xml"
SEND_TIMEOUT = 240


@dataclass(frozen=True)
class Outcome:
    email: str
    status: DeliveryStatus
    reply: str
    subscriber_status: SubscriberStatus


@dataclass
class SendSetup:
    """An issue built for `count` subscribers, and the real command line to send it."""

    database_url: str
    workdir: Path
    count: int

    @property
    def emails(self) -> list[str]:
        return [f"reader{n}@example.com" for n in range(self.count)]

    def env(self, transport: str, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "NEWSLETTER_CONFIG": "",
            "NEWSLETTER_DATABASE_URL": self.database_url,
            "NEWSLETTER_DELIVERY_TRANSPORT": transport,
            "NEWSLETTER_NEWSLETTER_BASE_URL": "https://news.example.org",
            "NEWSLETTER_SECRET_KEY": SECRET_KEY,
            "NEWSLETTER_DELIVERY_RETRY_BASE_SECONDS": "0.05",
            "NEWSLETTER_DELIVERY_TIMEOUT": "10",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }

    def command(self, *options: str) -> list[str]:
        return [sys.executable, "-m", "newsletter", "send", "--week", WEEK, "--yes", *options]

    def start(self, transport: str, *options: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*options),
            cwd=self.workdir,
            env=self.env(transport, **env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def send(
        self, transport: str, *options: str, timeout: float = SEND_TIMEOUT, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*options),
            cwd=self.workdir,
            env=self.env(transport, **env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def outcomes(self) -> dict[str, Outcome]:
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                rows = connection.execute(
                    select(
                        Subscriber.email,
                        Delivery.status,
                        Delivery.last_reply,
                        Subscriber.status,
                    )
                    .join(Delivery, Delivery.subscriber_id == Subscriber.id)
                    .join(Issue, Issue.id == Delivery.issue_id)
                    .where(Issue.week == WEEK)
                ).all()
        finally:
            engine.dispose()
        return {
            email: Outcome(email, DeliveryStatus(status), reply, SubscriberStatus(sub))
            for email, status, reply, sub in rows
        }


def prepare(cli: Cli, database_url: str, tmp_path: Path, count: int) -> SendSetup:
    """Database, subscribers, articles and the built issue, made in-process (fast); the
    send itself runs as a separate process."""
    listing = tmp_path / "subscribers.csv"
    with listing.open("w", encoding="utf-8") as handle:
        handle.write("email,name\n")
        for n in range(count):
            handle.write(f"reader{n}@example.com,Reader {n}\n")
    for args in (
        ("init",),
        ("subscribers", "import", str(listing)),
        ("articles", "fetch", str(FEED)),
        ("issue", "build", "--week", WEEK),
    ):
        result = cli(*args)
        assert result.exit_code == 0, (args, result.output)
    return SendSetup(database_url, tmp_path, count)


@pytest.fixture
def setup_2000(cli: Cli, database_url: str, tmp_path: Path) -> SendSetup:
    return prepare(cli, database_url, tmp_path, 2000)


# ------------------------------------------------------------ the fault server itself


def _message(n: int) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "newsletter@example.org"
    message["To"] = f"reader{n}@example.com"
    message["Subject"] = "probe"
    message["Message-ID"] = f"<probe.{n}@example.org>"
    message.set_content("line\n" * 50)
    return message


def _probe(policy: FaultPolicy, count: int) -> tuple[Counter[str], FaultServer]:
    """Send `count` messages with plain smtplib and classify what the client saw."""
    seen: Counter[str] = Counter()
    with FaultServer(policy) as server:
        client: smtplib.SMTP | None = None
        for n in range(count):
            if client is None:
                client = smtplib.SMTP("127.0.0.1", server.port, timeout=5)
            try:
                client.send_message(_message(n))
                seen["accepted"] += 1
            except smtplib.SMTPRecipientsRefused as exc:
                seen[f"rcpt {next(iter(exc.recipients.values()))[0]}"] += 1
            except smtplib.SMTPResponseException as exc:
                seen[f"data {exc.smtp_code}"] += 1
            except (smtplib.SMTPServerDisconnected, OSError):
                seen["disconnected"] += 1
                client = None
                continue
            try:
                client.rset()
            except (smtplib.SMTPServerDisconnected, OSError):
                client = None
        if client is not None:
            client.close()
    return seen, server


def test_fault_server_injects_each_fault_and_records_exactly_what_it_accepted() -> None:
    policy = FaultPolicy(
        seed=7, transient=0.2, bounce=0.05, policy=0.03, drop=0.05, lost_reply=0.03
    )
    seen, server = _probe(policy, 600)
    assert seen["rcpt 550"] == len(server.log.bounced) > 0
    for code in ("451", "452", "454", "554"):
        assert seen[f"rcpt {code}"] + seen[f"data {code}"] > 0, code
    assert server.log.replies["421"] > 0
    assert server.log.dropped > 0
    assert server.log.lost_replies
    received = server.received()
    assert len(received) == seen["accepted"] + len(server.log.lost_replies)
    assert all(r.message_id.startswith("<probe.") for r in received)
    assert server.log.bounced.isdisjoint(r.recipient for r in received)


def test_fault_server_is_reproducible_and_bounces_are_per_recipient() -> None:
    policy = FaultPolicy(seed=11, transient=0.1, bounce=0.1, drop=0.05)
    first, server_a = _probe(policy, 200)
    second, server_b = _probe(policy, 200)
    assert first == second
    assert server_a.log.bounced == server_b.log.bounced
    assert all(policy.bounces(address) for address in server_a.log.bounced)


def test_fault_server_delays_every_reply() -> None:
    with FaultServer(FaultPolicy(reply_delay=0.05)) as server:
        started = time.perf_counter()
        with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as client:
            client.noop()
        # greeting, EHLO/HELO is not sent by noop, NOOP, QUIT: three delayed replies
        assert time.perf_counter() - started >= 0.15


# ------------------------------------------------------------ sends through the faults

TEN_PERCENT = FaultPolicy(
    seed=2024,
    transient=0.06,
    bounce=0.02,
    drop=0.01,
    lost_reply=0.005,
    slow=0.005,
    slow_seconds=0.3,
)


def _check_exactly_once(
    setup: SendSetup, server: FaultServer, policy: FaultPolicy
) -> dict[str, Outcome]:
    """Per recipient: bounced addresses failed with their reply and got nothing; everyone
    else got one copy, or is reported uncertain (at most one copy) or gave up (none)."""
    outcomes = setup.outcomes()
    copies = server.per_recipient()
    assert sorted(outcomes) == sorted(setup.emails)
    for email, outcome in outcomes.items():
        got = copies[email]
        if policy.bounces(email):
            assert outcome.status is DeliveryStatus.FAILED, outcome
            assert "5.1.1" in outcome.reply
            assert outcome.subscriber_status is SubscriberStatus.BOUNCED
            assert got == 0
        elif outcome.status is DeliveryStatus.SENT:
            assert got == 1, f"{email} received {got} copies"
        elif outcome.status is DeliveryStatus.UNCERTAIN:
            assert got <= 1, f"{email} received {got} copies"
            assert outcome.reply
        else:
            assert outcome.status is DeliveryStatus.FAILED, outcome
            assert "gave up" in outcome.reply
            assert got == 0
    # A message can be in doubt only where the server left it in doubt.
    lost = set(server.log.lost_replies)
    uncertain = {e for e, o in outcomes.items() if o.status is DeliveryStatus.UNCERTAIN}
    assert lost <= uncertain, "a message accepted without a reply was recorded as sent"
    assert len(uncertain) <= len(lost) + server.log.dropped
    return outcomes


@pytest.mark.slow
def test_2000_recipients_through_ten_percent_faults_arrive_exactly_once(
    setup_2000: SendSetup,
) -> None:
    with FaultServer(TEN_PERCENT, keep_content=False) as server:
        result = setup_2000.send(server.url, "--connections", "4", "--rate", "0")
        outcomes = _check_exactly_once(setup_2000, server, TEN_PERCENT)
        by_status = Counter(o.status for o in outcomes.values())
        faults = sum(server.log.replies[c] for c in ("421", "451", "452", "454", "550"))
        assert faults + server.log.dropped > 150, "the fault server did not inject ~10 %"
        assert by_status[DeliveryStatus.FAILED] > 0
        assert result.returncode == 1, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        output = result.stdout + result.stderr
        assert str(by_status[DeliveryStatus.SENT]) in output
        assert str(by_status[DeliveryStatus.FAILED]) in output
        assert "5.1.1" in output
        if by_status[DeliveryStatus.UNCERTAIN]:
            assert "uncertain" in output.lower()

        # Running again sends nobody a second copy.
        received = len(server.received())
        again = setup_2000.send(server.url, "--connections", "4", "--rate", "0")
        assert len(server.received()) == received, again.stdout + again.stderr
        assert "Traceback" not in again.stderr

        # Only the explicit request sends the uncertain ones again: duplicates, if any, are
        # confined to them.
        uncertain = {e for e, o in outcomes.items() if o.status is DeliveryStatus.UNCERTAIN}
        setup_2000.send(server.url, "--connections", "4", "--rate", "0", "--resend-uncertain")
        copies = server.per_recipient()
        assert {e for e, n in copies.items() if n > 1} <= uncertain


def test_a_policy_refusal_stops_the_send_and_loses_nothing(
    cli: Cli, database_url: str, tmp_path: Path
) -> None:
    setup = prepare(cli, database_url, tmp_path, 200)
    refusing = FaultPolicy(seed=5, policy=0.05)
    with FaultServer(refusing, keep_content=False) as server:
        result = setup.send(server.url, "--connections", "2", "--rate", "0")
        assert result.returncode == 1
        assert "5.7.1" in result.stderr
        assert "Traceback" not in result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
        assert len(errors) == 1, result.stderr
        outcomes = setup.outcomes()
        assert not any(o.status is DeliveryStatus.FAILED for o in outcomes.values())
        assert all(o.subscriber_status is SubscriberStatus.ACTIVE for o in outcomes.values())
        stopped_after = len(server.received())
        assert stopped_after < 200
    with FaultServer(FaultPolicy(), keep_content=False) as fixed:
        result = setup.send(fixed.url, "--connections", "2", "--rate", "0")
        assert result.returncode == 0, result.stdout + result.stderr
        resumed = fixed.per_recipient()
    assert stopped_after + len(resumed) == 200
    assert all(n == 1 for n in resumed.values())
    assert {o.status for o in setup.outcomes().values()} == {DeliveryStatus.SENT}
