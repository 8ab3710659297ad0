"""category corrections: the agent saved a case under another category than suggested

Revision ID: 0012
Revises: 0011

`category_corrections` holds one row per desk-saved case whose category differs from the
suggestion for its description: the description (`text`), the suggested key (NULL when the
suggestion was 不确定) and the key the agent chose. `hotline extract train` retrains the
category model from the corpus plus these rows.
"""
from alembic import op
import sqlalchemy as sa


revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "category_corrections",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id", ondelete="CASCADE"), nullable=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("suggested", sa.String(40), nullable=True),
        sa.Column("chosen", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("category_corrections")
