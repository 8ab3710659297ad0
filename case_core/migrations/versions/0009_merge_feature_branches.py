"""merge the feature branches (SIP accounts, SMS, ACD, transcripts, callbacks, rollup)

Revision ID: 0009
Revises: 0003, 0004, 0005, 0006, 0007, 0008

Each feature got its own migration off 0001 while they were built in parallel; from here on
the history is one line again.
"""

revision = "0009"
down_revision = ("0003", "0004", "0005", "0006", "0007", "0008")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
