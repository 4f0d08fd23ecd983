"""The web endpoints through Flask's test client, against a real migrated database.

Mail goes through the outbox transport, so every confirmation the app sends is a real .eml
file on disk that the tests read back and follow.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from newsletter.app import App
from newsletter.clock import FixedClock
from newsletter.config import Secrets, Settings, WebSettings
from newsletter.db.models import (
    Delivery,
    Event,
    EventKind,
    Issue,
    IssueStatus,
    Subscriber,
    SubscriberStatus,
    Throttle,
    UsedChallenge,
)
from newsletter.delivery.send import send_test
from newsletter.errors import ConfigError, InputError
from newsletter.feeds.store import fetch_sources
from newsletter.issue.build import build_issue
from newsletter.issue.periods import Week
from newsletter.mail.confirmation import build as build_confirmation
from newsletter.mail.tokens import Tokens
from newsletter.subscribers import rules as subscribers
from newsletter.web.endpoints import create_app, template_environment
from tests.conftest import SECRET_KEY, Cli
from tests.faultsmtp import FaultPolicy, FaultServer
from tests.smtp_server import SmtpServer

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@pytest.fixture
def client(app: App) -> FlaskClient:
    return create_app(app).test_client()


@pytest.fixture
def tokens(settings: Settings) -> Tokens:
    return Tokens(settings.secrets.secret_keys, settings.list_id)


@pytest.fixture
def outbox(settings: Settings) -> Path:
    return Path(settings.delivery.transport.removeprefix("outbox:"))


def add(
    app: App,
    address: str,
    status: SubscriberStatus = SubscriberStatus.ACTIVE,
    name: str = "",
) -> int:
    with app.transaction() as session:
        subscriber = subscribers.create(
            session, address, name=name, status=status, at=app.clock.now(), source="test"
        )
        return subscriber.id


def standing(app: App, address: str) -> Subscriber | None:
    with app.transaction() as session:
        return subscribers.find(session, address)


def status_of(app: App, address: str) -> SubscriberStatus:
    subscriber = standing(app, address)
    assert subscriber is not None, address
    return subscriber.status


def events(app: App, subscriber_id: int) -> list[tuple[EventKind, str]]:
    with app.transaction() as session:
        rows = session.execute(
            select(Event.kind, Event.source)
            .where(Event.subscriber_id == subscriber_id)
            .order_by(Event.id)
        ).all()
    return [(kind, source) for kind, source in rows]


def snapshot(app: App) -> tuple[object, ...]:
    """Everything a request could change: subscribers, events, throttle counters, spent
    challenges."""
    with app.transaction() as session:
        people = session.execute(
            select(
                Subscriber.id,
                Subscriber.status,
                Subscriber.updated_at,
                Subscriber.confirmed_at,
                Subscriber.unsubscribed_at,
                Subscriber.last_confirmation_sent_at,
            ).order_by(Subscriber.id)
        ).all()
        return (
            tuple(people),
            session.scalar(select(func.count()).select_from(Event)),
            session.scalar(select(func.count()).select_from(Throttle)),
            session.scalar(select(func.count()).select_from(UsedChallenge)),
        )


def mails(outbox: Path) -> list[EmailMessage]:
    if not outbox.exists():
        return []
    found = []
    for path in sorted(outbox.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        found.append(message)
    return found


def confirm_link(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    match = re.search(r"https?://\S+/confirm/\S+", body.get_content())
    assert match, "no confirmation link in the text part"
    return match.group(0)


def served_form(client: FlaskClient, age: timedelta = timedelta(seconds=30)) -> str:
    """The challenge of a subscribe form the site served `age` ago."""
    app: App = client.application.extensions["newsletter"]
    tokens = Tokens(app.settings.secrets.secret_keys, app.settings.list_id)
    return tokens.form_challenge(app.clock.now() - age)


def subscribe(
    client: FlaskClient, address: str, ip: str = "198.51.100.1", **extra: str
) -> TestResponse:
    """Post the form as a reader would: one the site served, filled in over half a minute."""
    return client.post(
        "/subscribe",
        data={"email": address, "name": "", "form": served_form(client), **extra},
        environ_base={"REMOTE_ADDR": ip},
    )


def challenge_in(page: str) -> str:
    match = re.search(r'<input type="hidden" name="form" value="([^"]+)">', page)
    assert match, "no challenge in the form"
    return match.group(1)


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


# Unsubscribe --------------------------------------------------------------------------------


def test_get_unsubscribe_page_changes_nothing_and_masks_the_address(
    app: App, client: FlaskClient, tokens: Tokens
) -> None:
    subscriber_id = add(app, "jane.doe@example.org")
    before = snapshot(app)

    for _ in range(3):
        response = client.get(f"/u/{tokens.unsubscribe(subscriber_id)}")
        assert response.status_code == 200

    page = response.get_data(as_text=True)
    assert "The Weekly Round-up" in page
    assert "j***@example.org" in page
    assert "jane.doe" not in page
    assert re.search(r'<form method="post"[^>]*>\s*<input type="hidden" name="action"', page)
    assert ">Unsubscribe</button>" in page
    assert snapshot(app) == before


@pytest.mark.parametrize("encoding", ["application/x-www-form-urlencoded", "multipart/form-data"])
def test_one_click_post_unsubscribes_idempotently_without_redirect_or_cookie(
    app: App, client: FlaskClient, tokens: Tokens, encoding: str
) -> None:
    subscriber_id = add(app, "reader@example.org")
    url = f"/u/{tokens.unsubscribe(subscriber_id)}"

    responses = [client.post(url, data=ONE_CLICK, content_type=encoding) for _ in range(2)]

    for response in responses:
        assert response.status_code == 200
        assert "Location" not in response.headers
        assert "Set-Cookie" not in response.headers
        assert len(response.get_data()) < 100
    subscriber = standing(app, "reader@example.org")
    assert subscriber is not None
    assert subscriber.status is SubscriberStatus.UNSUBSCRIBED
    assert subscriber.unsubscribed_at == app.clock.now()
    assert events(app, subscriber_id)[1:] == [(EventKind.UNSUBSCRIBED, "one-click")]


def test_one_click_works_without_any_other_request_context(
    app: App, client: FlaskClient, tokens: Tokens
) -> None:
    """No Origin, no Referer, no cookie, no CSRF token: what a mail provider sends."""
    subscriber_id = add(app, "reader@example.org")
    response = client.post(
        f"/u/{tokens.unsubscribe(subscriber_id)}",
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
        headers={"Origin": "https://mail.example.com"},
    )
    assert response.status_code == 200
    assert status_of(app, "reader@example.org") is SubscriberStatus.UNSUBSCRIBED


def test_landing_page_buttons_unsubscribe_then_resubscribe(
    app: App, client: FlaskClient, tokens: Tokens, clock: FixedClock
) -> None:
    subscriber_id = add(app, "jane@example.org")
    url = f"/u/{tokens.unsubscribe(subscriber_id)}"

    response = client.post(url, data={"action": "unsubscribe"})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "You are unsubscribed" in page
    assert ">Resubscribe</button>" in page
    assert 'name="action" value="resubscribe"' in page
    assert status_of(app, "jane@example.org") is SubscriberStatus.UNSUBSCRIBED

    clock.advance(60)
    response = client.post(url, data={"action": "resubscribe"})
    assert response.status_code == 200
    assert "Welcome back" in response.get_data(as_text=True)
    assert status_of(app, "jane@example.org") is SubscriberStatus.ACTIVE
    assert events(app, subscriber_id)[1:] == [
        (EventKind.UNSUBSCRIBED, "page"),
        (EventKind.RESUBSCRIBED, "page"),
    ]


def test_an_unsubscribed_reader_opening_the_link_again_can_resubscribe(
    app: App, client: FlaskClient, tokens: Tokens
) -> None:
    left = add(app, "left@example.org", SubscriberStatus.UNSUBSCRIBED)
    bounced = add(app, "gone@example.org", SubscriberStatus.BOUNCED)
    page = client.get(f"/u/{tokens.unsubscribe(left)}").get_data(as_text=True)
    assert "is no longer on the list" in page
    assert 'name="action" value="resubscribe"' in page
    assert (
        status_of(app, "left@example.org") is SubscriberStatus.UNSUBSCRIBED
    )  # GET changes nothing
    page = client.get(f"/u/{tokens.unsubscribe(bounced)}").get_data(as_text=True)
    assert "is no longer on the list" in page
    assert "resubscribe" not in page


def test_a_bounced_address_is_not_resubscribed_from_the_page(
    app: App, client: FlaskClient, tokens: Tokens
) -> None:
    subscriber_id = add(app, "gone@example.org", SubscriberStatus.BOUNCED)
    response = client.post(
        f"/u/{tokens.unsubscribe(subscriber_id)}", data={"action": "resubscribe"}
    )
    assert response.status_code == 200
    assert "cannot resubscribe" in response.get_data(as_text=True)
    assert status_of(app, "gone@example.org") is SubscriberStatus.BOUNCED


def test_post_without_a_known_action_changes_nothing(
    app: App, client: FlaskClient, tokens: Tokens
) -> None:
    subscriber_id = add(app, "reader@example.org")
    before = snapshot(app)
    response = client.post(f"/u/{tokens.unsubscribe(subscriber_id)}", data={"action": "delete"})
    assert response.status_code == 400
    assert snapshot(app) == before


def bad_tokens(tokens: Tokens, subscriber_id: int, app: App) -> Iterator[str]:
    good = tokens.unsubscribe(subscriber_id)
    yield good[:-1] + ("A" if good[-1] != "A" else "B")  # tampered signature
    yield good[: len(good) // 2]  # truncated
    yield "1" + good  # altered payload
    yield tokens.unsubscribe(subscriber_id + 1000)  # well signed, nobody
    foreign = Tokens(("some-other-key-" + "x" * 32,), tokens.list_id)
    yield foreign.unsubscribe(subscriber_id)  # foreign key
    yield Tokens(tokens.secret_keys, "other.example.org").unsubscribe(subscriber_id)  # other list
    yield tokens.confirm(subscriber_id, app.clock.now())  # right key, wrong purpose


def test_bad_tokens_get_a_friendly_404_and_change_nothing(
    app: App, client: FlaskClient, tokens: Tokens
) -> None:
    subscriber_id = add(app, "reader@example.org")
    before = snapshot(app)
    for token in bad_tokens(tokens, subscriber_id, app):
        page = client.get(f"/u/{token}")
        assert page.status_code == 404, token
        assert "This link is not valid" in page.get_data(as_text=True)
        assert client.post(f"/u/{token}", data=ONE_CLICK).status_code == 404
        assert client.post(f"/u/{token}", data={"action": "unsubscribe"}).status_code == 404
    assert snapshot(app) == before


def test_links_signed_with_a_rotated_out_key_keep_working(
    app: App, settings: Settings, tokens: Tokens
) -> None:
    subscriber_id = add(app, "reader@example.org")
    old_link = f"/u/{tokens.unsubscribe(subscriber_id)}"
    rotated = replace(settings, secrets=Secrets(secret_keys=("a-new-key-" + "x" * 32, SECRET_KEY)))
    with_new_key = App(rotated, app.engine, app.sessions, app.clock)

    response = create_app(with_new_key).test_client().post(old_link, data=ONE_CLICK)

    assert response.status_code == 200
    assert status_of(app, "reader@example.org") is SubscriberStatus.UNSUBSCRIBED


def test_pages_carry_security_headers_and_never_a_cookie(
    app: App, client: FlaskClient, tokens: Tokens
) -> None:
    subscriber_id = add(app, "reader@example.org")
    token = tokens.unsubscribe(subscriber_id)
    responses = [
        client.get("/subscribe"),
        client.get(f"/u/{token}"),
        client.get("/u/not-a-token"),
        client.get("/archive/"),
        client.get("/nowhere"),
        client.post(f"/u/{token}", data={"action": "unsubscribe"}),
        subscribe(client, "new@example.org"),
    ]
    for response in responses:
        assert "Set-Cookie" not in response.headers
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp
        assert "script-src" not in csp
    assert responses[1].headers["Cache-Control"] == "no-store"
    assert client.get("/style.css").mimetype == "text/css"


# Subscribe ----------------------------------------------------------------------------------


def test_subscribe_form_has_a_hidden_honeypot_consent_text_and_no_ticked_box(
    client: FlaskClient,
) -> None:
    page = client.get("/subscribe").get_data(as_text=True)
    assert 'name="email"' in page
    assert 'name="name"' in page
    assert re.search(r'<div class="trap" aria-hidden="true">.*name="website"', page, re.DOTALL)
    assert "checked" not in page
    assert "consent" in page


def test_subscribe_creates_a_pending_subscriber_with_consent_and_mails_a_confirmation(
    app: App, client: FlaskClient, outbox: Path
) -> None:
    response = subscribe(client, "  Jane@Example.ORG ", ip="203.0.113.7", name="Jane Roe")

    assert response.status_code == 200
    assert "Check your inbox" in response.get_data(as_text=True)
    subscriber = standing(app, "jane@example.org")
    assert subscriber is not None
    assert subscriber.status is SubscriberStatus.PENDING
    assert subscriber.name == "Jane Roe"
    assert (subscriber.consent_source, subscriber.consent_ip) == ("form", "203.0.113.7")
    assert subscriber.consent_text == version_of(client.get("/subscribe").get_data(as_text=True))
    assert subscriber.subscribed_at == app.clock.now()
    assert subscriber.last_confirmation_sent_at == app.clock.now()
    [message] = mails(outbox)
    assert message["To"] == "Jane Roe <jane@example.org>"
    assert "confirm" in message["Subject"].lower()
    assert message["List-Unsubscribe"] is None
    assert message.get_content_type() == "multipart/alternative"
    html = message.get_body(("html",))
    assert html is not None
    assert confirm_link(message) in html.get_content()


def version_of(page: str) -> str:
    """The consent version of the wording a form page shows."""
    match = re.search(r'<p class="consent">(.*?)</p>', page, re.DOTALL)
    assert match, "no consent wording on the page"
    return "form-" + hashlib.sha256(" ".join(match.group(1).split()).encode()).hexdigest()[:16]


def test_an_operators_own_consent_wording_is_recorded_as_a_new_version(
    app: App, tmp_path: Path
) -> None:
    stock = create_app(app).test_client()
    subscribe(stock, "before@example.org")
    own = tmp_path / "own-templates" / "web"
    own.mkdir(parents=True)
    (own / "consent.html.j2").write_text(
        "Yes, send me {{ newsletter.name }} every week. You may leave at any time."
    )
    app.settings = replace(
        app.settings,
        newsletter=replace(app.settings.newsletter, templates_dir=str(own.parent)),
    )
    edited = create_app(app).test_client()
    page = edited.get("/subscribe").get_data(as_text=True)
    assert "Yes, send me The Weekly Round-up every week." in page
    subscribe(edited, "after@example.org")

    before, after = standing(app, "before@example.org"), standing(app, "after@example.org")
    assert before is not None
    assert after is not None
    assert after.consent_text == version_of(page)
    assert before.consent_text == version_of(stock.get("/subscribe").get_data(as_text=True))
    assert after.consent_text != before.consent_text


@pytest.mark.parametrize("smtputf8", [False, True], ids=["relay-ascii-only", "relay-smtputf8"])
def test_a_non_ascii_local_part_is_refused_when_the_relay_cannot_take_it(
    settings: Settings, clock: FixedClock, smtputf8: bool
) -> None:
    with SmtpServer(smtputf8=smtputf8, pipelining=False) as server:
        delivery = replace(settings.delivery, transport=server.url(), timeout=10)
        app = App.create(replace(settings, delivery=delivery), clock=clock)
        response = subscribe(create_app(app).test_client(), "zoë@example.org")
        if smtputf8:
            assert response.status_code == 200
            assert [r.recipient for r in server.received] == ["zoë@example.org"]
        else:
            assert response.status_code == 400
            assert "non-ASCII characters before the @" in response.get_data(as_text=True)
            assert standing(app, "zoë@example.org") is None
            assert server.received == []
        app.close()


def test_the_answer_is_the_same_for_new_pending_active_and_suppressed_addresses(
    app: App, client: FlaskClient, outbox: Path
) -> None:
    add(app, "pending@example.org", SubscriberStatus.PENDING)
    add(app, "active@example.org", SubscriberStatus.ACTIVE)
    add(app, "left@example.org", SubscriberStatus.UNSUBSCRIBED)
    add(app, "bounced@example.org", SubscriberStatus.BOUNCED)
    addresses = ["new", "pending", "active", "left", "bounced"]

    answers = [
        subscribe(client, f"{who}@example.org", ip=f"198.51.100.{n}")
        for n, who in enumerate(addresses)
    ]

    assert {a.status_code for a in answers} == {200}
    assert len({a.get_data() for a in answers}) == 1
    assert sorted(str(m["To"]) for m in mails(outbox)) == ["new@example.org", "pending@example.org"]
    for who, status in [("active", "active"), ("left", "unsubscribed"), ("bounced", "bounced")]:
        assert status_of(app, f"{who}@example.org") == status


def test_a_post_without_a_form_we_served_gets_the_form_back_and_sends_nothing(
    app: App, client: FlaskClient, clock: FixedClock, outbox: Path
) -> None:
    """The embeddable snippet, and any bot posting blind: no challenge, so no mail yet."""
    before = snapshot(app)
    response = client.post(
        "/subscribe",
        data={"email": "snippet@example.org", "name": "Sam Snippet"},
        environ_base={"REMOTE_ADDR": "198.51.100.9"},
    )

    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "One more step" in page
    assert 'value="snippet@example.org"' in page
    assert 'value="Sam Snippet"' in page
    assert snapshot(app) == before  # nobody recorded, and no rate limit used up
    assert mails(outbox) == []

    clock.advance(5)  # the reader reads the page and presses Subscribe
    again = client.post(
        "/subscribe",
        data={"email": "snippet@example.org", "name": "Sam Snippet", "form": challenge_in(page)},
        environ_base={"REMOTE_ADDR": "198.51.100.9"},
    )

    assert "Check your inbox" in again.get_data(as_text=True)
    assert [str(m["To"]) for m in mails(outbox)] == ["Sam Snippet <snippet@example.org>"]


@pytest.mark.parametrize(
    "challenge",
    ["too-fast", "days-old", "tampered", "another-purpose"],
)
def test_a_form_filled_too_fast_too_late_or_forged_does_not_count(
    app: App, client: FlaskClient, tokens: Tokens, outbox: Path, challenge: str
) -> None:
    now = app.clock.now()
    value = {
        "too-fast": tokens.form_challenge(now - timedelta(seconds=1)),
        "days-old": tokens.form_challenge(now - timedelta(days=2)),
        "tampered": served_form(client)[:-2] + "xx",
        "another-purpose": tokens.confirm(1, now - timedelta(minutes=1)),
    }[challenge]

    response = subscribe(client, "quick@example.org", form=value)

    assert "One more step" in response.get_data(as_text=True)
    assert standing(app, "quick@example.org") is None
    assert mails(outbox) == []


def test_the_served_form_carries_a_challenge_that_counts_after_two_seconds(
    app: App, client: FlaskClient, clock: FixedClock, outbox: Path
) -> None:
    challenge = challenge_in(client.get("/subscribe").get_data(as_text=True))
    clock.advance(2)
    response = subscribe(client, "patient@example.org", form=challenge)
    assert "Check your inbox" in response.get_data(as_text=True)
    assert len(mails(outbox)) == 1


def test_a_served_form_counts_once_whoever_sends_it(
    app: App, client: FlaskClient, outbox: Path
) -> None:
    challenge = served_form(client)
    first = subscribe(client, "first@example.org", ip="198.51.100.1", form=challenge)
    before = snapshot(app)

    replays = [
        subscribe(client, f"replay{n}@example.org", ip=f"198.51.100.{n + 2}", form=challenge)
        for n in range(3)
    ]

    assert "Check your inbox" in first.get_data(as_text=True)
    for replay in replays:
        assert replay.status_code == 200
        assert "One more step" in replay.get_data(as_text=True)
    assert snapshot(app) == before
    assert [str(m["To"]) for m in mails(outbox)] == ["first@example.org"]


def test_two_requests_racing_with_one_form_let_only_one_through(
    app: App, client: FlaskClient, outbox: Path
) -> None:
    challenge = served_form(client)
    start = threading.Barrier(2, timeout=30)
    pages: dict[int, str] = {}

    def send(n: int) -> None:
        racer = client.application.test_client()
        start.wait()
        response = subscribe(racer, f"racer{n}@example.org", ip=f"192.0.2.{n + 1}", form=challenge)
        pages[n] = response.get_data(as_text=True)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted("Check your inbox" in page for page in pages.values()) == [False, True]
    assert len(mails(outbox)) == 1
    with app.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 1


def test_spent_challenges_are_forgotten_once_too_old_to_count(
    app: App, client: FlaskClient, clock: FixedClock
) -> None:
    subscribe(client, "early@example.org", ip="192.0.2.1")
    clock.advance(13 * 3600)
    subscribe(client, "late@example.org", ip="192.0.2.2")
    with app.transaction() as session:
        assert session.scalar(select(func.count()).select_from(UsedChallenge)) == 1


def test_a_filled_honeypot_is_dropped_silently(app: App, client: FlaskClient, outbox: Path) -> None:
    genuine = subscribe(client, "human@example.org", ip="198.51.100.1")
    before = snapshot(app)

    trapped = subscribe(client, "bot@example.org", ip="198.51.100.2", website="http://spam.test")

    assert trapped.status_code == 200
    assert trapped.get_data() == genuine.get_data()
    assert standing(app, "bot@example.org") is None
    assert snapshot(app) == before
    assert [str(m["To"]) for m in mails(outbox)] == ["human@example.org"]


@pytest.mark.parametrize("address", ["", "not-an-address", "a@b", "x" * 400 + "@example.org"])
def test_an_invalid_address_redisplays_the_form_and_stores_nothing(
    app: App, client: FlaskClient, address: str
) -> None:
    before = snapshot(app)
    response = subscribe(client, address)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert 'role="alert"' in page
    assert 'name="email"' in page
    assert snapshot(app) == before


def test_a_line_break_in_the_name_never_reaches_a_header(client: FlaskClient, outbox: Path) -> None:
    subscribe(client, "jane@example.org", name="Jane\r\nBcc: victim@example.net")
    [message] = mails(outbox)
    assert message["Bcc"] is None
    assert "victim@example.net" not in str(message["To"]).splitlines()[0].split("<")[1]


def test_the_confirmation_builder_refuses_cr_lf_in_the_address_and_cleans_the_name(
    app: App,
) -> None:
    def build(address: str, name: str) -> EmailMessage:
        confirmation = build_confirmation(
            app.settings,
            template_environment(app),
            email=address,
            name=name,
            confirm_url="https://news.example.org/confirm/t",
            now=app.clock.now(),
            expires_hours=48,
        )
        message = email.message_from_bytes(confirmation.message, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message

    with pytest.raises(InputError):
        build("jane@example.org\r\nBcc: evil@example.org", "Jane")
    message = build("jane@example.org", "x\r\nBcc: evil@example.org")
    assert message["Bcc"] is None
    assert [a.addr_spec for a in message["To"].addresses] == ["jane@example.org"]
    assert message["To"].addresses[0].display_name == "x Bcc: evil@example.org"


def test_too_many_requests_from_one_ip_get_429_until_the_hour_is_over(
    app: App, client: FlaskClient, clock: FixedClock, outbox: Path
) -> None:
    limit = app.settings.web.subscribe_per_ip_per_hour
    for n in range(limit):
        assert subscribe(client, f"reader{n}@example.org", ip="192.0.2.9").status_code == 200

    refused = subscribe(client, "one-more@example.org", ip="192.0.2.9")

    assert refused.status_code == 429
    assert 0 < int(refused.headers["Retry-After"]) <= 3601
    assert standing(app, "one-more@example.org") is None
    assert len(mails(outbox)) == limit
    assert subscribe(client, "elsewhere@example.org", ip="192.0.2.10").status_code == 200
    clock.advance(3601)
    assert subscribe(client, "one-more@example.org", ip="192.0.2.9").status_code == 200


def test_one_confirmation_per_address_per_day(
    app: App, client: FlaskClient, clock: FixedClock, outbox: Path
) -> None:
    assert subscribe(client, "target@example.org", ip="192.0.2.1").status_code == 200
    clock.advance(3600 * 23)

    refused = subscribe(client, "TARGET@example.org", ip="192.0.2.2")

    assert refused.status_code == 429
    [first] = mails(outbox)
    first_link = confirm_link(first)
    clock.advance(3601)
    assert subscribe(client, "target@example.org", ip="192.0.2.3").status_code == 200
    [again] = mails(outbox)  # the outbox keeps one file per recipient: this is the new one
    assert confirm_link(again) != first_link
    target = standing(app, "target@example.org")
    assert target is not None
    assert target.last_confirmation_sent_at == clock.now()


def test_the_address_limit_does_not_reveal_who_is_subscribed(app: App, client: FlaskClient) -> None:
    add(app, "active@example.org")
    first = [
        subscribe(client, a, ip="192.0.2.1") for a in ("active@example.org", "new@example.org")
    ]
    second = [
        subscribe(client, a, ip="192.0.2.2") for a in ("active@example.org", "new@example.org")
    ]
    assert [r.status_code for r in first] == [200, 200]
    assert [r.status_code for r in second] == [429, 429]
    assert second[0].get_data() == second[1].get_data()


def test_per_ip_limit_comes_from_the_settings(app: App, settings: Settings) -> None:
    strict = replace(settings, web=WebSettings(subscribe_per_ip_per_hour=1))
    client = create_app(App(strict, app.engine, app.sessions, app.clock)).test_client()
    assert subscribe(client, "a@example.org", ip="192.0.2.1").status_code == 200
    assert subscribe(client, "b@example.org", ip="192.0.2.1").status_code == 429


# Confirm ------------------------------------------------------------------------------------


def test_confirm_get_shows_a_button_and_post_confirms(
    app: App, client: FlaskClient, clock: FixedClock, outbox: Path
) -> None:
    subscribe(client, "jane@example.org", ip="203.0.113.7")
    link = path_of(confirm_link(mails(outbox)[0]))
    clock.advance(3600)
    before = snapshot(app)

    page = client.get(link)

    assert page.status_code == 200
    assert re.search(r'<form method="post" action="">\s*<button', page.get_data(as_text=True))
    assert "j***@example.org" in page.get_data(as_text=True)
    assert snapshot(app) == before
    confirmed = client.post(link)
    assert confirmed.status_code == 200
    assert "You are subscribed" in confirmed.get_data(as_text=True)
    subscriber = standing(app, "jane@example.org")
    assert subscriber is not None
    assert subscriber.status is SubscriberStatus.ACTIVE
    assert subscriber.confirmed_at == clock.now()
    assert subscriber.consent_ip == "203.0.113.7"
    assert [e for e in events(app, subscriber.id) if e[0] is EventKind.CONFIRMED] == [
        (EventKind.CONFIRMED, "form")
    ]
    assert client.post(link).status_code == 200  # a second click is harmless
    assert len(events(app, subscriber.id)) == 2


def test_confirmation_links_expire_after_48_hours(
    app: App, client: FlaskClient, clock: FixedClock, outbox: Path
) -> None:
    subscribe(client, "late@example.org")
    link = path_of(confirm_link(mails(outbox)[0]))
    clock.advance(48 * 3600 + 1)

    for response in (client.get(link), client.post(link)):
        assert response.status_code == 404
        assert "expired" in response.get_data(as_text=True)
    assert status_of(app, "late@example.org") is SubscriberStatus.PENDING


def test_a_confirmation_link_does_not_bring_back_an_unsubscribed_reader(
    app: App, client: FlaskClient, tokens: Tokens, outbox: Path
) -> None:
    subscribe(client, "jane@example.org")
    link = path_of(confirm_link(mails(outbox)[0]))
    client.post(link)
    subscriber = standing(app, "jane@example.org")
    assert subscriber is not None
    client.post(f"/u/{tokens.unsubscribe(subscriber.id)}", data=ONE_CLICK)

    assert client.post(link).status_code == 404
    assert status_of(app, "jane@example.org") is SubscriberStatus.UNSUBSCRIBED


def test_unsubscribe_tokens_do_not_confirm(app: App, client: FlaskClient, tokens: Tokens) -> None:
    subscriber_id = add(app, "pending@example.org", SubscriberStatus.PENDING)
    assert client.post(f"/confirm/{tokens.unsubscribe(subscriber_id)}").status_code == 404
    assert status_of(app, "pending@example.org") is SubscriberStatus.PENDING


# Archive ------------------------------------------------------------------------------------


def make_issue(app: App, week: str, status: IssueStatus, body: str) -> None:
    now = app.clock.now()
    with app.transaction() as session:
        session.add(
            Issue(
                week=week,
                status=status,
                subject=f"Round-up {week}",
                web_html=f"<!doctype html><html><body><h1>{body}</h1></body></html>",
                created_at=now,
                sent_at=now if status is IssueStatus.SENT else None,
            )
        )


def test_archive_lists_sent_issues_newest_first_and_shows_them(
    app: App, client: FlaskClient
) -> None:
    make_issue(app, "2024-W46", IssueStatus.SENT, "Forty-six")
    make_issue(app, "2024-W47", IssueStatus.SENT, "Forty-seven")
    make_issue(app, "2024-W48", IssueStatus.DRAFT, "Not yet")

    listing = client.get("/archive/").get_data(as_text=True)

    assert listing.index("/archive/2024-W47") < listing.index("/archive/2024-W46")
    assert "2024-W48" not in listing
    assert "Week of 18 November 2024" in listing
    issue = client.get("/archive/2024-W47")
    assert issue.status_code == 200
    assert "Forty-seven" in issue.get_data(as_text=True)
    assert "script-src" not in issue.headers["Content-Security-Policy"]
    assert client.get("/archive/2024w47").status_code == 200
    for missing in ("2024-W48", "2024-W45", "2024-W99", "latest"):
        assert client.get(f"/archive/{missing}").status_code == 404


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/archive", "https://news.example.org/archive/"),
        ("/archive?page=2", "https://news.example.org/archive/?page=2"),
        ("/archive//2024-W47", "https://news.example.org/archive/2024-W47"),
    ],
)
def test_redirects_name_the_configured_site_whatever_the_host_header_says(
    app: App, path: str, expected: str
) -> None:
    app.settings = replace(app.settings, web=replace(app.settings.web, proxy_hops=1))
    client = create_app(app).test_client()
    headers = {"Host": "evil.example", "X-Forwarded-Host": "evil.example"}
    for method in (client.get, client.head):
        response = method(path, headers=headers)
        assert response.status_code == 308
        assert response.headers["Location"] == expected
        assert "evil.example" not in response.get_data(as_text=True)


def test_archive_pages_hold_no_personal_data(app: App, client: FlaskClient, tokens: Tokens) -> None:
    subscriber_id = add(app, "private.person@example.org", name="Private Person")
    make_issue(app, "2024-W47", IssueStatus.SENT, "Forty-seven")
    pages = [client.get("/archive/"), client.get("/archive/2024-W47")]
    for page in pages:
        text = page.get_data(as_text=True)
        assert "private.person" not in text
        assert "Private Person" not in text
        assert tokens.unsubscribe(subscriber_id) not in text
        assert "Set-Cookie" not in page.headers


def test_an_empty_archive_says_so(client: FlaskClient) -> None:
    assert "No issue has been sent yet" in client.get("/archive/").get_data(as_text=True)


# Start-up -----------------------------------------------------------------------------------


def test_the_app_refuses_to_start_without_a_secret_key(app: App, settings: Settings) -> None:
    keyless = replace(settings, secrets=Secrets())
    with pytest.raises(ConfigError, match="NEWSLETTER_SECRET_KEY"):
        create_app(App(keyless, app.engine, app.sessions, app.clock))


def test_create_app_without_arguments_reads_the_environment(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEWSLETTER_CONFIG", "")
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", database_url)
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match="NEWSLETTER_SECRET_KEY"):
        create_app()
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET_KEY)
    web = create_app()
    try:
        assert web.test_client().get("/subscribe").status_code == 200
    finally:
        web.extensions["newsletter"].close()


def test_serve_without_a_secret_key_exits_with_one_line(cli: Cli) -> None:
    result = cli("serve", "--port", "1", env={"NEWSLETTER_SECRET_KEY": ""})
    assert result.exit_code == 1
    assert "NEWSLETTER_SECRET_KEY is not set" in result.output
    assert "Traceback" not in result.output


def test_serve_with_a_short_secret_key_exits_with_one_line(cli: Cli) -> None:
    # An address this machine does not have: were the key accepted, serving would fail
    # at once rather than run forever.
    result = cli("serve", "--host", "192.0.2.1", env={"NEWSLETTER_SECRET_KEY": "a"})
    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert "at least 32 bytes" in result.output
    assert "secrets.token_urlsafe(32)" in result.output
    assert "Traceback" not in result.output


def test_a_confirmation_the_mail_server_refuses_can_be_retried_at_once(
    app: App, settings: Settings
) -> None:
    with FaultServer(FaultPolicy(policy=1.0)) as failing:
        broken = replace(settings, delivery=replace(settings.delivery, transport=failing.url))
        client = create_app(App(broken, app.engine, app.sessions, app.clock)).test_client()
        refused = subscribe(client, "reader@example.org", ip="192.0.2.1")
    assert refused.status_code == 503
    assert "try again" in refused.get_data(as_text=True)
    pending = standing(app, "reader@example.org")
    assert pending is not None
    assert pending.last_confirmation_sent_at is None

    with FaultServer(FaultPolicy()) as working:
        fixed = replace(settings, delivery=replace(settings.delivery, transport=working.url))
        client = create_app(App(fixed, app.engine, app.sessions, app.clock)).test_client()
        assert subscribe(client, "reader@example.org", ip="192.0.2.1").status_code == 200
        assert [r.recipient for r in working.received()] == ["reader@example.org"]


@pytest.mark.parametrize(("hops", "expected"), [(0, "10.0.0.2"), (1, "203.0.113.9")])
def test_forwarded_address_is_trusted_only_behind_configured_proxies(
    app: App, hops: int, expected: str
) -> None:
    app.settings = replace(app.settings, web=replace(app.settings.web, proxy_hops=hops))
    client = create_app(app).test_client()
    response = client.post(
        "/subscribe",
        data={"email": "behind@example.org", "name": "", "form": served_form(client)},
        headers={"X-Forwarded-For": "203.0.113.9"},
        environ_base={"REMOTE_ADDR": "10.0.0.2"},
    )
    assert response.status_code == 200
    subscriber = standing(app, "behind@example.org")
    assert subscriber is not None
    assert subscriber.consent_ip == expected


def test_a_test_copy_views_its_draft_in_the_browser_before_it_is_sent(
    app: App, client: FlaskClient, outbox: Path, clock: FixedClock
) -> None:
    fetch_sources(app, [str(Path(__file__).resolve().parent.parent / "examples" / "feed.xml")])
    build_issue(app, Week(2024, 47))
    send_test(app, Week(2024, 47), ["editor@example.org"])
    (copy,) = mails(outbox)
    html, text = copy.get_body(("html",)), copy.get_body(("plain",))
    assert html is not None
    assert text is not None
    links = re.findall(r'href="([^"]*)"[^>]*>View in browser', html.get_content())
    assert links
    assert all(link.startswith("https://news.example.org/archive/draft/") for link in links)
    assert links[0] in text.get_content()
    path = links[0].removeprefix("https://news.example.org")

    # The archive shows only sent issues; the signed draft page shows this one now.
    assert client.get("/archive/2024-W47").status_code == 404
    for _ in range(2):
        page = client.get(path)
        assert page.status_code == 200
        assert "Nordic defence ministers" in page.get_data(as_text=True)
        assert page.headers["Cache-Control"] == "private, no-store"
        assert "noindex" in page.headers["X-Robots-Tag"]
    with app.transaction() as session:
        issue = session.scalars(select(Issue)).one()
        assert issue.status is IssueStatus.DRAFT  # the GETs changed nothing
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0

    token = path.rsplit("/", 1)[1]
    assert client.get(f"{path[:-1]}{'A' if token[-1] != 'A' else 'B'}").status_code == 404
    assert client.get("/archive/draft/1").status_code == 404
    clock.advance(31 * 24 * 3600)
    expired = client.get(path)
    assert expired.status_code == 404
    assert "expired" in expired.get_data(as_text=True)


def test_each_extra_press_of_the_button_says_why_it_is_needed(
    app: App, client: FlaskClient, clock: FixedClock, outbox: Path
) -> None:
    """The snippet's post gets the form back saying why; pressed again within two seconds,
    the page says so and when it will work, and the same form then counts."""
    snippet = {"email": "quick@example.org", "name": "Quick Reader"}
    first = client.post("/subscribe", data=snippet).get_data(as_text=True)
    assert "your request came from a form on another page" in first
    assert re.search(r"press Subscribe once more below \(2 seconds after this\s+page", first)

    clock.advance(0.5)
    hurried = client.post("/subscribe", data={**snippet, "form": challenge_in(first)})
    page = hurried.get_data(as_text=True)
    assert "less than 2 seconds after" in page
    assert "Press Subscribe again in 2 seconds" in page
    assert challenge_in(page) == challenge_in(first), "the same form, which will count soon"
    assert mails(outbox) == []

    clock.advance(1.6)
    done = client.post("/subscribe", data={**snippet, "form": challenge_in(page)})
    assert "Check your inbox" in done.get_data(as_text=True)
    assert len(mails(outbox)) == 1

    spent = client.post("/subscribe", data={**snippet, "form": challenge_in(page)})
    assert "this form had already been sent once" in spent.get_data(as_text=True)
    clock.advance(13 * 3600)
    stale = client.post("/subscribe", data={**snippet, "form": challenge_in(first)})
    assert "more than 12 hours ago" in stale.get_data(as_text=True)
    assert len(mails(outbox)) == 1
