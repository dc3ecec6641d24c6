"""The gallery: employees and their reference templates.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "employees",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("employee_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_employees_employee_id", "employees", ["employee_id"], unique=True)
    op.create_table(
        "templates",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("employee_pk", sa.Integer(), sa.ForeignKey("employees.id", ondelete="CASCADE"), nullable=False),
        sa.Column("model_id", sa.String(64), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("employee_pk", "model_id", name="uq_templates_employee_model"),
    )
    op.create_index("ix_templates_employee_pk", "templates", ["employee_pk"])
    op.create_index("ix_templates_model_id", "templates", ["model_id"])


def downgrade() -> None:
    op.drop_index("ix_templates_model_id", table_name="templates")
    op.drop_index("ix_templates_employee_pk", table_name="templates")
    op.drop_table("templates")
    op.drop_index("ix_employees_employee_id", table_name="employees")
    op.drop_table("employees")
