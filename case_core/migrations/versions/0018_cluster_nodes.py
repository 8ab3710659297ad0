"""cluster nodes: heartbeat table; node id on calls and recordings (issue 17)

Revision ID: 0018
Revises: 0017

- `cluster_nodes`: one row per `hotline serve` node of a cluster ([cluster] node_id): its
  SIP and web addresses, start, last heartbeat, live calls and the state asked of it
  (`up`, or `draining`: answer OPTIONS with 503, take no new calls, finish current ones).
- `calls.node_id`, `recordings.node_id`: the node that handled the call / wrote the file, so
  a node restarting after a crash recovers only its own interrupted calls.
"""
import sqlalchemy as sa
from alembic import op


revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cluster_nodes",
        sa.Column("node_id", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, server_default="up"),
        sa.Column("sip", sa.String(128), nullable=False, server_default=""),
        sa.Column("web", sa.String(255), nullable=False, server_default=""),
        sa.Column("started_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("active_calls", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("node_id", name="pk_cluster_nodes"),
    )
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("node_id", sa.String(32), nullable=True))
    with op.batch_alter_table("recordings") as batch:
        batch.add_column(sa.Column("node_id", sa.String(32), nullable=True))
    op.create_index("ix_calls_node_open", "calls", ["node_id", "ended_at"])


def downgrade() -> None:
    op.drop_index("ix_calls_node_open", table_name="calls")
    with op.batch_alter_table("recordings") as batch:
        batch.drop_column("node_id")
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("node_id")
    op.drop_table("cluster_nodes")
