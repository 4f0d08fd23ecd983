"""The stored state: subscribers and their history, articles, issues and the delivery ledger.

Every timestamp is stored in UTC and read back time-zone aware, on SQLite as on PostgreSQL.
The schema itself is owned by the Alembic migrations in `migrations/versions`; a test checks
that these models and the migrated database agree.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from newsletter.config import DEFAULT_SLUG

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out; naive values are refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware one is required")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        validate_strings=True,
        length=20,
        values_callable=lambda members: [m.value for m in members],
    )


class SubscriberStatus(enum.StrEnum):
    ACTIVE = "active"
    PENDING = "pending"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"

    @property
    def suppressed(self) -> bool:
        return self in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED)


class Subscriber(Base):
    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[SubscriberStatus] = mapped_column(
        _enum(SubscriberStatus, "subscriber_status"), index=True
    )
    subscribed_at: Mapped[datetime]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    confirmed_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]
    consent_source: Mapped[str] = mapped_column(String(40), default="")
    consent_ip: Mapped[str] = mapped_column(String(45), default="")
    consent_text: Mapped[str] = mapped_column(String(40), default="")
    soft_bounces: Mapped[int] = mapped_column(Integer, default=0)
    last_confirmation_sent_at: Mapped[datetime | None]


class SubscriptionStatus(enum.StrEnum):
    ACTIVE = "active"
    PENDING = "pending"
    UNSUBSCRIBED = "unsubscribed"


class Subscription(Base):
    """One subscriber's standing with one newsletter, and the sections they chose.

    A reader receives a newsletter when both the address (`Subscriber.status`, which a bounce
    or complaint suppresses everywhere) and this subscription are active. `sections` holds the
    chosen sections one per line; empty means every section the newsletter carries.
    """

    __tablename__ = "subscriptions"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "newsletter"),
        Index("ix_subscriptions_newsletter_status", "newsletter", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    newsletter: Mapped[str] = mapped_column(String(40))
    status: Mapped[SubscriptionStatus] = mapped_column(
        _enum(SubscriptionStatus, "subscription_status")
    )
    sections: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    unsubscribed_at: Mapped[datetime | None]
    consent_source: Mapped[str] = mapped_column(String(40), default="")
    consent_text: Mapped[str] = mapped_column(String(40), default="")

    @property
    def section_list(self) -> tuple[str, ...]:
        return tuple(line for line in self.sections.splitlines() if line)


class EventKind(enum.StrEnum):
    SUBSCRIBED = "subscribed"
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"
    RESUBSCRIBED = "resubscribed"
    BOUNCED = "bounced"
    SOFT_BOUNCE = "soft_bounce"
    COMPLAINED = "complained"
    UPDATED = "updated"


class Event(Base):
    """One change in a subscriber's standing: the consent and suppression record."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[EventKind] = mapped_column(_enum(EventKind, "event_kind"))
    at: Mapped[datetime] = mapped_column(index=True)
    # The newsletter a subscription event concerns; "" for the address as a whole.
    newsletter: Mapped[str] = mapped_column(String(40), default="", server_default="")
    source: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str] = mapped_column(Text, default="")
    issue_id: Mapped[int | None] = mapped_column(ForeignKey("issues.id", ondelete="SET NULL"))
    # A stable key for events that must be recorded once only (a bounce report read twice).
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    # What a report-driven change rests on (the report's Message-ID and date, the status and
    # diagnostic, how the report was matched to the subscriber), so a wrong one can be judged.
    evidence: Mapped[dict[str, str] | None] = mapped_column(JSON)


class Feed(Base):
    """Per-feed HTTP cache validators, so a weekly fetch costs the publisher a 304."""

    __tablename__ = "feeds"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000), unique=True)
    etag: Mapped[str] = mapped_column(String(500), default="")
    last_modified: Mapped[str] = mapped_column(String(100), default="")
    fetched_at: Mapped[datetime | None]
    last_error: Mapped[str] = mapped_column(Text, default="")


