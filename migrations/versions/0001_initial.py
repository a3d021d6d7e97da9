"""Initial catalog: tracks, track-level genre probabilities, segment timeline, meta.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

# Portable to PostgreSQL: SQLite's DDL is unchanged by the variants (its INTEGER is
# 64-bit, its TEXT holds the raw bytes of a non-UTF-8 path), while PostgreSQL gets
# 64-bit integers for byte sizes and nanosecond mtimes, and ``bytea`` for paths
# (see ``catalog.column_types.FsPath``).
PATH = sa.Text().with_variant(sa.LargeBinary(), "postgresql")
BIG = sa.Integer().with_variant(sa.BigInteger(), "postgresql")

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tracks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("path", PATH, nullable=False, unique=True),
        sa.Column("size", BIG, nullable=False),
        sa.Column("mtime_ns", BIG, nullable=False),
        sa.Column("content_hash", sa.String(64)),
        sa.Column("format", sa.String(16)),
        sa.Column("title", sa.Text),
        sa.Column("artist", sa.Text),
        sa.Column("album", sa.Text),
        sa.Column("track_number", sa.Integer),
        sa.Column("duration_s", sa.Float),
        sa.Column("sample_rate", sa.Integer),
        sa.Column("channels", sa.Integer),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("warning", sa.Text),
        sa.Column("model_id", sa.String(64)),
        sa.Column("genre", sa.String(64)),
        sa.Column("confidence", sa.Float),
        sa.Column("n_segments", sa.Integer),
        sa.Column("embedding", sa.LargeBinary),
        sa.Column("embedding_version", sa.Integer),
        sa.Column("analysed_at", sa.DateTime),
        sa.Column("added_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_tracks_content_hash", "tracks", ["content_hash"])
    op.create_index("ix_tracks_artist", "tracks", ["artist"])
    op.create_index("ix_tracks_album", "tracks", ["album"])
    op.create_index("ix_tracks_status", "tracks", ["status"])
    op.create_index("ix_tracks_genre", "tracks", ["genre"])

    op.create_table(
        "track_genres",
        sa.Column(
            "track_id",
            sa.Integer,
            sa.ForeignKey("tracks.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("genre", sa.String(64), primary_key=True),
        sa.Column("probability", sa.Float, nullable=False),
    )
    op.create_index("ix_track_genres_genre_prob", "track_genres", ["genre", "probability"])

    op.create_table(
        "segments",
        sa.Column(
            "track_id",
            sa.Integer,
            sa.ForeignKey("tracks.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("idx", sa.Integer, primary_key=True),
        sa.Column("start_s", sa.Float, nullable=False),
        sa.Column("end_s", sa.Float, nullable=False),
        sa.Column("genre", sa.String(64), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("probabilities", sa.LargeBinary, nullable=False),
    )

    op.create_table(
        "catalog_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("catalog_meta")
    op.drop_table("segments")
    op.drop_index("ix_track_genres_genre_prob", table_name="track_genres")
    op.drop_table("track_genres")
    for name in ("genre", "status", "album", "artist", "content_hash"):
        op.drop_index(f"ix_tracks_{name}", table_name="tracks")
    op.drop_table("tracks")
