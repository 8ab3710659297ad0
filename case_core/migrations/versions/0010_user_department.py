"""users belong to a department (处置部门 staff see and act on their own department's cases)

Revision ID: 0010
Revises: 0009

`users.department` holds a department code from the reference data, or NULL for staff who
work across departments (shift leads, dispatchers, commanders) and for department users
created before this revision (they keep seeing every department until one is set).
"""
from alembic import op
import sqlalchemy as sa


revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("department", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("department")
