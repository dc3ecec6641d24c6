"""Abuse guards: employee ids unique regardless of case, failed verifications counted per employee and key,
and the threshold each verification used in the audit trail.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

The case-insensitive index fails on a gallery that already holds two ids differing only in case: the
migration stops and names them, so that an operator can merge or rename them first.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    clashes = op.get_bind().execute(sa.text(
        "SELECT lower(employee_id) FROM employees GROUP BY lower(employee_id) HAVING count(*) > 1")).scalars().all()
    if clashes:
        raise RuntimeError(f"employee ids that differ only in case must be merged or renamed first: {clashes[:20]}")
    op.create_index("ux_employees_employee_id_lower", "employees", [sa.text("lower(employee_id)")], unique=True)
    op.create_table(
        "verify_failures",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("employee_id", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=True),
    )
    op.create_index("ix_verify_failures_employee_at", "verify_failures", ["employee_id", "at"])
    op.create_index("ix_verify_failures_key_at", "verify_failures", ["key_id", "at"])
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("threshold", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("threshold")
    op.drop_table("verify_failures")
    op.drop_index("ux_employees_employee_id_lower", table_name="employees")
