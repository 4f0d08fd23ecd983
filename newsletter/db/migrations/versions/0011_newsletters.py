"""several newsletters: a subscription per newsletter, and issues named by newsletter and week

Every subscriber becomes subscribed to the default newsletter with the standing, consent
record and dates they had; a bounced address keeps its subscription, since the suppression
is the address's. Issues, and the unsubscribe events of the one list there was, become the
default newsletter's. The default newsletter's slug comes from the caller (`weekly` unless the
configuration names another).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 03:00:00.000000
"""

import sqlalchemy as sa
from alembic import context, op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

STATUSES = ("active", "pending", "unsubscribed")


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

    with op.batch_alter_table("issues", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("newsletter", sa.String(length=40), nullable=False, server_default=slug)
        )
        batch_op.drop_constraint("uq_issues_week", type_="unique")
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
    """Back to one list: only the default newsletter's issues and subscriptions can go back."""
    slug = _default_slug()
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("sections")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("newsletter")
    op.execute(sa.text("DELETE FROM issues WHERE newsletter <> :slug").bindparams(slug=slug))
    with op.batch_alter_table("issues", schema=None) as batch_op:
        batch_op.drop_constraint("uq_issues_newsletter", type_="unique")
        batch_op.create_unique_constraint(op.f("uq_issues_week"), ["week"])
        batch_op.drop_column("newsletter")
    op.drop_index("ix_subscriptions_newsletter_status", table_name="subscriptions")
    op.drop_table("subscriptions")
