"""claim index holds only claimable rows

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 00:45:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

CLAIMABLE = "status IN ('queued', 'deferred')"
COLUMNS = ["issue_id", "status", "next_attempt_at"]


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_claim")
        batch_op.create_index(
            "ix_deliveries_claim",
            COLUMNS,
            unique=False,
            sqlite_where=sa.text(CLAIMABLE),
            postgresql_where=sa.text(CLAIMABLE),
        )


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_claim")
        batch_op.create_index("ix_deliveries_claim", COLUMNS, unique=False)
