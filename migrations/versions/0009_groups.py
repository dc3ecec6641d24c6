"""Groups: sets of employees (the people a door admits), keys bound to groups, and the groups a decision was
confined to in the audit trail and the brute-force counters.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

Existing keys are unbound: they keep reaching the whole gallery.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "groups",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("group_id", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ux_groups_group_id_lower", "groups", [sa.text("lower(group_id)")], unique=True)
    op.create_table(
        "group_members",
        sa.Column("group_pk", sa.Integer(), sa.ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("employee_pk", sa.Integer(), sa.ForeignKey("employees.id", ondelete="CASCADE"),
                  primary_key=True),
    )
    op.create_index("ix_group_members_employee", "group_members", ["employee_pk"])
    op.create_table(
        "api_key_groups",
        sa.Column("key_pk", sa.Integer(), sa.ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("group_pk", sa.Integer(), sa.ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
    )
    op.create_index("ix_api_key_groups_group", "api_key_groups", ["group_pk"])
    with op.batch_alter_table("api_keys") as table:
        table.add_column(sa.Column("bound", sa.Boolean(), nullable=False, server_default=sa.text("false")))
    with op.batch_alter_table("audit_log") as table:
        table.add_column(sa.Column("groups", sa.Text(), nullable=True))
    with op.batch_alter_table("verify_failures") as table:
        table.add_column(sa.Column("groups", sa.Text(), nullable=True))


def downgrade() -> None:
    # A bound key would reach the whole gallery without its bindings: it is revoked instead.
    op.execute("UPDATE api_keys SET revoked_at = CURRENT_TIMESTAMP WHERE bound AND revoked_at IS NULL")
    with op.batch_alter_table("verify_failures") as table:
        table.drop_column("groups")
    with op.batch_alter_table("audit_log") as table:
        table.drop_column("groups")
    with op.batch_alter_table("api_keys") as table:
        table.drop_column("bound")
    op.drop_table("api_key_groups")
    op.drop_table("group_members")
    op.drop_table("groups")
    op.execute("DELETE FROM gallery_changes WHERE action = 'group'")
