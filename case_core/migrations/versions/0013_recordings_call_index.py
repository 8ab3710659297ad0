"""recordings by call: an index on recordings.call_id

Revision ID: 0013
Revises: 0012

The screen pop reads the recordings of the caller's last calls (`recordings.call_id IN …`)
while the phone rings; without an index that is a scan of every recording ever made.
"""
from alembic import op


revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recordings", schema=None) as batch_op:
        batch_op.create_index("ix_recordings_call_id", ["call_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("recordings", schema=None) as batch_op:
        batch_op.drop_index("ix_recordings_call_id")
