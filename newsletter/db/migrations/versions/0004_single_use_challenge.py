"""a subscribe form's challenge counts once

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 23:50:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "used_challenges",
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("served_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("nonce", name=op.f("pk_used_challenges")),
    )
    with op.batch_alter_table("used_challenges", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_used_challenges_served_at"), ["served_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("used_challenges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_used_challenges_served_at"))
    op.drop_table("used_challenges")
