"""Several newsletters on the web: the preferences page, links that act on the newsletter
whose message carried them, subscribing to several newsletters, and each one's archive.

Two newsletters: `weekly` (every section) and `brief` (only "Middle East"), through
Flask's test client against a real migrated database; confirmation mail goes to the outbox
and real issues are built from the example feed and sent into it.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import replace
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from newsletter.app import App
from newsletter.config import Settings
from newsletter.db.models import (
    Event,
    EventKind,
    Issue,
    IssueStatus,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
)
from newsletter.mail.tokens import Tokens
from newsletter.subscribers import rules, subscriptions
from newsletter.subscribers.addresses import clean_name
from newsletter.web.endpoints import create_app
from tests.conftest import SECRET_KEY
from tests.test_web import confirm_link, mails, path_of, snapshot, version_of
from tests.tracking_world import send_week

ONE_CLICK = {"List-Unsubscribe": "One-Click"}
ALL = ("Europe", "Middle East", "Asia-Pacific", "Americas", "Africa", "Global")


@pytest.fixture
def two(settings: Settings) -> Settings:
    """`weekly`, the default, carrying every section; `brief`, carrying only the Middle East."""
    weekly = settings.newsletter
    brief = replace(weekly, slug="brief", name="The Brief", sections=("Middle East",))
    return replace(settings, newsletters=(weekly, brief))


@pytest.fixture
def web(app: App, two: Settings) -> App:
    app.settings = two
    return app


@pytest.fixture
def client(web: App) -> FlaskClient:
    return create_app(web).test_client()


def tokens(settings: Settings, slug: str | None = None) -> Tokens:
    return Tokens(settings.secrets.secret_keys, settings.for_newsletter(slug).list_id)


def reader(app: App, address: str, *, brief: bool = True, name: str = "Jane Roe") -> int:
    """An active reader of `weekly` (and of `brief` unless told otherwise)."""
    now = app.clock.now()
    with app.transaction() as session:
        subscriber = rules.create(
            session, address, name=name, status=SubscriberStatus.ACTIVE, at=now, source="test"
        )
        if brief:
            subscriptions.join(
                session, subscriber, "brief", status=SubscriptionStatus.ACTIVE, at=now, source="t"
            )
        return subscriber.id


def held(app: App, subscriber_id: int) -> dict[str, tuple[SubscriptionStatus, str]]:
    with app.transaction() as session:
        rows = session.scalars(
            select(Subscription).where(Subscription.subscriber_id == subscriber_id)
        ).all()
        return {row.newsletter: (row.status, row.sections) for row in rows}


def address_status(app: App, subscriber_id: int) -> SubscriberStatus:
    with app.transaction() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        assert subscriber is not None
        return subscriber.status


def everything(app: App) -> tuple[object, ...]:
    """`snapshot` plus every subscription and name: what a refused request must not touch."""
    with app.transaction() as session:
        rows = session.execute(
            select(Subscription.newsletter, Subscription.status, Subscription.sections)
        ).all()
        names = session.scalars(select(Subscriber.name)).all()
    return snapshot(app), sorted(tuple(row) for row in rows), sorted(names)


def events(app: App, subscriber_id: int) -> list[tuple[EventKind, str, str]]:
    with app.transaction() as session:
        rows = session.execute(
            select(Event.kind, Event.newsletter, Event.detail)
            .where(Event.subscriber_id == subscriber_id, Event.source != "test")
            .order_by(Event.id)
        ).all()
    return [(kind, newsletter, detail) for kind, newsletter, detail in rows]


def save(client: FlaskClient, token: str, **fields: str | list[str]) -> TestResponse:
    data: dict[str, str | list[str]] = {"action": "save", "offered": ["weekly", "brief"]}
    data.update(fields)
    return client.post(f"/p/{token}", data=data, headers={"Sec-Fetch-Site": "same-origin"})


# The preferences page -----------------------------------------------------------------------


def test_the_page_shows_everything_and_a_get_changes_nothing(web: App, client: FlaskClient) -> None:
    subscriber_id = reader(web, "jane.roe@example.org", brief=False)
    token = tokens(web.settings).preferences(subscriber_id)
    before = everything(web)

    for _ in range(3):
        response = client.get(f"/p/{token}", headers={"User-Agent": "Mimecast link scanner"})
        assert response.status_code == 200

    page = response.get_data(as_text=True)
    assert everything(web) == before
    assert "j***@example.org" in page
    assert "jane.roe" not in page
    assert 'value="Jane Roe"' in page
    assert re.search(r'value="weekly" checked>', page)
    assert re.search(r'value="brief">', page), "brief is offered, not ticked"
    assert "The Brief" in page
    for section in ALL:  # every section is received, so each is ticked
        box = rf'name="sections-weekly"\s+type="checkbox" value="{section}" checked'
        assert re.search(box, page), section
    assert ">Leave everything</button>" in page
    assert "Set-Cookie" not in response.headers
    assert "no-store" in response.headers["Cache-Control"]


def test_saving_changes_sections_and_leaves_one_newsletter(web: App, client: FlaskClient) -> None:
    subscriber_id = reader(web, "jane@example.org")
    token = tokens(web.settings).preferences(subscriber_id)

    response = save(
        client,
        token,
        newsletter=["weekly"],
        **{"sections-weekly": ["Global", "europe"]},
        name="Jane  Q. Roe\x1b[31m",
    )

    assert response.status_code == 200, response.get_data(as_text=True)
    assert "Your choices are saved" in response.get_data(as_text=True)
    assert held(web, subscriber_id) == {
        "weekly": (SubscriptionStatus.ACTIVE, "Europe\nGlobal"),
        "brief": (SubscriptionStatus.UNSUBSCRIBED, ""),
    }
    assert address_status(web, subscriber_id) is SubscriberStatus.ACTIVE
    with web.transaction() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        assert subscriber is not None
        assert subscriber.name == clean_name("Jane  Q. Roe\x1b[31m")
    assert sorted(events(web, subscriber_id)) == sorted(
        [
            (EventKind.UPDATED, "", "name"),
            (EventKind.UPDATED, "weekly", "sections: Europe; Global"),
            (EventKind.UNSUBSCRIBED, "brief", ""),
        ]
    )
    again = save(client, token, newsletter=["weekly"], **{"sections-weekly": ["Global", "Europe"]})
    assert again.status_code == 200
    assert len(events(web, subscriber_id)) == 3  # the same choices again record nothing


def test_ticking_every_section_means_all_and_a_newsletter_can_be_joined(
    web: App, client: FlaskClient
) -> None:
    subscriber_id = reader(web, "jane@example.org", brief=False)
    token = tokens(web.settings).preferences(subscriber_id)
    save(client, token, newsletter=["weekly"], **{"sections-weekly": ["Africa"]}, name="Jane")

    response = save(
        client,
        token,
        newsletter=["weekly", "brief"],
        **{"sections-weekly": list(ALL), "sections-brief": ["Middle East"]},
        name="Jane",
    )

    assert response.status_code == 200
    assert held(web, subscriber_id) == {
        "weekly": (SubscriptionStatus.ACTIVE, ""),
        "brief": (SubscriptionStatus.ACTIVE, ""),
    }
    assert events(web, subscriber_id)[-2:] == [
        (EventKind.UPDATED, "weekly", "sections: all"),
        (EventKind.SUBSCRIBED, "brief", ""),
    ]


def test_swapping_ones_only_newsletter_for_another_keeps_the_address(
    web: App, client: FlaskClient
) -> None:
    subscriber_id = reader(web, "jane@example.org", brief=False)
    token = tokens(web.settings).preferences(subscriber_id)

    save(client, token, newsletter=["brief"])

    assert held(web, subscriber_id) == {
        "weekly": (SubscriptionStatus.UNSUBSCRIBED, ""),
        "brief": (SubscriptionStatus.ACTIVE, ""),
    }
    assert address_status(web, subscriber_id) is SubscriberStatus.ACTIVE
    assert events(web, subscriber_id) == [
        (EventKind.SUBSCRIBED, "brief", ""),
        (EventKind.UNSUBSCRIBED, "weekly", ""),
    ]


def test_leaving_everything_and_coming_back_from_the_same_page(
    web: App, client: FlaskClient
) -> None:
    subscriber_id = reader(web, "jane@example.org")
    token = tokens(web.settings).preferences(subscriber_id)

    left = client.post(f"/p/{token}", data={"action": "leave"})

    assert "You have left every newsletter" in left.get_data(as_text=True)
    assert address_status(web, subscriber_id) is SubscriberStatus.UNSUBSCRIBED
    assert {s for s, _ in held(web, subscriber_id).values()} == {SubscriptionStatus.UNSUBSCRIBED}
    assert events(web, subscriber_id) == [(EventKind.UNSUBSCRIBED, "", "")]
    assert "checked" not in client.get(f"/p/{token}").get_data(as_text=True).split("name=")[-1]

    save(client, token, newsletter=["brief"], name="Jane Roe")
    assert address_status(web, subscriber_id) is SubscriberStatus.ACTIVE
    assert held(web, subscriber_id)["brief"][0] is SubscriptionStatus.ACTIVE
    assert held(web, subscriber_id)["weekly"][0] is SubscriptionStatus.UNSUBSCRIBED


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"offered": ["weekly", "daily"]}, "no newsletter called &#39;daily&#39;"),
        ({"newsletter": ["weekly", "daily"]}, "no newsletter called &#39;daily&#39;"),
        ({"offered": []}, "The form named no newsletter"),
        ({"sections-brief": ["Middle East", "Europe"]}, "The Brief has no section called"),
        ({"sections-weekly": ["Sport"]}, "has no section called &#39;Sport&#39;"),
        ({"sections-daily": ["Europe"]}, "no newsletter called &#39;daily&#39;"),
        ({"name": "x" * 201}, "longer than 200 characters"),
    ],
    ids=["unknown-offered", "unknown-joined", "missing", "foreign", "no-such", "unknown", "name"],
)
def test_a_bad_value_changes_nothing_and_says_why(
    web: App, client: FlaskClient, fields: dict[str, str | list[str]], says: str
) -> None:
    subscriber_id = reader(web, "jane@example.org")
    token = tokens(web.settings).preferences(subscriber_id)
    before = everything(web)

    response = save(client, token, **{"newsletter": ["weekly"], "name": "Someone", **fields})

    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "Nothing was changed" in page
    assert says in page
    assert f"/p/{token}" in page  # a way back to the page
    assert everything(web) == before


def test_forged_and_foreign_tokens_are_refused_and_change_nothing(
    web: App, client: FlaskClient
) -> None:
    subscriber_id = reader(web, "jane@example.org")
    good = tokens(web.settings).preferences(subscriber_id)
    forged = [
        good[:-1] + ("A" if good[-1] != "A" else "B"),
        good[: len(good) // 2],
        tokens(web.settings).unsubscribe(subscriber_id),  # another purpose
        tokens(web.settings, "brief").preferences(subscriber_id),  # not the default's list id
        Tokens(("another-key-" + "x" * 32,), web.settings.list_id).preferences(subscriber_id),
        tokens(web.settings).preferences(subscriber_id + 1000),  # nobody
    ]
    before = everything(web)
    for token in forged:
        for response in (
            client.get(f"/p/{token}"),
            save(client, token, newsletter=[], name="Mallory"),
            client.post(f"/p/{token}", data={"action": "leave"}),
        ):
            assert response.status_code == 400, token
            assert "not valid" in response.get_data(as_text=True)
    assert everything(web) == before


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://evil.example"},
    ],
)
def test_a_post_from_another_site_is_refused(
    web: App, client: FlaskClient, headers: dict[str, str]
) -> None:
    subscriber_id = reader(web, "jane@example.org")
    token = tokens(web.settings).preferences(subscriber_id)
    before = everything(web)
    response = client.post(f"/p/{token}", data={"action": "leave"}, headers=headers)
    assert response.status_code == 403
    assert "from its own page" in response.get_data(as_text=True)
    assert everything(web) == before
    ours = client.post(
        f"/p/{token}", data={"action": "leave"}, headers={"Origin": "https://news.example.org"}
    )
    assert ours.status_code == 200
    assert address_status(web, subscriber_id) is SubscriberStatus.UNSUBSCRIBED


def test_a_bounced_address_changes_nothing_but_its_name(web: App, client: FlaskClient) -> None:
    subscriber_id = reader(web, "gone@example.org")
    with web.transaction() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        assert subscriber is not None
        rules.mark_bounced(session, subscriber, at=web.clock.now(), source="test", detail="5.1.1")
    token = tokens(web.settings).preferences(subscriber_id)
    page = client.get(f"/p/{token}").get_data(as_text=True)
    assert "returned as undeliverable" in page
    assert "Leave everything" not in page
    subscribed = held(web, subscriber_id)

    save(client, token, newsletter=[], **{"sections-weekly": ["Europe"]}, name="Gone Away")
    client.post(f"/p/{token}", data={"action": "leave"})

    assert held(web, subscriber_id) == subscribed
    assert address_status(web, subscriber_id) is SubscriberStatus.BOUNCED
    assert events(web, subscriber_id) == [(EventKind.UPDATED, "", "name")]


# Links act on the newsletter whose message carried them ---------------------------------------


def test_a_token_of_one_newsletter_leaves_only_that_one(web: App, client: FlaskClient) -> None:
    subscriber_id = reader(web, "jane@example.org")
    weekly_link = f"/u/{tokens(web.settings).unsubscribe(subscriber_id)}"

    page = client.get(weekly_link).get_data(as_text=True)
    assert "Unsubscribe from The Weekly Round-up?" in page
    assert "You still receive The Brief" in page
    client.post(weekly_link, data={"action": "unsubscribe"})

    assert held(web, subscriber_id)["weekly"][0] is SubscriptionStatus.UNSUBSCRIBED
    assert held(web, subscriber_id)["brief"][0] is SubscriptionStatus.ACTIVE
    assert address_status(web, subscriber_id) is SubscriberStatus.ACTIVE
    page = client.get(weekly_link).get_data(as_text=True)
    assert "is no longer on the list" in page
    assert 'value="resubscribe"' in page

    client.post(weekly_link, data={"action": "resubscribe"})
    assert held(web, subscriber_id)["weekly"][0] is SubscriptionStatus.ACTIVE
    assert events(web, subscriber_id) == [
        (EventKind.UNSUBSCRIBED, "weekly", ""),
        (EventKind.RESUBSCRIBED, "weekly", ""),
    ]


def test_one_click_from_a_message_of_the_second_newsletter_keeps_the_first(
    web: App, client: FlaskClient
) -> None:
    jane = reader(web, "jane@example.org", brief=False)
    brief = App(web.settings.for_newsletter("brief"), web.engine, web.sessions, web.clock)
    [copy] = send_week(brief, ["jane@example.org"])
    assert copy.to == "Jane Roe <jane@example.org>"
    outbox = Path(web.settings.delivery.transport.removeprefix("outbox:"))
    [message] = mails_in(outbox)
    assert "brief." in str(message["List-Id"])
    html = message.get_body(("html",))
    assert html is not None
    browser = re.findall(r'href="([^"]*/archive/[^"]*)"', html.get_content())
    assert browser
    assert all(url.endswith("?newsletter=brief") for url in browser), browser
    [link] = [
        link
        for link in re.findall(r"<([^>]+)>", str(message["List-Unsubscribe"]))
        if link.startswith("https://")
    ]

    response = client.post(path_of(link), data=ONE_CLICK)

    assert response.status_code == 200
    assert held(web, jane) == {
        "weekly": (SubscriptionStatus.ACTIVE, ""),
        "brief": (SubscriptionStatus.UNSUBSCRIBED, ""),
    }
    assert address_status(web, jane) is SubscriberStatus.ACTIVE
    assert events(web, jane)[-1] == (EventKind.UNSUBSCRIBED, "brief", "")


def mails_in(outbox: Path) -> list[EmailMessage]:
    found = []
    for path in sorted(outbox.rglob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        found.append(message)
    return found


def test_the_archive_of_each_newsletter(web: App, client: FlaskClient) -> None:
    now = web.clock.now()
    with web.transaction() as session:
        for slug, body in (("weekly", "Weekly forty-seven"), ("brief", "Brief forty-seven")):
            session.add(
                Issue(
                    newsletter=slug,
                    week="2024-W47",
                    status=IssueStatus.SENT,
                    subject=f"{slug} 2024-W47",
                    web_html=f"<html><body><h1>{body}</h1></body></html>",
                    created_at=now,
                    sent_at=now,
                )
            )
    assert "weekly 2024-W47" in client.get("/archive/").get_data(as_text=True)
    listing = client.get("/archive/?newsletter=brief").get_data(as_text=True)
    assert "brief 2024-W47" in listing
    assert "weekly 2024-W47" not in listing
    assert "/archive/2024-W47?newsletter=brief" in listing
    assert "Weekly forty-seven" in client.get("/archive/2024-W47").get_data(as_text=True)
    brief = client.get("/archive/2024-W47?newsletter=brief").get_data(as_text=True)
    assert "Brief forty-seven" in brief
    for path in ("/archive/?newsletter=daily", "/archive/2024-W47?newsletter=daily"):
        assert client.get(path).status_code == 404


# Subscribing to several newsletters -----------------------------------------------------------


def test_the_form_is_about_one_newsletter_and_offers_the_others_unticked(
    client: FlaskClient,
) -> None:
    """`?newsletter=SLUG` chooses the page's own newsletter (the default without it): it is
    the form's subject, not a box; the others are offered, and nothing is ticked in advance."""
    page = client.get("/subscribe").get_data(as_text=True)
    assert re.search(r'<input type="hidden" name="newsletter" value="weekly">', page)
    assert re.search(r'type="checkbox"\s+value="brief">', page)
    assert 'name="sections-weekly"' in page
    assert not re.search(r"<input[^>]*type=\"checkbox\"[^>]* checked", page), "nothing pre-ticked"
    chosen = client.get("/subscribe?newsletter=brief").get_data(as_text=True)
    assert re.search(r'<input type="hidden" name="newsletter" value="brief">', chosen)
    assert re.search(r'type="checkbox"\s+value="weekly">', chosen)
    assert chosen.index("The Brief") < chosen.index("Also The Weekly Round-up")
    assert not re.search(r"<input[^>]*type=\"checkbox\"[^>]* checked", chosen)
    assert client.get("/subscribe?newsletter=daily").status_code == 404


