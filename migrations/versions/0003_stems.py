"""Stem separation cache: one stem set per (audio content, model, settings), its stem files.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stem_sets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("settings_hash", sa.String(16), nullable=False),
        sa.Column("settings", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("directory", sa.Text),
        sa.Column("format", sa.String(8)),
        sa.Column("sample_rate", sa.Integer),
        sa.Column("channels", sa.Integer),
        sa.Column("frames", sa.Integer().with_variant(sa.BigInteger(), "postgresql")),
        sa.Column("device", sa.String(32)),
        sa.Column("compute_seconds", sa.Float),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("content_hash", "model", "settings_hash", name="uq_stem_sets_key"),
    )
    op.create_index("ix_stem_sets_content_hash", "stem_sets", ["content_hash"])
    op.create_index("ix_stem_sets_status", "stem_sets", ["status"])

    op.create_table(
        "stems",
        sa.Column(
            "stem_set_id",
            sa.Integer,
            sa.ForeignKey("stem_sets.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("path", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("stems")
    op.drop_index("ix_stem_sets_status", table_name="stem_sets")
    op.drop_index("ix_stem_sets_content_hash", table_name="stem_sets")
    op.drop_table("stem_sets")
