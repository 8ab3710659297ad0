"""case workflow: workflow columns, evaluation facts, reference data tables

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("inspector", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("due_at", sa.DateTime(), nullable=True))
        batch_op.create_index("ix_cases_status_department_created", ["status", "department", "created_at"])
        batch_op.create_index("ix_cases_department_created", ["department", "created_at"])
        batch_op.create_index("ix_cases_inspector_status", ["inspector", "status"])
        batch_op.create_index("ix_cases_due_at", ["due_at"])
        batch_op.create_index("ix_cases_category", ["category_kind", "category_code"])
        batch_op.create_index("ix_cases_type_status_created", ["case_type", "status", "created_at"])
    with op.batch_alter_table("case_history", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("ended_json", sa.Text(), nullable=True))

    op.create_table(
        "case_facts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("person", sa.String(length=64), nullable=False),
        sa.Column("department", sa.String(length=64), nullable=True),
        sa.Column("grid_cell", sa.String(length=15), nullable=True),
        sa.Column("on_time", sa.Boolean(), nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=True),
        sa.Column("flipped_at", sa.DateTime(), nullable=True),
        sa.Column("still_open", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_case_facts_case_id_cases"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_facts")),
    )
    with op.batch_alter_table("case_facts", schema=None) as batch_op:
        batch_op.create_index("ix_case_facts_case_id", ["case_id"])
        batch_op.create_index(
            "ix_case_facts_at_cover", ["at", "kind", "department", "still_open", "on_time", "ok", "flipped_at"]
        )

    op.create_table(
        "ref_categories",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("code", sa.String(length=5), nullable=False),
        sa.Column("class_code", sa.String(length=2), nullable=False),
        sa.Column("class_name", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("local", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "code", name=op.f("pk_ref_categories")),
    )
    op.create_table(
        "ref_areas",
        sa.Column("code", sa.String(length=12), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("parent_code", sa.String(length=12), nullable=True),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_ref_areas")),
    )
    op.create_table(
        "ref_grid_cells",
        sa.Column("grid_id", sa.String(length=15), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("inspector", sa.String(length=64), nullable=False),
        sa.Column("x", sa.Float(), nullable=True),
        sa.Column("y", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("grid_id", name=op.f("pk_ref_grid_cells")),
    )
    op.create_table(
        "ref_places",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("grid_id", sa.String(length=15), nullable=False),
        sa.Column("aliases", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_ref_places")),
    )
    op.create_table(
        "ref_departments",
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("parent_code", sa.String(length=40), nullable=True),
        sa.Column("phone", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_ref_departments")),
    )
    op.create_table(
        "ref_routing_rules",
        sa.Column("line", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("code", sa.String(length=5), nullable=False),
        sa.Column("area", sa.String(length=15), nullable=False),
        sa.Column("case_type", sa.String(length=16), nullable=False),
        sa.Column("department", sa.String(length=40), nullable=True),
        sa.Column("limits_json", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("line", name=op.f("pk_ref_routing_rules")),
    )
    op.create_table(
        "ref_holidays",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("workday", sa.Boolean(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_ref_holidays")),
    )


def downgrade() -> None:
    for table in ("ref_holidays", "ref_routing_rules", "ref_departments", "ref_places", "ref_grid_cells",
                  "ref_areas", "ref_categories"):
        op.drop_table(table)
    with op.batch_alter_table("case_facts", schema=None) as batch_op:
        batch_op.drop_index("ix_case_facts_at_cover")
        batch_op.drop_index("ix_case_facts_case_id")
    op.drop_table("case_facts")
    with op.batch_alter_table("case_history", schema=None) as batch_op:
        batch_op.drop_column("ended_json")
        batch_op.drop_column("version")
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index("ix_cases_type_status_created")
        batch_op.drop_index("ix_cases_category")
        batch_op.drop_index("ix_cases_due_at")
        batch_op.drop_index("ix_cases_inspector_status")
        batch_op.drop_index("ix_cases_department_created")
        batch_op.drop_index("ix_cases_status_department_created")
        batch_op.drop_column("due_at")
        batch_op.drop_column("inspector")
