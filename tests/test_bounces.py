"""Bounce, complaint and mailto-unsubscribe processing, from real report shapes.

The files under data/bounces/ are written in the shapes Postfix, Exim, Gmail and Microsoft
produce, plus an ARF complaint, a mailto unsubscribe, a qmail-style bounce and an auto-reply.
Their `@@VERP:name@@` and `@@TOKEN:name@@` markers become real signed tokens for this test's
subscribers, because a token names a database id; `@@FORGED:name@@` is a VERP address naming
`name` under the signature of another subscriber's genuine one, as a forger would make it.
They are read from an mbox, a Maildir, and a private Dovecot IMAP server started by the test.
"""

from __future__ import annotations

import email
import imaplib
import json
import mailbox
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flufl.bounce import scan_message
from itsdangerous.encoding import base64_encode
from sqlalchemy import func, select

from newsletter.app import App
from newsletter.bounces.apply import process_bounces
from newsletter.bounces.mailboxes import ImapAddress
from newsletter.db.models import (
    Delivery,
    DeliveryStatus,
    Event,
    EventKind,
    Issue,
    IssueStatus,
    Subscriber,
    SubscriberStatus,
)
from newsletter.errors import ConfigError, InputError, UsageError
from newsletter.mail.tokens import VERP_PREFIX, Tokens
from newsletter.subscribers import rules as subscribers

from .conftest import Cli

DATA = Path(__file__).parent / "data" / "bounces"
BOUNCE_DOMAIN = "bounce.example.org"
DOVECOT = Path("/usr/sbin/dovecot")
PEOPLE = {
    "alice": "alice@example.com",
    "bob": "bob@example.net",
    "carol": "carol@gmail.com",
    "dave": "dave@outlook.com",
    "erin": "erin@contoso.example",
    "frank": "frank@yahoo.com",
    "grace": "grace@example.com",
    "heidi": "heidi@example.com",
    "ivan": "ivan@example.com",
}
SENT_AT = datetime(2024, 11, 20, 14, 0, tzinfo=UTC)


@dataclass
class World:
    app: App
    tokens: Tokens
    ids: dict[str, int]
    issue_id: int

    def render(self, name: str, *, message_id: str | None = None) -> bytes:
        text = (DATA / name).read_text(encoding="utf-8")
        text = re.sub(
            r"@@VERP:(\w+)@@",
            lambda m: self.tokens.verp_sender(self.ids[m[1]], self.issue_id, BOUNCE_DOMAIN),
            text,
        )
        text = re.sub(r"@@TOKEN:(\w+)@@", lambda m: self.tokens.unsubscribe(self.ids[m[1]]), text)
        text = re.sub(r"@@FORGED:(\w+)@@", lambda m: self.forged_verp(m[1]), text)
        if message_id is not None:
            text = re.sub(
                r"^Message-ID:.*$", f"Message-ID: {message_id}", text, count=1, flags=re.I | re.M
            )
        return text.replace("\n", "\r\n").encode("utf-8")

    def forged_verp(self, name: str) -> str:
        """Ivan's genuine VERP token with its payload rewritten to name someone else."""
        genuine = self.tokens.bounce(self.ids["ivan"], self.issue_id)
        signature = genuine.rpartition(".")[2]
        payload = base64_encode(json.dumps([self.ids[name], self.issue_id], separators=(",", ":")))
        return f"{VERP_PREFIX}{payload.decode()}.{signature}@{BOUNCE_DOMAIN}"

    def subscriber(self, name: str) -> Subscriber:
        with self.app.transaction() as session:
            found = session.get(Subscriber, self.ids[name])
            assert found is not None
            return found

    def events(self, name: str, kind: EventKind) -> list[Event]:
        with self.app.transaction() as session:
            return list(
                session.scalars(
                    select(Event).where(Event.subscriber_id == self.ids[name], Event.kind == kind)
                )
            )

    def snapshot(self) -> tuple[object, ...]:
        with self.app.transaction() as session:
            people = session.execute(
                select(Subscriber.email, Subscriber.status, Subscriber.soft_bounces).order_by(
                    Subscriber.id
                )
            ).all()
            events = session.scalar(select(func.count()).select_from(Event))
        return (tuple(people), events)


