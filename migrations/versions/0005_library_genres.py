"""Genres learnt from the library's tags: tag columns, models, predictions, tag backups.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tracks") as batch:
        batch.add_column(sa.Column("genre_tag_raw", sa.Text))
        batch.add_column(sa.Column("genre_tags", sa.Text))
        batch.add_column(sa.Column("genre_tag", sa.String(64)))
        batch.create_index("ix_tracks_genre_tag", ["genre_tag"])

    op.create_table(
        "genre_models",
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("embedding_model_id", sa.String(64), nullable=False),
        sa.Column("genres", sa.Text, nullable=False),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("coef", sa.LargeBinary, nullable=False),
        sa.Column("intercept", sa.LargeBinary, nullable=False),
        sa.Column("mean", sa.LargeBinary, nullable=False),
        sa.Column("scale", sa.LargeBinary, nullable=False),
        sa.Column("temperature", sa.Float, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("target_precision", sa.Float, nullable=False),
        sa.Column("shipped_threshold", sa.Float),
        sa.Column("min_tracks", sa.Integer, nullable=False),
        sa.Column("n_tracks", sa.Integer, nullable=False),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.Column("left_out", sa.Text, nullable=False),
        sa.Column("active", sa.Integer, nullable=False, server_default="1"),
    )
    op.create_index(
        "ix_genre_models_embedding_model_id", "genre_models", ["embedding_model_id"]
    )

    op.create_table(
        "library_predictions",
        sa.Column(
            "track_id", sa.Integer, sa.ForeignKey("tracks.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "model_version", sa.Integer,
            sa.ForeignKey("genre_models.version", ondelete="CASCADE"), nullable=False,
        ),
        sa.Column("genre", sa.String(64), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("probabilities", sa.LargeBinary, nullable=False),
    )  # fmt: skip
    op.create_index(
        "ix_library_predictions_genre_conf",
        "library_predictions",
        ["model_version", "genre", "confidence"],
    )

    op.create_table(
        "tag_backups",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "track_id", sa.Integer, sa.ForeignKey("tracks.id", ondelete="CASCADE"),
            nullable=False,
        ),
        # paths are bytea on PostgreSQL, as in 0001 (catalog.column_types.FsPath)
        sa.Column("path", sa.Text().with_variant(sa.LargeBinary(), "postgresql"), nullable=False),
        sa.Column("field", sa.String(16), nullable=False),
        sa.Column("old_values", sa.Text),
        sa.Column("encoding", sa.Integer),
        sa.Column("position", sa.Integer),
        sa.Column("new_values", sa.Text, nullable=False),
        sa.Column("written_at", sa.DateTime, nullable=False),
        sa.Column("undone_at", sa.DateTime),
    )  # fmt: skip
    op.create_index("ix_tag_backups_track_id", "tag_backups", ["track_id"])


def downgrade() -> None:
    op.drop_index("ix_tag_backups_track_id", table_name="tag_backups")
    op.drop_table("tag_backups")
    op.drop_index("ix_library_predictions_genre_conf", table_name="library_predictions")
    op.drop_table("library_predictions")
    op.drop_index("ix_genre_models_embedding_model_id", table_name="genre_models")
    op.drop_table("genre_models")
    with op.batch_alter_table("tracks") as batch:
        batch.drop_index("ix_tracks_genre_tag")
        batch.drop_column("genre_tag")
        batch.drop_column("genre_tags")
        batch.drop_column("genre_tag_raw")
