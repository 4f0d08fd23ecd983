"""Click tracking through the web endpoints: what each mode stores, how machines are told
from people, and what a link that is not ours gets."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, text
from werkzeug.test import TestResponse

from newsletter.app import App
from newsletter.clock import FixedClock
from newsletter.config import Settings
from newsletter.db.models import (
    Article,
    Base,
    ClickCount,
    ClickEvent,
    Delivery,
    Issue,
    IssueArticle,
    OpenCount,
)
from newsletter.tracking.tokens import ClickTokens
from newsletter.web.endpoints import create_app
from tests.conftest import SECRET_KEY
from tests.tracking_world import BROWSER, WEEK, send_week, settle, tracking_app

READERS = ["ann@example.org", "bob@example.org"]


@pytest.fixture
def tracked(request: pytest.FixtureRequest, settings: Settings, clock: FixedClock) -> Iterator[App]:
    mode = getattr(request, "param", "aggregate")
    application = tracking_app(settings, clock, clicks=mode)
    yield application
    application.close()


def click(client: FlaskClient, path: str, agent: str = BROWSER, **kw: Any) -> TestResponse:
    response = client.get(path, headers={"User-Agent": agent}, **kw)
    settle(client.application)
    return response


def counts(app: App) -> dict[int, dict[str, int]]:
    with app.transaction() as session:
        rows = session.scalars(select(ClickCount)).all()
        return {
            r.article_id: {k: getattr(r, k) for k in ("human", "early", "burst", "head", "scanner")}
            for r in rows
        }


def stored_url(app: App, path: str) -> str:
    """The article URL the database holds for a tracked link."""
    token = path.split("/")[2]
    _week, article_id = ClickTokens((SECRET_KEY,), app.settings.list_id).read_article(token)
    with app.transaction() as session:
        article = session.get(Article, article_id)
        assert article is not None
        return article.url


def dump(app: App) -> dict[str, set[tuple[object, ...]]]:
    """Every row of every table the models know."""
    with app.engine.connect() as conn:
        return {
            name: {tuple(row) for row in conn.execute(table.select())}
            for name, table in Base.metadata.tables.items()
        }


def test_clicks_off_writes_plain_links_and_stores_nothing(app: App) -> None:
    copies = send_week(app, READERS)
    assert all(copy.links == [] for copy in copies)
    with app.transaction() as session:
        links = session.scalars(select(Article.url)).all()
        assert session.scalars(select(ClickCount)).all() == []
    assert links


def test_aggregate_redirects_to_the_stored_url_and_names_nobody(
    tracked: App, clock: FixedClock
) -> None:
    copies = send_week(tracked, READERS)
    assert copies[0].links == copies[1].links  # one render, the same links for all
    clock.advance(3600)
    client = create_app(tracked).test_client()
    before = dump(tracked)
    path = copies[0].paths()[1]
    response = click(client, path)
    assert response.status_code == 302
    assert response.headers["Location"] == stored_url(tracked, path)
    after = dump(tracked)
    changed = {name for name in after if after[name] != before[name]}
    assert changed == {"click_counts", "throttles"}
    for name in changed:
        table = Base.metadata.tables[name]
        assert not any("subscriber" in column.name for column in table.columns)
        assert not any(fk.column.table.name == "subscribers" for fk in table.foreign_keys)
    assert list(counts(tracked).values()) == [
        {"human": 1, "early": 0, "burst": 0, "head": 0, "scanner": 0}
    ]


def test_machine_clicks_are_told_apart(tracked: App, clock: FixedClock) -> None:
    copies = send_week(tracked, READERS)
    client = create_app(tracked).test_client()
    first, *others = copies[0].paths()
    clock.advance(2)  # a link checker at delivery
    assert click(client, first, environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code == 302
    clock.advance(600)
    head = client.head(first, headers={"User-Agent": BROWSER})
    settle(client.application)
    assert head.status_code == 302
    scanner = "Mozilla/5.0 (compatible; Barracuda Sentinel (EE))"
    assert click(client, first, agent=scanner).status_code == 302
    for path in others[:3]:  # every link at once from one address
        click(client, path, environ_base={"REMOTE_ADDR": "10.0.0.9"})
    totals = {k: sum(c[k] for c in counts(tracked).values()) for k in ("human", "early")}
    kinds = {k: sum(c[k] for c in counts(tracked).values()) for k in ("burst", "head", "scanner")}
    assert totals == {"human": 2, "early": 1}
    assert kinds == {"burst": 1, "head": 1, "scanner": 1}


@pytest.mark.parametrize("tracked", ["per-reader"], indirect=True)
def test_per_reader_links_name_the_reader_and_bursts_are_recounted(
    tracked: App, clock: FixedClock
) -> None:
    copies = send_week(tracked, READERS)
    ann, bob = copies
    assert ann.links != bob.links
    assert [p.split("/")[2] for p in ann.paths()] == [p.split("/")[2] for p in bob.paths()]
    clock.advance(600)
    client = create_app(tracked).test_client()
    assert click(client, ann.paths()[0]).status_code == 302
    clock.advance(30)
    for path in bob.paths()[:3]:
        assert click(client, path).status_code == 302
        clock.advance(1)
    with tracked.transaction() as session:
        events = session.execute(
            select(ClickEvent.subscriber_id, ClickEvent.reason).order_by(ClickEvent.id)
        ).all()
        ids = dict(session.execute(text("SELECT email, id FROM subscribers")).all())
    assert events == [
        (ids["ann@example.org"], ""),
        (ids["bob@example.org"], "burst"),
        (ids["bob@example.org"], "burst"),
        (ids["bob@example.org"], "burst"),
    ]
    totals = {k: sum(c[k] for c in counts(tracked).values()) for k in ("human", "burst")}
    assert totals == {"human": 1, "burst": 3}


@pytest.mark.parametrize("tracked", ["per-reader"], indirect=True)
def test_early_is_measured_from_the_readers_own_delivery(tracked: App, clock: FixedClock) -> None:
    copies = send_week(tracked, READERS)
    with tracked.transaction() as session:
        session.execute(Delivery.__table__.update().values(sent_at=clock.now().replace(hour=16)))
    clock.advance(3600 + 5)  # an hour after the send began, five seconds after this delivery
    client = create_app(tracked).test_client()
    click(client, copies[0].paths()[0])
    assert sum(c["early"] for c in counts(tracked).values()) == 1


def test_links_that_are_not_ours_go_nowhere(tracked: App, clock: FixedClock) -> None:
    copies = send_week(tracked, READERS)
    clock.advance(600)
    client = create_app(tracked).test_client()
    path = copies[0].paths()[0]
    token = path.split("/")[2]
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    tokens = ClickTokens((SECRET_KEY,), tracked.settings.list_id)
    with tracked.transaction() as session:
        article_id = session.scalars(select(IssueArticle.article_id)).first()
    assert article_id is not None
    other_week = tokens.article("2024-W48", article_id)
    mixed = f"/c/{token}/{tokens.reader('2024-W48', 1)}"
    for bad in (f"/c/{forged}", f"/c/{token[:-5]}", f"/c/{other_week}", mixed, "/c/"):
        response = click(client, bad)
        assert response.status_code == 404, bad
        assert "Location" not in response.headers
    assert counts(tracked) == {}


def test_a_deleted_article_leads_to_the_home_page(tracked: App, clock: FixedClock) -> None:
    send_week(tracked, READERS)
    tokens = ClickTokens((SECRET_KEY,), tracked.settings.list_id)
    client = create_app(tracked).test_client()
    response = click(client, f"/c/{tokens.article(str(WEEK), 987654)}")
    assert response.status_code == 302
    assert response.headers["Location"] == "https://news.example.org/"
    assert counts(tracked) == {}


def test_a_flood_from_one_address_is_redirected_but_not_counted(
    tracked: App, clock: FixedClock
) -> None:
    copies = send_week(tracked, READERS)
    client = create_app(tracked).test_client()
    path = copies[0].paths()[0]
    for _ in range(125):
        clock.advance(11)
        assert click(client, path).status_code == 302
    assert sum(c["human"] for c in counts(tracked).values()) == 120


def test_a_get_changes_no_subscription(tracked: App, clock: FixedClock) -> None:
    copies = send_week(tracked, READERS)
    clock.advance(600)
    client = create_app(tracked).test_client()
    with tracked.engine.connect() as conn:
        before = conn.execute(text("SELECT * FROM subscribers ORDER BY id")).all()
    for path in copies[0].paths():
        click(client, path)
    with tracked.engine.connect() as conn:
        assert conn.execute(text("SELECT * FROM subscribers ORDER BY id")).all() == before


def test_opens_are_counted_per_issue_and_only_when_asked(
    settings: Settings, clock: FixedClock
) -> None:
    app = tracking_app(settings, clock, opens=True)
    try:
        send_week(app, READERS)
        with app.transaction() as session:
            html = session.scalars(select(Issue.html)).one()
            web_html = session.scalars(select(Issue.web_html)).one()
        pixel = re.search(r'<img src="https://news\.example\.org(/o/[^"]+)"', html)
        assert pixel is not None
        assert "/o/" not in web_html
        client = create_app(app).test_client()
        assert client.get(pixel[1]).status_code == 200
        assert client.head(pixel[1]).status_code == 200
        assert client.get(pixel[1][:-8] + ".gif").status_code == 404
        with app.transaction() as session:
            assert session.scalars(select(OpenCount.opens)).all() == [1]
    finally:
        app.close()


def test_each_newsletters_links_and_opens_count_for_its_own_issue(
    settings: Settings, clock: FixedClock
) -> None:
    """Both newsletters send week 47; a link or image of the brief counts for the brief's
    issue, found by the list id its token was signed with."""
    brief_settings = replace(
        settings.newsletter, slug="brief", name="The Brief", sections=("Middle East",)
    )
    two = replace(settings, newsletters=(settings.newsletter, brief_settings))
    app = tracking_app(two, clock, clicks="aggregate", opens=True)
    brief = App(app.settings.for_newsletter("brief"), app.engine, app.sessions, app.clock)
    try:
        send_week(app, ["ann@example.org"])
        [cy] = [copy for copy in send_week(brief, ["cy@example.org"]) if "cy@" in copy.to]
        clock.advance(3600)
        client = create_app(app).test_client()
        assert click(client, cy.paths()[0]).status_code == 302
        with app.transaction() as session:
            rows = session.execute(select(Issue.newsletter, Issue.id)).all()
            issues: dict[str, int] = dict(rows)
            html = session.scalars(select(Issue.html).where(Issue.id == issues["brief"])).one()
        pixel = re.search(r'<img src="https://news\.example\.org(/o/[^"]+)"', html)
        assert pixel is not None
        assert client.get(pixel[1]).status_code == 200
        with app.transaction() as session:
            clicked = session.scalars(select(ClickCount.issue_id)).all()
            opened = [
                tuple(row) for row in session.execute(select(OpenCount.issue_id, OpenCount.opens))
            ]
        assert clicked == [issues["brief"]]
        assert opened == [(issues["brief"], 1)]
    finally:
        app.close()