@pytest.fixture
def world(app: App) -> World:
    return make_world(app)


def make_world(app: App) -> World:
    """Nine active subscribers who were all sent the 2024-W47 issue."""
    with app.transaction() as session:
        issue = Issue(
            week="2024-W47",
            status=IssueStatus.SENT,
            subject="The Weekly Round-up: Week of 18 November 2024",
            created_at=SENT_AT,
            send_started_at=SENT_AT,
            sent_at=SENT_AT + timedelta(minutes=5),
        )
        session.add(issue)
        ids = {}
        for name, address in PEOPLE.items():
            person = subscribers.create(
                session,
                address,
                name=name.title(),
                status=SubscriberStatus.ACTIVE,
                at=SENT_AT - timedelta(days=30),
                source="test",
            )
            ids[name] = person.id
        session.flush()
        for person_id in ids.values():
            session.add(
                Delivery(
                    issue_id=issue.id,
                    subscriber_id=person_id,
                    status=DeliveryStatus.SENT,
                    attempts=1,
                    sent_at=SENT_AT,
                    updated_at=SENT_AT,
                )
            )
        issue_id = issue.id
    tokens = Tokens(app.settings.secrets.secret_keys, app.settings.list_id)
    return World(app, tokens, ids, issue_id)


ALL_FIXTURES = sorted(p.name for p in DATA.glob("*.eml"))


def write_mbox(path: Path, messages: list[bytes]) -> Path:
    box = mailbox.mbox(path)
    for raw in messages:
        box.add(raw)
    box.flush()
    box.close()
    return path


def write_maildir(path: Path, messages: list[bytes]) -> Path:
    box = mailbox.Maildir(path, create=True)
    for raw in messages:
        box.add(raw)
    return path


def check_every_fixture_processed(world: World) -> None:
    status = {name: world.subscriber(name).status for name in PEOPLE}
    assert status == {
        "alice": SubscriberStatus.BOUNCED,  # Postfix, 5.1.1
        "bob": SubscriberStatus.BOUNCED,  # Exim, 5.0.0 refined to 5.1.1 by the diagnostic
        "carol": SubscriberStatus.ACTIVE,  # Gmail, delayed 4.2.2: not a failure
        "dave": SubscriberStatus.ACTIVE,  # Microsoft 5.7.1: the sender's problem
        "erin": SubscriberStatus.BOUNCED,  # Microsoft 5.1.10, no VERP: by address
        "frank": SubscriberStatus.UNSUBSCRIBED,  # ARF complaint
        "grace": SubscriberStatus.UNSUBSCRIBED,  # mailto
        "heidi": SubscriberStatus.BOUNCED,  # qmail text bounce, VERP names her
        "ivan": SubscriberStatus.ACTIVE,  # the address flufl.bounce would have blamed
    }
    assert world.subscriber("carol").soft_bounces == 0
    assert world.events("carol", EventKind.SOFT_BOUNCE) == []
    assert world.subscriber("dave").soft_bounces == 0
    (alice,) = world.events("alice", EventKind.BOUNCED)
    assert (alice.source, alice.issue_id) == ("bounce", world.issue_id)
    assert alice.detail.startswith("5.1.1")
    assert alice.evidence is not None
    assert alice.evidence["matched"] == "our signed VERP address in Delivered-To"
    (bob,) = world.events("bob", EventKind.BOUNCED)
    assert bob.detail.startswith("5.1.1")
    (erin,) = world.events("erin", EventKind.BOUNCED)
    assert (erin.detail[:6], erin.issue_id) == ("5.1.10", world.issue_id)
    (dave,) = world.events("dave", EventKind.SOFT_BOUNCE)
    assert dave.detail.startswith("policy 5.7.1")
    (complaint,) = world.events("frank", EventKind.COMPLAINED)
    assert complaint.issue_id == world.issue_id
    assert "abuse" in complaint.detail
    (left,) = world.events("frank", EventKind.UNSUBSCRIBED)
    assert left.source == "complaint"
    (mailto,) = world.events("grace", EventKind.UNSUBSCRIBED)
    assert mailto.source == "mailto"


