"""several newsletters: a subscription per newsletter, and issues named by newsletter and week

Every subscriber becomes subscribed to the default newsletter with the standing, consent
record and dates they had; a bounced address keeps its subscription, since the suppression
is the address's. Issues, and the unsubscribe events of the one list there was, become the
default newsletter's. The default newsletter's slug comes from the caller (`weekly` unless the
configuration names another).

On SQLite, changing the issues' unique constraint rebuilds the table, and dropping the old
table deletes, by cascade, every row that refers to it (deliveries, selections, overrides,
counts) while foreign keys are enforced, as they are inside the migration's transaction,
where they cannot be switched off: those rows are set aside and put back.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 03:00:00.000000
"""

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import context, op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

STATUSES = ("active", "pending", "unsubscribed")
# The name 0001 gave the old one-issue-per-week rule, and what an unnamed one is called here.
WEEK_RULE = "uq_issues_week"


def _default_slug() -> str:
    slug = context.config.attributes.get("default_newsletter", "weekly")
    assert isinstance(slug, str)
    return slug


def upgrade() -> None:
    slug = _default_slug()
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("newsletter", sa.String(length=40), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                *STATUSES,
                name="subscription_status",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("sections", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("unsubscribed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("consent_source", sa.String(length=40), nullable=False),
        sa.Column("consent_text", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_subscriptions_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
        sa.UniqueConstraint(
            "subscriber_id", "newsletter", name=op.f("uq_subscriptions_subscriber_id")
        ),
    )
    op.create_index("ix_subscriptions_newsletter_status", "subscriptions", ["newsletter", "status"])
    op.execute(
        sa.text(
            "INSERT INTO subscriptions (subscriber_id, newsletter, status, sections, created_at,"
            " updated_at, unsubscribed_at, consent_source, consent_text)"
            " SELECT id, :slug, CASE status WHEN 'bounced' THEN 'active' ELSE status END, '',"
            " subscribed_at, updated_at, unsubscribed_at, consent_source, consent_text"
            " FROM subscribers"
        ).bindparams(slug=slug)
    )

    week_rule = _week_rule()
    with _rows_referring_to_issues_kept():
        with op.batch_alter_table(
            "issues", schema=None, naming_convention={"uq": "uq_%(table_name)s_%(column_0_name)s"}
        ) as batch_op:
            batch_op.add_column(
                sa.Column("newsletter", sa.String(length=40), nullable=False, server_default=slug)
            )
            batch_op.drop_constraint(week_rule, type_="unique")
            batch_op.create_unique_constraint(op.f("uq_issues_newsletter"), ["newsletter", "week"])
        with op.batch_alter_table("issues", schema=None) as batch_op:
            batch_op.alter_column("newsletter", server_default=None)

    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("newsletter", sa.String(length=40), nullable=False, server_default="")
        )
    op.execute(
        sa.text(
            "UPDATE events SET newsletter = :slug"
            " WHERE kind IN ('subscribed', 'confirmed', 'unsubscribed', 'resubscribed')"
        ).bindparams(slug=slug)
    )

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sections", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    """Back to one list: only the default newsletter's issues and subscriptions can go back.

    The one list is the default newsletter, so an address that is not subscribed to it (a
    reader of another newsletter only, or one who left it) must not be an active or pending
    subscriber of it afterwards.
    """
    slug = _default_slug()
    op.execute(
        sa.text(
            "UPDATE subscribers SET status = 'unsubscribed', unsubscribed_at = COALESCE("
            "(SELECT s.unsubscribed_at FROM subscriptions s"
            " WHERE s.subscriber_id = subscribers.id AND s.newsletter = :slug), updated_at)"
            " WHERE status IN ('active', 'pending') AND NOT EXISTS (SELECT 1 FROM subscriptions s"
            " WHERE s.subscriber_id = subscribers.id AND s.newsletter = :slug"
            " AND s.status IN ('active', 'pending'))"
        ).bindparams(slug=slug)
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("sections")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("newsletter")
    op.execute(sa.text("DELETE FROM issues WHERE newsletter <> :slug").bindparams(slug=slug))
    with _rows_referring_to_issues_kept(), op.batch_alter_table("issues", schema=None) as batch_op:
        batch_op.drop_constraint("uq_issues_newsletter", type_="unique")
        batch_op.create_unique_constraint(op.f(WEEK_RULE), ["week"])
        batch_op.drop_column("newsletter")
    op.drop_index("ix_subscriptions_newsletter_status", table_name="subscriptions")
    op.drop_table("subscriptions")


def _week_rule() -> str:
    """The old unique constraint on `issues.week` under whatever name the database gave it
    (a database not made by these migrations may call it `issues_week_key`); SQLite may
    keep it unnamed, and the rebuild then knows it by `WEEK_RULE`."""
    for rule in sa.inspect(op.get_bind()).get_unique_constraints("issues"):
        if rule["column_names"] == ["week"]:
            return rule["name"] or WEEK_RULE
    raise RuntimeError("the issues table has no unique constraint on week to replace")


@contextmanager
def _rows_referring_to_issues_kept() -> Iterator[None]:
    """Put back, after SQLite has rebuilt `issues`, every row of the tables that refer to it."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        yield
        return
    tables = (
        bind.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
        )
        .scalars()
        .all()
    )
    children = [
        table
        for table in tables
        if any(
            key[2] == "issues"
            for key in bind.exec_driver_sql(f'PRAGMA foreign_key_list("{table}")').all()
        )
    ]
    # The names come from the schema itself, never from input.
    for table in children:
        bind.exec_driver_sql(f'CREATE TEMP TABLE "kept_{table}" AS SELECT * FROM "{table}"')  # noqa: S608
    yield
    for table in children:
        bind.exec_driver_sql(f'DELETE FROM "{table}"')  # noqa: S608
        bind.exec_driver_sql(f'INSERT INTO "{table}" SELECT * FROM temp."kept_{table}"')  # noqa: S608
        bind.exec_driver_sql(f'DROP TABLE temp."kept_{table}"')