def subscribe(client: FlaskClient, address: str, **fields: str | list[str]) -> TestResponse:
    web: App = client.application.extensions["newsletter"]
    challenge = tokens(web.settings).form_challenge(web.clock.now() - timedelta(seconds=30))
    data: dict[str, str | list[str]] = {"email": address, "form": challenge, "choosing": "1"}
    data.update(fields)
    return client.post("/subscribe", data=data, environ_base={"REMOTE_ADDR": "198.51.100.4"})


def test_subscribing_to_two_newsletters_then_confirming_activates_both(
    web: App, client: FlaskClient
) -> None:
    outbox = Path(web.settings.delivery.transport.removeprefix("outbox:"))
    response = subscribe(
        client,
        "sam@example.org",
        newsletter=["weekly", "brief"],
        **{"sections-weekly": ["Africa", "Europe"]},
    )
    assert "Check your inbox" in response.get_data(as_text=True)
    form = client.get("/subscribe").get_data(as_text=True)
    assert "the newsletters you tick (The Weekly Round-up, The Brief)" in form
    with web.transaction() as session:
        sam = rules.find(session, "sam@example.org")
        assert sam is not None
        sam_id = sam.id
        assert sam.consent_text == version_of(form)
    assert held(web, sam_id) == {
        "weekly": (SubscriptionStatus.PENDING, "Europe\nAfrica"),
        "brief": (SubscriptionStatus.PENDING, ""),
    }
    assert events(web, sam_id) == [
        (EventKind.SUBSCRIBED, "weekly", ""),
        (EventKind.SUBSCRIBED, "brief", ""),
    ]
    [message] = mails(outbox)
    link = path_of(confirm_link(message))
    page = client.get(link).get_data(as_text=True)
    assert "The Weekly Round-up and The Brief" in page

    confirmed = client.post(link)

    assert "The Weekly Round-up and The Brief" in confirmed.get_data(as_text=True)
    assert address_status(web, sam_id) is SubscriberStatus.ACTIVE
    assert held(web, sam_id) == {
        "weekly": (SubscriptionStatus.ACTIVE, "Europe\nAfrica"),
        "brief": (SubscriptionStatus.ACTIVE, ""),
    }
    assert events(web, sam_id)[-1] == (EventKind.CONFIRMED, "", "")


