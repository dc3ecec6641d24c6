"""Liveness: head-turn challenges (single-use, bound to the key that asked, expiring), keys that require one, and
the challenge's outcome in the audit trail.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

Existing keys do not require liveness.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "liveness_challenges",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("challenge_id", sa.String(32), nullable=False, unique=True),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("prompts", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_liveness_challenges_expires_at", "liveness_challenges", ["expires_at"])
    with op.batch_alter_table("api_keys") as table:
        table.add_column(sa.Column("liveness", sa.Boolean(), nullable=False, server_default=sa.text("false")))
    with op.batch_alter_table("audit_log") as table:
        table.add_column(sa.Column("liveness", sa.String(16), nullable=True))


def downgrade() -> None:
    # A key that required liveness would verify plain photos without the column: it is revoked instead.
    op.execute("UPDATE api_keys SET revoked_at = CURRENT_TIMESTAMP WHERE liveness AND revoked_at IS NULL")
    with op.batch_alter_table("audit_log") as table:
        table.drop_column("liveness")
    with op.batch_alter_table("api_keys") as table:
        table.drop_column("liveness")
    op.drop_table("liveness_challenges")
