"""Model upgrades without re-enrollment: the optional encrypted reference store, and the gallery's state (the
model every replica serves, and the next one being rolled out).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28

The state starts empty: the first replica to start sets the model it serves as the active one.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reference_photos",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("employee_pk", sa.Integer(), sa.ForeignKey("employees.id", ondelete="CASCADE"), nullable=False,
                  unique=True),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sqlite_autoincrement=True,  # ids never reused: app.cli.reembed tells a replaced photo by its id
    )
    op.create_table(
        "gallery_state",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("active_model", sa.String(64), nullable=True),
        sa.Column("next_model", sa.String(64), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("gallery_state")
    op.drop_table("reference_photos")