def test_every_report_shape_from_an_mbox(world: World, tmp_path: Path) -> None:
    path = write_mbox(tmp_path / "bounces.mbox", [world.render(n) for n in ALL_FIXTURES])

    report = process_bounces(world.app, str(path))

    assert report.messages == len(ALL_FIXTURES)
    assert report.outcomes == {
        "hard": 4,
        "policy": 1,
        "complaint": 1,
        "unsubscribe": 1,
    }
    assert report.suppressed == 6
    delay, problem = report.problems
    assert delay.message.startswith(
        f"bounces.mbox #{ALL_FIXTURES.index('gmail_delayed_422.eml') + 1}"
    )
    assert "a delay is not a failure" in delay.reason
    assert problem.message.startswith(
        f"bounces.mbox #{ALL_FIXTURES.index('vacation_reply.eml') + 1}"
    )
    assert "ooo-20241120-1500@example.com" in problem.message
    assert "not a delivery report" in problem.reason
    check_every_fixture_processed(world)


def test_processing_a_maildir_twice_changes_nothing_more(world: World, tmp_path: Path) -> None:
    path = write_maildir(tmp_path / "Maildir", [world.render(n) for n in ALL_FIXTURES])
    process_bounces(world.app, str(path))
    before = world.snapshot()

    again = process_bounces(world.app, str(path))

    assert world.snapshot() == before
    assert again.suppressed == 0
    assert again.outcomes["duplicate"] == 7  # every report that was acted on
    assert again.outcomes["soft"] == again.outcomes["hard"] == 0
    check_every_fixture_processed(world)


def test_verp_beats_a_misleading_flufl_guess(world: World, tmp_path: Path) -> None:
    raw = world.render("qmail_verp_vs_guess.eml")
    guessed = scan_message(email.message_from_bytes(raw))
    assert guessed == {b"ivan@example.com"}, "the fixture must mislead flufl.bounce"

    process_bounces(world.app, str(write_mbox(tmp_path / "q.mbox", [raw])))

    assert world.subscriber("heidi").status is SubscriberStatus.BOUNCED
    assert world.subscriber("ivan").status is SubscriberStatus.ACTIVE


def test_a_dsn_without_verp_falls_back_to_the_reported_address(
    world: World, tmp_path: Path
) -> None:
    raw = world.render("microsoft_hard_5110_no_verp.eml")
    assert b"bounces+" not in raw

    report = process_bounces(world.app, str(write_mbox(tmp_path / "m.mbox", [raw])))

    assert report.outcomes["hard"] == 1
    assert world.subscriber("erin").status is SubscriberStatus.BOUNCED


def test_soft_bounces_suppress_at_the_configured_limit(app: App, tmp_path: Path) -> None:
    limited = replace(app.settings, delivery=replace(app.settings.delivery, soft_bounce_limit=3))
    world_app = App(limited, app.engine, app.sessions, app.clock)
    world = World(world_app, *_seed(world_app))
    statuses = []
    for n in range(4):
        raw = world.render("gmail_delayed_422.eml", message_id=f"<failed-{n}@mx.google.com>")
        # The report that ends the retries: transient status, but the server has given up.
        raw = raw.replace(b"Action: delayed", b"Action: failed")
        process_bounces(world.app, str(write_mbox(tmp_path / f"d{n}.mbox", [raw])))
        carol = world.subscriber("carol")
        statuses.append((carol.status, carol.soft_bounces))

    assert statuses == [
        (SubscriberStatus.ACTIVE, 1),
        (SubscriberStatus.ACTIVE, 2),
        (SubscriberStatus.BOUNCED, 3),
        (SubscriberStatus.BOUNCED, 4),
    ]
    (bounced,) = world.events("carol", EventKind.BOUNCED)
    assert bounced.detail.startswith("3 soft bounces")


def _seed(app: App) -> tuple[Tokens, dict[str, int], int]:
    with app.transaction() as session:
        issue = Issue(week="2024-W47", status=IssueStatus.SENT, created_at=SENT_AT)
        session.add(issue)
        carol = subscribers.create(
            session,
            PEOPLE["carol"],
            name="Carol",
            status=SubscriberStatus.ACTIVE,
            at=SENT_AT,
            source="test",
        )
        session.flush()
        ids, issue_id = {"carol": carol.id}, issue.id
    return Tokens(app.settings.secrets.secret_keys, app.settings.list_id), ids, issue_id


