"""kept-place callbacks: callers who left a queue keeping their place, durable across restarts

Revision ID: 0016
Revises: 0015

A caller who presses 1 in the queue ("call me back, keep my place") is stored here with the
queue, the number, the original enqueue time (their place) and a state. On start every
`pending` row goes back into its queue at that place; a row is marked `done` once, when the
callback is answered, or `moved` to the scheduled-callback list (`callbacks`) after
`[acd] callback_max_tries` failed tries or when it expires.
"""
import sqlalchemy as sa
from alembic import op


revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kept_callbacks",
        sa.Column("call_id", sa.String(255), nullable=False),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("caller", sa.String(64), nullable=False),
        sa.Column("number", sa.String(64), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("skill", sa.String(64), nullable=True),
        sa.Column("joined_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("last_agent", sa.String(64), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=False), nullable=False),
        sa.PrimaryKeyConstraint("call_id", name="pk_kept_callbacks"),
    )
    op.create_index("ix_kept_callbacks_state", "kept_callbacks", ["state"])


def downgrade() -> None:
    op.drop_index("ix_kept_callbacks_state", table_name="kept_callbacks")
    op.drop_table("kept_callbacks")
