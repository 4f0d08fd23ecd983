"""A database as the release before several newsletters left it: schema 0010, written as
plain SQL on untyped tables (never the models, which describe the newest schema) so that it
stays a faithful picture of that schema whatever the models become.

It holds a subscriber in every standing with their consent record and history, articles, an
issue sent to everyone, an issue whose send stopped half-way (rows sent, queued, deferred and
one caught `sending` by a sender that died), a draft with overrides, click and open counts,
and a row in every other table, so that a migration that loses or adds a row shows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from alembic import command
from sqlalchemy import Connection, Engine, column, insert, table

from newsletter.db.session import alembic_config

RELEASE = "0010"
NOW = datetime(2024, 11, 20, 15, 0, tzinfo=UTC)  # when the old release stopped
SENT_WEEK, HALF_SENT_WEEK, DRAFT_WEEK = "2024-W46", "2024-W47", "2024-W48"
# What the old release's renderer left in an issue: markers that each copy fills in.
HTML = (
    "<html><body><p>Hello NLP-NAME-0D1C,</p><p>This week's stories.</p>"
    '<p><a href="NLP-UNSUBSCRIBE_URL-0D1C-URI">Unsubscribe</a></p></body></html>'
)
TEXT = "Hello NLP-NAME-0D1C,\n\nThis week's stories.\n\nUnsubscribe: NLP-UNSUBSCRIBE_URL-0D1C\n"


@dataclass(frozen=True)
class Reader:
    """One subscriber of the old single list and what happened to them."""

    email: str
    name: str
    status: str  # the 0010 subscriber status
    consent_source: str
    consent_text: str
    events: tuple[str, ...]  # event kinds, in order
    half_sent: str | None  # the delivery status of the half-sent issue; None: no row


READERS = (
    Reader(
        "ada@example.org",
        "Ada",
        "active",
        "form",
        "v3",
        ("subscribed", "confirmed"),
        "sent",
    ),
    Reader("ben@example.org", "Ben", "active", "import", "v2", ("subscribed",), "queued"),
    Reader("cy@example.org", "Cy", "pending", "form", "v3", ("subscribed",), None),
    Reader(
        "dee@example.org",
        "Dee",
        "unsubscribed",
        "form",
        "v2",
        ("subscribed", "confirmed", "complained", "unsubscribed"),
        "queued",
    ),
    Reader(
        "eve@example.org",
        "Eve",
        "bounced",
        "form",
        "v1",
        ("subscribed", "confirmed", "soft_bounce", "bounced"),
        "queued",
    ),
    Reader(
        "fay@example.org",
        "Zoë Fay",
        "active",
        "form",
        "v3",
        ("subscribed", "confirmed", "unsubscribed", "resubscribed", "updated"),
        "deferred",
    ),
    Reader("gil@example.org", "Gil", "active", "cli", "", ("subscribed",), "sending"),
    Reader("hal@example.org", "", "active", "form", "v3", ("subscribed", "confirmed"), "sent"),
    Reader("ivy@example.org", "Ivy", "active", "import", "v2", ("subscribed",), "queued"),
    Reader("jon@example.org", "Jon", "unsubscribed", "form", "v1", ("subscribed",), None),
    # Joined after the half-sent issue's snapshot: that issue is not theirs.
    Reader("kit@example.org", "Kit", "active", "form", "v3", ("subscribed", "confirmed"), None),
)
# Who the resumed send must mail: queued or deferred, and still an active address.
RESUMED = ("ben@example.org", "fay@example.org", "ivy@example.org")


def stamp(connection: Connection, moment: datetime) -> str:
    """A timestamp as the old release stored it: naive UTC text on SQLite, aware on PostgreSQL."""
    moment = moment.astimezone(UTC)
    if connection.dialect.name == "sqlite":
        return moment.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    return moment.isoformat(sep=" ", timespec="microseconds")


def create_0010(engine: Engine) -> None:
    """Migrate an empty database to the previous release's head and fill it."""
    command.upgrade(alembic_config(engine), RELEASE)
    with engine.begin() as connection:
        populate(connection)


