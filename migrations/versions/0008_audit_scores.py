"""Identify's audit rows keep the AS-norm score and the rule that decided, beside the distance and threshold.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

Existing rows were decided by distance: their rule is left empty (null), as is every row that is not a
decision of /identify.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as table:
        table.add_column(sa.Column("score", sa.Float(), nullable=True))
        table.add_column(sa.Column("rule", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as table:
        table.drop_column("rule")
        table.drop_column("score")
