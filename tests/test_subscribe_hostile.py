"""Hostile values in the subscribe form: each is refused, or stored harmlessly, and a refused
request leaves nothing behind (no pending row, no rate-limit hit, no spent challenge), so
the same reader can go on at once with a corrected form.
"""

from __future__ import annotations

from dataclasses import replace
from email.utils import getaddresses
from pathlib import Path
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from newsletter.app import App
from newsletter.config import Settings
from newsletter.db.models import Subscriber
from newsletter.errors import InputError
from newsletter.subscribers.addresses import clean_name
from newsletter.web.endpoints import create_app
from tests.conftest import Cli
from tests.test_web import mails, served_form, snapshot, standing

IP = "198.51.100.20"


@pytest.fixture
def client(app: App, settings: Settings) -> FlaskClient:
    """One request an hour from an address: a refused request that used it up would show."""
    strict = replace(settings, web=replace(settings.web, subscribe_per_ip_per_hour=1))
    return create_app(App(strict, app.engine, app.sessions, app.clock)).test_client()


@pytest.fixture
def outbox(settings: Settings) -> Path:
    return Path(settings.delivery.transport.removeprefix("outbox:"))


def post(client: FlaskClient, body: str) -> TestResponse:
    return client.post(
        "/subscribe",
        data=body.encode("ascii"),
        content_type="application/x-www-form-urlencoded",
        environ_base={"REMOTE_ADDR": IP},
    )


def form(email: str, name: str, challenge: str) -> str:
    """The body exactly as a browser would encode it: every byte percent-encoded."""
    return f"email={quote(email)}&name={quote(name)}&form={quote(challenge)}"


@pytest.mark.parametrize(
    ("name", "stored"),
    [
        ("Jane\0Doe", "JaneDoe"),
        ("\x1b]0;owned\x07Jane", "]0;ownedJane"),
        ("\x1b[2J\x1b[31mJane", "[2J[31mJane"),
        ("Jane\x7fDoe", "JaneDoe"),
        ("Jane\x9bDoe", "JaneDoe"),
    ],
    ids=["nul", "osc-escape", "csi-escape", "delete", "c1-csi"],
)
def test_a_hostile_name_is_stored_as_plain_text(
    app: App, client: FlaskClient, outbox: Path, name: str, stored: str
) -> None:
    """A name is text for people: control characters are taken out, never kept for a
    header or a terminal, and never turned into a server error."""
    response = post(client, form("jane@example.org", name, served_form(client)))

    assert "Check your inbox" in response.get_data(as_text=True)
    subscriber = standing(app, "jane@example.org")
    assert subscriber is not None
    assert subscriber.name == stored
    assert [getaddresses([str(m["To"])]) for m in mails(outbox)] == [[(stored, "jane@example.org")]]


def test_an_over_long_name_is_refused_and_nothing_is_spent(
    app: App, client: FlaskClient, outbox: Path
) -> None:
    challenge = served_form(client)
    before = snapshot(app)

    refused = post(client, form("jane@example.org", "x" * 201, challenge))

    assert refused.status_code == 400
    assert 'role="alert"' in refused.get_data(as_text=True)
    assert snapshot(app) == before
    assert mails(outbox) == []
    fixed = post(client, form("jane@example.org", "Jane Doe", challenge))
    assert "Check your inbox" in fixed.get_data(as_text=True)
    subscriber = standing(app, "jane@example.org")
    assert subscriber is not None
    assert subscriber.name == "Jane Doe"
    assert [str(m["To"]) for m in mails(outbox)] == ["Jane Doe <jane@example.org>"]


@pytest.mark.parametrize(
    "body",
    [
        "email=eve%ED%A0%80@example.org&name=Eve",  # a lone surrogate, encoded as UTF-8 would
        "email=eve@example.org&name=Eve%ED%A0%80",
        "email=eve@example.org&name=Eve%ED%B2%80%00",
        "email=eve@example.org&name=Eve%C3",  # cut off half-way through a character
        "email=eve%00@example.org&name=Eve",
    ],
)
def test_undecodable_percent_encoding_never_reaches_the_database(
    app: App, client: FlaskClient, outbox: Path, body: str
) -> None:
    before = snapshot(app)

    response = post(client, f"{body}&form={quote(served_form(client))}")

    assert response.status_code in (200, 400), response.get_data(as_text=True)
    with app.transaction() as session:
        names = session.scalars(select(Subscriber.name)).all()
        count = session.scalar(select(func.count()).select_from(Subscriber))
    if response.status_code == 400:
        assert snapshot(app) == before
        assert mails(outbox) == []
    else:
        assert count == 1
        assert all(name.isprintable() for name in names)
        assert len(mails(outbox)) == 1


def test_a_lone_surrogate_or_a_control_character_never_stays_in_a_name() -> None:
    assert clean_name("Eve\ud800") == "Eve\ufffd"
    assert clean_name("Eve\udced") == "Eve\ufffd"
    assert clean_name("Eve\0") == "Eve"
    assert clean_name("Eve\x1b[0m") == "Eve[0m"
    with pytest.raises(InputError):
        clean_name("x" * 201)
    assert clean_name("  Zoë \u200dO\u2019Brien\r\n") == "Zoë \u200dO\u2019Brien"


def test_an_undecodable_name_on_the_command_line_is_stored_as_text(app: App, cli: Cli) -> None:
    """Bytes that are not UTF-8 in argv reach Python as lone surrogates: each becomes the
    replacement character, which every database can store."""
    result = cli("subscribers", "add", "eve@example.org", "--name", "Eve\udced\udca0\udc80")
    assert result.exit_code == 0, result.output
    subscriber = standing(app, "eve@example.org")
    assert subscriber is not None
    assert subscriber.name == "Eve\ufffd\ufffd\ufffd"