def test_an_active_reader_asking_for_another_newsletter_confirms_it_and_keeps_the_first(
    web: App, client: FlaskClient
) -> None:
    jane = reader(web, "jane@example.org", brief=False)
    with web.transaction() as session:
        subscriber = session.get(Subscriber, jane)
        assert subscriber is not None
        subscriptions.join(
            session,
            subscriber,
            "weekly",
            status=SubscriptionStatus.ACTIVE,
            at=web.clock.now(),
            source="test",
            sections=["Africa"],
        )
    new = subscribe(client, "new@example.org", newsletter=["brief"])
    known = subscribe(client, "jane@example.org", newsletter=["weekly", "brief"])

    assert known.get_data() == new.get_data()
    assert held(web, jane) == {
        "weekly": (SubscriptionStatus.ACTIVE, "Africa"),  # a stranger changes nothing here
        "brief": (SubscriptionStatus.PENDING, ""),
    }
    outbox = Path(web.settings.delivery.transport.removeprefix("outbox:"))
    [to_jane] = [m for m in mails(outbox) if "jane@" in str(m["To"])]
    assert "The Brief" in str(to_jane["Subject"])
    client.post(path_of(confirm_link(to_jane)))
    assert held(web, jane)["brief"][0] is SubscriptionStatus.ACTIVE


@pytest.mark.parametrize(
    "fields",
    [
        {"newsletter": ["brief"], "sections-brief": ["Europe"]},
        {"newsletter": ["daily"]},
        {"newsletter": []},
    ],
    ids=["foreign-section", "unknown-newsletter", "none-chosen"],
)
def test_a_subscription_to_nothing_we_have_is_refused(
    web: App, client: FlaskClient, fields: dict[str, list[str]]
) -> None:
    before = everything(web)
    response = subscribe(client, "sam@example.org", **fields)
    assert response.status_code == 400
    assert 'role="alert"' in response.get_data(as_text=True)
    assert everything(web) == before


def test_a_key_rotation_keeps_every_newsletters_links(web: App, client: FlaskClient) -> None:
    subscriber_id = reader(web, "jane@example.org")
    link = f"/u/{tokens(web.settings, 'brief').unsubscribe(subscriber_id)}"
    web.settings = replace(
        web.settings,
        secrets=replace(web.settings.secrets, secret_keys=("k" * 40, SECRET_KEY)),
    )
    rotated = create_app(web).test_client()
    assert rotated.post(link, data=ONE_CLICK).status_code == 200
    assert held(web, subscriber_id)["brief"][0] is SubscriptionStatus.UNSUBSCRIBED