def test_what_cannot_be_understood_is_named_and_the_rest_processed(
    world: World, tmp_path: Path
) -> None:
    forged = world.render("postfix_hard_511.eml")
    for signed in (b"bounces+", b"/u/", b"subject=unsubscribe-"):
        forged = forged.replace(signed, signed + b"x")
    forged = forged.replace(b"alice@example.com", b"nobody@example.com")
    tampered = world.render("mailto_unsubscribe.eml").replace(b"unsubscribe-", b"unsubscribe-x")
    messages = [
        b"From: someone@example.com\r\nSubject: hello\r\n\r\njust a note\r\n",
        b"\xff\xfe garbage that is not a message",
        forged,
        tampered,
        world.render("exim_hard_511.eml"),
    ]

    report = process_bounces(world.app, str(write_mbox(tmp_path / "mixed.mbox", messages)))

    assert report.messages == 5
    assert [p.message.split()[1] for p in report.problems] == ["#1", "#2", "#3", "#4"]
    assert "the bounce detectors failed" in report.problems[1].reason
    assert "no subscriber matches nobody@example.com" in report.problems[2].reason
    assert "the signed token in Subject is not valid" in report.problems[3].reason
    assert world.subscriber("grace").status is SubscriberStatus.ACTIVE
    assert world.subscriber("bob").status is SubscriberStatus.BOUNCED
    assert world.subscriber("alice").status is SubscriberStatus.ACTIVE


