"""transcripts of recordings and their per-recording status

Revision ID: 0006
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "transcripts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("recording_id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=255), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("channel", sa.Integer(), nullable=False),
        sa.Column("start_s", sa.Float(), nullable=False),
        sa.Column("end_s", sa.Float(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("norm_text", sa.Text(), nullable=False),
        sa.Column("engine", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["recording_id"], ["recordings.id"],
                                name=op.f("fk_transcripts_recording_id_recordings"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"],
                                name=op.f("fk_transcripts_case_id_cases"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transcripts")),
    )
    op.create_index("ix_transcripts_recording_id", "transcripts", ["recording_id", "start_s"])
    op.create_index("ix_transcripts_call_id", "transcripts", ["call_id"])
    op.create_index("ix_transcripts_case_id", "transcripts", ["case_id"])
    op.create_table(
        "transcript_jobs",
        sa.Column("recording_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("engine", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("language", sa.String(length=8), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("rtf", sa.Float(), nullable=True),
        sa.Column("norm_text", sa.Text(), nullable=False),
        sa.Column("queued_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["recording_id"], ["recordings.id"],
                                name=op.f("fk_transcript_jobs_recording_id_recordings"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("recording_id", name=op.f("pk_transcript_jobs")),
    )
    op.create_index("ix_transcript_jobs_status", "transcript_jobs", ["status"])


def downgrade() -> None:
    op.drop_index("ix_transcript_jobs_status", table_name="transcript_jobs")
    op.drop_table("transcript_jobs")
    op.drop_index("ix_transcripts_case_id", table_name="transcripts")
    op.drop_index("ix_transcripts_call_id", table_name="transcripts")
    op.drop_index("ix_transcripts_recording_id", table_name="transcripts")
    op.drop_table("transcripts")
