"""Anonymous refusals aggregated: an audit row may stand for several refusals (count) from one source.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

Existing rows each stand for one event (count 1) from an unrecorded source. A downgrade keeps one row per
aggregated group: the count and source go.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as table:
        table.add_column(sa.Column("count", sa.Integer(), nullable=False, server_default="1"))
        table.add_column(sa.Column("source", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as table:
        table.drop_column("source")
        table.drop_column("count")