def populate(connection: Connection) -> None:
    _Writer(connection).write()


# Tables keyed by something other than an `id` the database chooses.
_WITHOUT_ID = frozenset(
    {"throttles", "used_challenges", "forgotten_addresses", "click_counts", "open_counts"}
)


class _Writer:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def at(self, hours: float) -> str:
        return stamp(self.connection, NOW + timedelta(hours=hours))

    def insert(self, into: str, /, **values: Any) -> int:
        """Insert one row; returns the id the database chose, as the old release let it."""
        statement = insert(table(into, *(column(key) for key in values))).values(**values)
        if into in _WITHOUT_ID:
            self.connection.execute(statement)
            return 0
        return int(self.connection.execute(statement.returning(column("id"))).scalar_one())

    def write(self) -> None:
        at, put = self.at, self.insert
        articles = [
            put(
                "articles",
                guid=f"https://magazine.example.org/?p={n}",
                url=f"https://magazine.example.org/story-{n}",
                title=f"Story {n}",
                section=("News", "Culture", "Science")[n % 3],
                kicker="Exclusive" if n == 1 else "",
                categories="One\nTwo",
                authors="A. Writer",
                published_at=at(-24 * 10 + n),
                teaser_html=f"<p>Teaser {n}</p>",
                image_url=f"https://magazine.example.org/img/{n}.jpg" if n % 2 else "",
                image_alt="A picture" if n % 2 else "",
                image_credit="Photo: Someone" if n % 2 else "",
                feed_url="https://magazine.example.org/feed/",
                fetched_at=at(-2),
                updated_at=at(-2),
                image_width=1200 if n % 2 else 0,
            )
            for n in range(1, 7)
        ]
        put(
            "feeds",
            url="https://magazine.example.org/feed/",
            etag='"abc"',
            last_modified="Wed, 20 Nov 2024 13:00:00 GMT",
            fetched_at=at(-2),
            last_error="",
        )
        put("throttles", key="f" * 64, window_start=at(-0.5), hits=3)
        put("used_challenges", nonce="n" * 32, served_at=at(-1))
        put("forgotten_addresses", digest="d" * 64, forgotten_at=at(-24 * 3))
        sent = self.issue(
            SENT_WEEK,
            "sent",
            built_at=at(-24 * 7),
            send_started_at=at(-24 * 7 + 1),
            sent_at=at(-24 * 7 + 2),
            approved_at=at(-24 * 7),
        )
        half = self.issue(
            HALF_SENT_WEEK, "sending", built_at=at(-2), send_started_at=at(-1), approved_at=at(-2)
        )
        draft = self.issue(DRAFT_WEEK, "draft")
        for issue_id in (sent, half, draft):
            for position, article in enumerate(articles[:4], 1):
                put(
                    "issue_articles",
                    issue_id=issue_id,
                    article_id=article,
                    position=position,
                    featured=position == 1,
                )
        overrides: tuple[tuple[str, int, int | None, str], ...] = (
            ("feature", articles[2], None, ""),
            ("exclude", articles[3], None, ""),
            ("include", articles[4], None, ""),
            ("move", articles[0], 3, ""),
            ("section", articles[1], None, "Science"),
        )
        for kind, article, place, section in overrides:
            put(
                "overrides",
                issue_id=draft,
                article_id=article,
                kind=kind,
                position=place,
                created_at=at(-1),
                section=section,
            )
        for article, human in ((articles[0], 5), (articles[1], 2)):
            put(
                "click_counts",
                issue_id=sent,
                article_id=article,
                human=human,
                early=1,
                burst=0,
                head=2,
                scanner=3,
            )
        put("open_counts", issue_id=sent, opens=17)
        put("senders", issue_id=half, worker_id="mailhost:4242:abc", connections=2, seen_at=at(-1))
        for number, reader in enumerate(READERS):
            subscriber = self.subscriber(reader, number, sent)
            if reader.status != "pending" and reader.email != "kit@example.org":
                self.sent_copy(subscriber, sent, articles[0], number)
            if reader.half_sent is not None:
                put("deliveries", **self.half_sent_row(reader.half_sent, half, subscriber))

    def issue(self, week: str, status: str, **values: str) -> int:
        return self.insert(
            "issues",
            week=week,
            status=status,
            subject=f"The round-up, {week}",
            preheader="Stories of the week",
            html=HTML,
            text=TEXT,
            web_html="<html><body>web</body></html>",
            created_at=self.at(-24 * 3),
            template_digest="e" * 64,
            **values,
        )

    def subscriber(self, reader: Reader, number: int, sent: int) -> int:
        at = self.at
        joined = -24 * 30 + number
        form = reader.consent_source == "form"
        subscriber = self.insert(
            "subscribers",
            email=reader.email,
            name=reader.name,
            status=reader.status,
            subscribed_at=at(joined),
            created_at=at(joined - 0.5),
            updated_at=at(joined + 20),
            confirmed_at=at(joined + 1) if "confirmed" in reader.events else None,
            unsubscribed_at=at(joined + 10) if reader.status == "unsubscribed" else None,
            consent_source=reader.consent_source,
            consent_ip=f"192.0.2.{number + 1}" if form else "",
            consent_text=reader.consent_text,
            soft_bounces=1 if "soft_bounce" in reader.events else 0,
            last_confirmation_sent_at=at(joined) if form else None,
        )
        for step, kind in enumerate(reader.events):
            from_report = kind in ("bounced", "soft_bounce", "complained")
            evidence = {
                "message_id": f"<report.{number}.{step}@mx.example.net>",
                "status": "5.1.1" if kind == "bounced" else "4.2.2",
                "matched_by": "verp",
            }
            self.insert(
                "events",
                subscriber_id=subscriber,
                kind=kind,
                at=at(joined + step),
                source="dsn" if from_report else reader.consent_source,
                detail=f"{kind} #{step}",
                issue_id=sent if from_report or kind == "unsubscribed" else None,
                dedupe_key=f"report:{number}:{step}" if from_report else None,
                evidence=json.dumps(evidence) if from_report else None,
            )
        return subscriber

    def sent_copy(self, subscriber: int, sent: int, article: int, number: int) -> None:
        """The sent issue's delivery, and a click on it."""
        self.insert(
            "deliveries",
            issue_id=sent,
            subscriber_id=subscriber,
            status="sent",
            attempts=1,
            next_attempt_at=None,
            claimed_by="mailhost:1:abc/0",
            lease_until=None,
            last_reply="",
            sent_at=self.at(-24 * 7 + 1.5),
            updated_at=self.at(-24 * 7 + 1.5),
        )
        self.insert(
            "click_events",
            issue_id=sent,
            article_id=article,
            subscriber_id=subscriber,
            at=self.at(-24 * 6),
            reason="" if number % 2 else "early",
        )

    def half_sent_row(self, status: str, issue_id: int, subscriber: int) -> dict[str, Any]:
        at = self.at
        row: dict[str, Any] = {
            "issue_id": issue_id,
            "subscriber_id": subscriber,
            "status": status,
            "attempts": 0,
            "next_attempt_at": None,
            "claimed_by": "",
            "lease_until": None,
            "last_reply": "",
            "sent_at": None,
            "updated_at": at(-1),
        }
        if status == "sent":
            row.update(attempts=1, claimed_by="mailhost:4242:abc/0", sent_at=at(-0.9))
        elif status == "deferred":
            row.update(
                attempts=1,
                claimed_by="mailhost:4242:abc/1",
                next_attempt_at=at(0.1),
                last_reply="451 4.3.0 Try again later",
            )
        elif status == "sending":  # its sender died mid-transaction; the lease ran out
            row.update(attempts=1, claimed_by="mailhost:4242:abc/1", lease_until=at(-0.5))
        return row