class Throttle(Base):
    """A rate-limit counter shared by every web process: hits since `window_start`.

    `key` is a keyed hash of what is limited (an IP address, a target address), so the table
    holds no personal data in the clear.
    """

    __tablename__ = "throttles"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(index=True)
    hits: Mapped[int] = mapped_column(Integer)


class UsedChallenge(Base):
    """A subscribe form's challenge that has already carried a request: each counts once.

    `served_at` lets a row go once its challenge is too old to pass anyway.
    """

    __tablename__ = "used_challenges"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    served_at: Mapped[datetime] = mapped_column(index=True)


class Article(Base):
    __tablename__ = "articles"

    id: Mapped[int] = mapped_column(primary_key=True)
    guid: Mapped[str] = mapped_column(String(2000), unique=True)
    url: Mapped[str] = mapped_column(String(2000), index=True)
    title: Mapped[str] = mapped_column(Text)
    section: Mapped[str] = mapped_column(String(100), default="")
    kicker: Mapped[str] = mapped_column(String(100), default="")
    categories: Mapped[str] = mapped_column(Text, default="")  # one per line
    authors: Mapped[str] = mapped_column(Text, default="")  # one per line
    published_at: Mapped[datetime] = mapped_column(index=True)
    teaser_html: Mapped[str] = mapped_column(Text, default="")
    image_url: Mapped[str] = mapped_column(String(2000), default="")
    image_alt: Mapped[str] = mapped_column(Text, default="")
    image_credit: Mapped[str] = mapped_column(Text, default="")
    image_width: Mapped[int] = mapped_column(default=0)  # natural width; 0 when unknown
    feed_url: Mapped[str] = mapped_column(String(2000), default="")
    fetched_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class IssueStatus(enum.StrEnum):
    DRAFT = "draft"
    SENDING = "sending"
    SENT = "sent"


# An issue in these has gone, at least in part, to readers: its articles are a record of what
# they received, never changed by the feed and never sent in another issue.
LOCKED_STATUSES = (IssueStatus.SENDING, IssueStatus.SENT)


class Issue(Base):
    """One week's round-up; its rendered template is stored once and personalised per copy."""

    __tablename__ = "issues"
    __table_args__ = (UniqueConstraint("newsletter", "week"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    newsletter: Mapped[str] = mapped_column(String(40), default=DEFAULT_SLUG)
    week: Mapped[str] = mapped_column(String(10))
    status: Mapped[IssueStatus] = mapped_column(_enum(IssueStatus, "issue_status"))
    subject: Mapped[str] = mapped_column(Text, default="")
    preheader: Mapped[str] = mapped_column(Text, default="")
    html: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")
    web_html: Mapped[str] = mapped_column(Text, default="")
    # SHA-256 of the email templates the render came from: a changed template makes a
    # draft's stored render stale ("" for issues rendered before it was kept).
    template_digest: Mapped[str] = mapped_column(String(64), default="", server_default="")
    created_at: Mapped[datetime]
    built_at: Mapped[datetime | None]
    send_started_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    # Set by `issue approve`: the selection is frozen until an override or a new article.
    approved_at: Mapped[datetime | None]

    articles: Mapped[list[IssueArticle]] = relationship(
        back_populates="issue",
        order_by="IssueArticle.position",
        cascade="all, delete-orphan",
    )
    overrides: Mapped[list[Override]] = relationship(
        back_populates="issue", order_by="Override.id", cascade="all, delete-orphan"
    )


class IssueArticle(Base):
    """The issue's selection as built: what `issue show` lists and the email shows."""

    __tablename__ = "issue_articles"
    __table_args__ = (UniqueConstraint("issue_id", "article_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"))
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="RESTRICT"))
    position: Mapped[int] = mapped_column(Integer)
    featured: Mapped[bool] = mapped_column(Boolean, default=False)

    issue: Mapped[Issue] = relationship(back_populates="articles")
    article: Mapped[Article] = relationship()


class OverrideKind(enum.StrEnum):
    FEATURE = "feature"
    EXCLUDE = "exclude"
    INCLUDE = "include"
    MOVE = "move"
    SECTION = "section"


