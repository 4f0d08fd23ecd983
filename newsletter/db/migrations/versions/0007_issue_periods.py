"""issue approval and the section override

Revision ID: 0007
Revises: 0004
Create Date: 2026-12-01 09:00:00.000000

Issues stored before periods existed keep their meaning: the default close (Monday 00:00)
makes every period an ISO week, as they were. An issue is approved when `approved_at` is set;
none is, so every existing draft stays live. `overrides.section` holds the section an editor
put an article in, for the new `section` override kind.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0004"
branch_labels = None
depends_on = None

OLD_KINDS = ("feature", "exclude", "include", "move")
NEW_KINDS = (*OLD_KINDS, "section")


def _kinds(values: tuple[str, ...]) -> str:
    return f"kind IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    with op.batch_alter_table("issues", schema=None) as batch_op:
        batch_op.add_column(sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("overrides", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("section", sa.String(length=100), nullable=False, server_default="")
        )
        batch_op.drop_constraint(op.f("ck_overrides_override_kind"), type_="check")
        batch_op.create_check_constraint("override_kind", sa.text(_kinds(NEW_KINDS)))


def downgrade() -> None:
    op.execute("DELETE FROM overrides WHERE kind = 'section'")
    with op.batch_alter_table("overrides", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_overrides_override_kind"), type_="check")
        batch_op.create_check_constraint("override_kind", sa.text(_kinds(OLD_KINDS)))
        batch_op.drop_column("section")
    with op.batch_alter_table("issues", schema=None) as batch_op:
        batch_op.drop_column("approved_at")
