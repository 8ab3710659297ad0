"""geo: grid cell polygons, case positions

Revision ID: 0014
Revises: 0013

地理编码 (issue 13): a grid cell keeps its polygon (GeoJSON geometry, WGS-84 lon/lat) so a
position is located in its cell; a case keeps where it was found (`lat`, `lon`, WGS-84).
"""
import sqlalchemy as sa
from alembic import op


revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ref_grid_cells", schema=None) as batch_op:
        batch_op.add_column(sa.Column("geometry_json", sa.Text(), nullable=True))
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lat", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("lon", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_column("lon")
        batch_op.drop_column("lat")
    with op.batch_alter_table("ref_grid_cells", schema=None) as batch_op:
        batch_op.drop_column("geometry_json")
