"""case photos (现场照片): uploaded images stored by content hash, with their stage

Revision ID: 0011
Revises: 0010

`case_photos` holds one row per photo attached to a case. The image itself lives in the
photo store under `[storage] dir`/photos by its sha256 (`sha256` column); the thumbnail
beside it. `stage` is before (处置前), after (处置后) or report (上报).
"""
from alembic import op
import sqlalchemy as sa


revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "case_photos",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id", ondelete="CASCADE"), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("content_type", sa.String(32), nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("size_bytes", sa.Integer, nullable=False),
        sa.Column("uploaded_by", sa.String(64), nullable=False),
        sa.Column("uploaded_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_case_photos_case", "case_photos", ["case_id"])


def downgrade() -> None:
    op.drop_index("ix_case_photos_case", table_name="case_photos")
    op.drop_table("case_photos")