def test_sources_that_cannot_be_read_are_clear_errors(world: World, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("Subject: not an mbox\n\nhello\n")
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputError, match="no such file"):
        process_bounces(world.app, str(tmp_path / "missing.mbox"))
    with pytest.raises(InputError, match="not an mbox"):
        process_bounces(world.app, str(tmp_path / "notes.txt"))
    with pytest.raises(InputError, match="not a Maildir"):
        process_bounces(world.app, str(tmp_path / "plain"))
    with pytest.raises(ConfigError, match="NEWSLETTER_IMAP_PASSWORD"):
        process_bounces(world.app, "imap://bounces@127.0.0.1:1/INBOX")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("imap://bounces@mail.example.org/INBOX", "unencrypted"),
        ("imaps://bounces:secret@mail.example.org/INBOX", "must not contain a password"),
        ("imaps://mail.example.org/INBOX", "user@host"),
        ("pop3://bounces@mail.example.org/", "unsupported"),
    ],
)
def test_imap_addresses_that_are_refused(url: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        ImapAddress.parse(url)


def test_imap_address_defaults() -> None:
    address = ImapAddress.parse("imaps://bounce%40example.org@mail.example.org/Bounces%20In")
    assert address == ImapAddress(True, "bounce@example.org", "mail.example.org", 993, "Bounces In")
    assert ImapAddress.parse("imap://u@[::1]:1143").port == 1143


@dataclass(frozen=True)
class ImapServer:
    port: int
    user: str
    password: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _dovecot_config(tmp_path: Path, base_dir: Path, port: int) -> tuple[Path, str]:
    """A private Dovecot: loopback only, no TLS, users from a file, mail under tmp_path.

    As root, Dovecot refuses to give mail access to uid 0, so the mailbox belongs to the
    `dovecot` user and is reached through a chroot (set up while still root), which keeps it
    inside tmp_path even though tmp_path itself is private to root.
    """
    mail = tmp_path / "imap-mail"
    (mail / "bounces").mkdir(parents=True)
    if os.geteuid() == 0:
        owner = pwd.getpwnam("dovecot")
        for path in (mail, mail / "bounces"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        internal, login, home = "dovecot", "dovenull", f"{mail}/./%u"
        # The auth processes read the passwd-file, which is under root's private tmp_path.
        chroot = (
            f"valid_chroot_dirs = {mail}\n"
            "service auth {\n  user = root\n}\nservice auth-worker {\n  user = root\n}\n"
        )
        uid, gid = owner.pw_uid, owner.pw_gid
    else:
        me = pwd.getpwuid(os.geteuid())
        internal = login = me.pw_name
        home, chroot, uid, gid = f"{mail}/%u", "", me.pw_uid, me.pw_gid
    password = "imap-test-password"
    passwd = tmp_path / "imap-users"
    passwd.write_text(f"bounces:{{PLAIN}}{password}:{uid}:{gid}::{home}::\n")
    config = tmp_path / "dovecot.conf"
    config.write_text(
        f"""protocols = imap
listen = 127.0.0.1
base_dir = {base_dir}
state_dir = {tmp_path}/imap-state
log_path = {tmp_path}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
default_internal_user = {internal}
default_internal_group = {internal}
default_login_user = {login}
first_valid_uid = 1
{chroot}mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {passwd}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
}}
"""
    )
    return config, password


def _greets(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as probe:
            return probe.recv(100).startswith(b"* OK")
    except OSError:
        return False


@pytest.fixture
def imap_server(tmp_path: Path) -> Iterator[ImapServer]:
    if not DOVECOT.exists():
        pytest.skip("Dovecot is not installed (/usr/sbin/dovecot; Debian package dovecot-imapd)")
    # Unix socket paths are limited to about 100 bytes, too short for a pytest tmp_path.
    base_dir = Path(tempfile.mkdtemp(prefix="nl-imap-"))
    port = _free_port()
    config, password = _dovecot_config(tmp_path, base_dir, port)
    process = subprocess.Popen(
        [str(DOVECOT), "-F", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if _greets(port) or process.poll() is not None:
                break
            time.sleep(0.05)
        else:
            pytest.fail("Dovecot did not start listening within 5 seconds")
        if process.poll() is not None:
            log = (tmp_path / "dovecot.log").read_text(errors="replace")
            pytest.fail(f"Dovecot exited at start: {log[-2000:]}")
        yield ImapServer(port, "bounces", password)
    finally:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        shutil.rmtree(base_dir, ignore_errors=True)


def test_imap_mailbox_from_a_dovecot_server(
    world: World, imap_server: ImapServer, tmp_path: Path
) -> None:
    client = imaplib.IMAP4("127.0.0.1", imap_server.port, timeout=10)
    client.login(imap_server.user, imap_server.password)
    for name in ALL_FIXTURES:
        status, _ = client.append("INBOX", None, None, world.render(name))
        assert status == "OK"
    client.logout()
    secrets = replace(world.app.settings.secrets, imap_password=imap_server.password)
    world.app = App(
        replace(world.app.settings, secrets=secrets),
        world.app.engine,
        world.app.sessions,
        world.app.clock,
    )
    url = f"imap://{imap_server.user}@127.0.0.1:{imap_server.port}/INBOX"

    first = process_bounces(world.app, url)
    before = world.snapshot()
    second = process_bounces(world.app, url)

    assert first.messages == second.messages == len(ALL_FIXTURES)
    assert first.suppressed == 6
    assert [p.message.split()[:2] for p in first.problems] == [["INBOX", "UID"]] * 2
    check_every_fixture_processed(world)
    assert world.snapshot() == before
    assert second.suppressed == 0
    assert second.outcomes["duplicate"] == 7

    wrong = replace(secrets, imap_password="not-the-password")
    refused = App(replace(world.app.settings, secrets=wrong), world.app.engine, world.app.sessions)
    with pytest.raises(Exception, match="refused the login"):
        process_bounces(refused, url)


def test_bounces_process_command(world: World, cli: Cli, tmp_path: Path) -> None:
    path = write_mbox(tmp_path / "cli.mbox", [world.render(n) for n in ALL_FIXTURES])
    result = cli("bounces", "process", str(path))

    assert result.exit_code == 0, result.output
    assert "Read 9 message(s): 4 hard bounce(s), 0 soft, 1 policy rejection(s)" in result.stdout
    assert "2 not acted on; 6 address(es) newly suppressed" in result.stdout
    assert "not acted on: cli.mbox #3 " in result.stderr
    assert "not acted on: cli.mbox #9 " in result.stderr

    missing = cli("bounces", "process", str(tmp_path / "nothing-here"))
    assert missing.exit_code == 1
    assert missing.stderr.strip().splitlines() == [
        f"Error: {tmp_path / 'nothing-here'}: no such file, Maildir folder or IMAP URL"
    ]
