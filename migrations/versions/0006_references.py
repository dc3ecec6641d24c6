"""More than one reference per employee: templates and stored photos get a slot (0 is the enrollment's photo,
1 and up the references added to it), unique per employee and model, or per employee.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29

Existing rows are slot 0: every employee keeps the one reference they had.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# 0005 left reference_photos' unique constraint on employee_pk unnamed: this names it on SQLite, where the
# table is copied, so that it can be dropped; PostgreSQL named it itself.
NAMES = {"uq": "%(table_name)s_%(column_0_name)s_key"}
# Both tables refer to employees, whose lower(employee_id) index SQLAlchemy cannot reflect (it warns); the copy
# needs only the foreign key's column name, not the employees table.
ONLY_THIS_TABLE = {"resolve_fks": False}


def upgrade() -> None:
    with op.batch_alter_table("templates", reflect_kwargs=ONLY_THIS_TABLE) as table:
        table.add_column(sa.Column("slot", sa.Integer(), nullable=False, server_default="0"))
        table.drop_constraint("uq_templates_employee_model", type_="unique")
        table.create_unique_constraint("uq_templates_employee_model_slot", ["employee_pk", "model_id", "slot"])
    with op.batch_alter_table("reference_photos", naming_convention=NAMES, reflect_kwargs=ONLY_THIS_TABLE,
                              table_kwargs={"sqlite_autoincrement": True}) as table:
        table.add_column(sa.Column("slot", sa.Integer(), nullable=False, server_default="0"))
        table.drop_constraint("reference_photos_employee_pk_key", type_="unique")
        table.create_unique_constraint("uq_reference_photos_employee_slot", ["employee_pk", "slot"])


def downgrade() -> None:
    # Back to one reference: the added ones (slot > 0) go.
    op.execute("DELETE FROM reference_photos WHERE slot > 0")
    op.execute("DELETE FROM templates WHERE slot > 0")
    with op.batch_alter_table("reference_photos", reflect_kwargs=ONLY_THIS_TABLE,
                              table_kwargs={"sqlite_autoincrement": True}) as table:
        table.drop_constraint("uq_reference_photos_employee_slot", type_="unique")
        table.create_unique_constraint("reference_photos_employee_pk_key", ["employee_pk"])
        table.drop_column("slot")
    with op.batch_alter_table("templates", reflect_kwargs=ONLY_THIS_TABLE) as table:
        table.drop_constraint("uq_templates_employee_model_slot", type_="unique")
        table.create_unique_constraint("uq_templates_employee_model", ["employee_pk", "model_id"])
        table.drop_column("slot")
