"""Explanations: Grad-CAM heatmap and band focus per track, embeddings per segment.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TRACK_COLUMNS = {
    # bytea on PostgreSQL, like every path (see catalog.column_types.FsPath)
    "heatmap_path": lambda: sa.Text().with_variant(sa.LargeBinary(), "postgresql"),
    "heatmap_genre": lambda: sa.String(64),
    "heatmap_start_s": sa.Float,
    "heatmap_end_s": sa.Float,
    "focus_low": sa.Float,
    "focus_mid": sa.Float,
    "focus_high": sa.Float,
}


def upgrade() -> None:
    with op.batch_alter_table("tracks") as batch:
        for name, kind in TRACK_COLUMNS.items():
            batch.add_column(sa.Column(name, kind()))
    with op.batch_alter_table("segments") as batch:
        batch.add_column(sa.Column("embedding", sa.LargeBinary))


def downgrade() -> None:
    with op.batch_alter_table("segments") as batch:
        batch.drop_column("embedding")
    with op.batch_alter_table("tracks") as batch:
        for name in TRACK_COLUMNS:
            batch.drop_column(name)
