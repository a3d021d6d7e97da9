"""OpenSubsonic: users and API keys, playlists, stars, plays; album artist, MBID, ISRC of tracks.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tracks") as batch:
        batch.add_column(sa.Column("album_artist", sa.Text))
        batch.add_column(sa.Column("mbid", sa.String(64)))
        batch.add_column(sa.Column("isrc", sa.String(32)))
        batch.create_index("ix_tracks_mbid", ["mbid"])
        batch.create_index("ix_tracks_isrc", ["isrc"])

    op.create_table(
        "subsonic_users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("password_secret", sa.Text),  # encrypted; NULL: token auth refused (41)
        sa.Column("admin", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "subsonic_api_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "user_id",
            sa.Integer,
            sa.ForeignKey("subsonic_users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "playlists",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "owner_id",
            sa.Integer,
            sa.ForeignKey("subsonic_users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("public", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("changed_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_playlists_owner_id", "playlists", ["owner_id"])
    op.create_table(
        "playlist_entries",
        sa.Column(
            "playlist_id",
            sa.Integer,
            sa.ForeignKey("playlists.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column(
            "track_id",
            sa.Integer,
            sa.ForeignKey("tracks.id", ondelete="CASCADE"),
            nullable=False,
        ),
    )
    op.create_table(
        "stars",
        sa.Column(
            "user_id",
            sa.Integer,
            sa.ForeignKey("subsonic_users.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("item_id", sa.String(64), primary_key=True),
        sa.Column("starred_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "plays",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "user_id",
            sa.Integer,
            sa.ForeignKey("subsonic_users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "track_id",
            sa.Integer,
            sa.ForeignKey("tracks.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("played_at", sa.DateTime, nullable=False),
        sa.Column("submission", sa.Boolean, nullable=False),
    )
    op.create_index("ix_plays_track_id", "plays", ["track_id"])
    op.create_index("ix_plays_user_id", "plays", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_plays_user_id", table_name="plays")
    op.drop_index("ix_plays_track_id", table_name="plays")
    op.drop_table("plays")
    op.drop_table("stars")
    op.drop_table("playlist_entries")
    op.drop_index("ix_playlists_owner_id", table_name="playlists")
    op.drop_table("playlists")
    op.drop_table("subsonic_api_keys")
    op.drop_table("subsonic_users")
    with op.batch_alter_table("tracks") as batch:
        batch.drop_index("ix_tracks_isrc")
        batch.drop_index("ix_tracks_mbid")
        batch.drop_column("isrc")
        batch.drop_column("mbid")
        batch.drop_column("album_artist")