class Override(Base):
    """An editor's decision about one article, kept across rebuilds of the draft."""

    __tablename__ = "overrides"

    id: Mapped[int] = mapped_column(primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"))
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"))
    kind: Mapped[OverrideKind] = mapped_column(_enum(OverrideKind, "override_kind"))
    position: Mapped[int | None]
    section: Mapped[str] = mapped_column(String(100), default="", server_default="")
    created_at: Mapped[datetime]

    issue: Mapped[Issue] = relationship(back_populates="overrides")
    article: Mapped[Article] = relationship()


class DeliveryStatus(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    DEFERRED = "deferred"
    SKIPPED = "skipped"
    UNCERTAIN = "uncertain"


# The rows a send may still claim, and the claim index's condition, which must name them
# as literals (migration 0002 keeps its own copy, as migrations do).
CLAIMABLE_STATUSES = (DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED)
CLAIMABLE = f"status IN ({', '.join(repr(s.value) for s in CLAIMABLE_STATUSES)})"


class Delivery(Base):
    """One issue to one subscriber: the ledger that makes a send resumable and exactly-once."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("issue_id", "subscriber_id"),
        # Only the rows a claim can take: marking a row `sending` takes it out, and marking it
        # `sent` then writes no index page at all, so each message's commit writes fewer pages.
        # The databases use it only for queries that name these statuses as literals.
        Index(
            "ix_deliveries_claim",
            "issue_id",
            "status",
            "next_attempt_at",
            sqlite_where=text(CLAIMABLE),
            postgresql_where=text(CLAIMABLE),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    status: Mapped[DeliveryStatus] = mapped_column(_enum(DeliveryStatus, "delivery_status"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    claimed_by: Mapped[str] = mapped_column(String(100), default="")
    lease_until: Mapped[datetime | None]
    last_reply: Mapped[str] = mapped_column(Text, default="")
    sent_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]
    # The reader's chosen sections when the send was queued, one per line ("" for all): which
    # variant of the issue they get, fixed so that a resumed send mails the same one.
    sections: Mapped[str] = mapped_column(Text, default="", server_default="")

    subscriber: Mapped[Subscriber] = relationship()


class Sender(Base):
    """A process taking part in an issue's send, seen recently: how senders on several
    machines split the global rate between them without a coordinator."""

    __tablename__ = "senders"

    id: Mapped[int] = mapped_column(primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"), index=True)
    worker_id: Mapped[str] = mapped_column(String(200), unique=True)
    connections: Mapped[int] = mapped_column(Integer)
    seen_at: Mapped[datetime]


class ClickCount(Base):
    """Clicks on one article's links in one issue: no one is named, in any tracking mode.

    Machine clicks are counted by the sign that gave them away, so a report can say how it
    knew. `article_id` is no foreign key: the count outlives an article deleted later.
    """

    __tablename__ = "click_counts"

    issue_id: Mapped[int] = mapped_column(
        ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True
    )
    article_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    human: Mapped[int] = mapped_column(Integer, default=0)
    early: Mapped[int] = mapped_column(Integer, default=0)
    burst: Mapped[int] = mapped_column(Integer, default=0)
    head: Mapped[int] = mapped_column(Integer, default=0)
    scanner: Mapped[int] = mapped_column(Integer, default=0)


class ClickEvent(Base):
    """One reader's click, kept only in `per-reader` mode and only for the retention period.

    `reason` is empty for a human click, else the sign of a machine (as in ClickCount).
    """

    __tablename__ = "click_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"))
    article_id: Mapped[int] = mapped_column(Integer)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(index=True)
    reason: Mapped[str] = mapped_column(String(10), default="")


class OpenCount(Base):
    """Tracking-pixel loads per issue; never per reader (opens say little about anyone)."""

    __tablename__ = "open_counts"

    issue_id: Mapped[int] = mapped_column(
        ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    opens: Mapped[int] = mapped_column(Integer, default=0)


class ForgottenAddress(Base):
    """What remains of an erased subscriber: a keyed hash of the address, so that an import
    or `subscribers add` does not bring the address back by mistake."""

    __tablename__ = "forgotten_addresses"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    forgotten_at: Mapped[datetime]
