"""field app: idempotency keys of the inspectors' phone submissions, inspectors' positions

Revision ID: 0015
Revises: 0014

The phone queues reports and step submissions while offline and sends them again when the
connection returns; `field_submissions` remembers each idempotency key with the case it made,
so a repeat gives the same case and never a second one. `inspector_positions` keeps each
on-duty inspector's last reported position (opt-in on the phone) for the map and for
assigning 核实/核查 to the nearest inspector.
"""
import sqlalchemy as sa
from alembic import op


revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "field_submissions",
        sa.Column("idempotency_key", sa.String(100), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("response_json", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
        sa.PrimaryKeyConstraint("idempotency_key", name="pk_field_submissions"),
    )
    op.create_table(
        "inspector_positions",
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("accuracy_m", sa.Float(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=False), nullable=False),
        sa.PrimaryKeyConstraint("username", name="pk_inspector_positions"),
    )


def downgrade() -> None:
    op.drop_table("inspector_positions")
    op.drop_table("field_submissions")
