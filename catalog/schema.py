"""SQLAlchemy models of the catalog.

These classes describe the tables for queries; the tables themselves are created
and changed only by the Alembic migrations in ``migrations/``. SQLite is the source
of truth: each analysed track keeps its embedding as a float32 blob, and the FAISS
index on disk is a fast copy that can always be rebuilt from it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from catalog.column_types import BIG_INTEGER, FsPath, SafeText
from catalog.track_status import TrackStatus as TrackStatus  # where it has always been


class Base(DeclarativeBase):
    pass


class Track(Base):
    __tablename__ = "tracks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(FsPath, unique=True)
    size: Mapped[int] = mapped_column(BIG_INTEGER)
    mtime_ns: Mapped[int] = mapped_column(BIG_INTEGER)
    content_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    format: Mapped[str | None] = mapped_column(String(16))

    title: Mapped[str | None] = mapped_column(SafeText)
    artist: Mapped[str | None] = mapped_column(SafeText, index=True)
    album: Mapped[str | None] = mapped_column(SafeText, index=True)
    track_number: Mapped[int | None] = mapped_column(Integer)
    # From tags (migration 0004): the album's artist, the MusicBrainz recording id and the
    # ISRC, so Subsonic albums group by album artist and media servers can match songs.
    album_artist: Mapped[str | None] = mapped_column(SafeText)
    mbid: Mapped[str | None] = mapped_column(String(64), index=True)
    isrc: Mapped[str | None] = mapped_column(String(32), index=True)
    duration_s: Mapped[float | None] = mapped_column(Float)
    sample_rate: Mapped[int | None] = mapped_column(Integer)
    channels: Mapped[int | None] = mapped_column(Integer)

    status: Mapped[str] = mapped_column(String(16), index=True)
    error: Mapped[str | None] = mapped_column(SafeText)
    warning: Mapped[str | None] = mapped_column(SafeText)
    model_id: Mapped[str | None] = mapped_column(String(64))
    genre: Mapped[str | None] = mapped_column(String(64), index=True)
    confidence: Mapped[float | None] = mapped_column(Float)
    n_segments: Mapped[int | None] = mapped_column(Integer)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The index version at which this row last entered or left the index (analysed,
    # restored, failed, gone missing): what another process's index must catch up on.
    embedding_version: Mapped[int | None] = mapped_column(Integer)

    # Explanation of the predicted genre (migration 0002): a Grad-CAM heatmap over a
    # representative window and the share of its mass in each frequency band.
    heatmap_path: Mapped[str | None] = mapped_column(FsPath)  # relative to the data dir (0006)
    heatmap_genre: Mapped[str | None] = mapped_column(String(64))
    heatmap_start_s: Mapped[float | None] = mapped_column(Float)
    heatmap_end_s: Mapped[float | None] = mapped_column(Float)
    focus_low: Mapped[float | None] = mapped_column(Float)
    focus_mid: Mapped[float | None] = mapped_column(Float)
    focus_high: Mapped[float | None] = mapped_column(Float)
    # Waveform overview (migration 0006): float16 (min, max) pairs over a few hundred
    # equal slices of the track, so a player view draws without decoding the file.
    overview: Mapped[bytes | None] = mapped_column(LargeBinary)

    # The file's genre tag (migration 0005): the raw values as a JSON list (NULL: not
    # read yet, "[]": none), the normalised genres as a JSON list, and the first of them.
    genre_tag_raw: Mapped[str | None] = mapped_column(SafeText)
    genre_tags: Mapped[str | None] = mapped_column(Text)
    genre_tag: Mapped[str | None] = mapped_column(String(64), index=True)

    analysed_at: Mapped[datetime | None] = mapped_column(DateTime)
    added_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)

    genres: Mapped[list[TrackGenre]] = relationship(
        back_populates="track",
        cascade="all, delete-orphan",
        order_by="TrackGenre.probability.desc()",
    )
    segments: Mapped[list[Segment]] = relationship(
        back_populates="track", cascade="all, delete-orphan", order_by="Segment.idx"
    )


class TrackGenre(Base):
    """Track-level (aggregated) probability of one genre."""

    __tablename__ = "track_genres"
    __table_args__ = (Index("ix_track_genres_genre_prob", "genre", "probability"),)

    track_id: Mapped[int] = mapped_column(
        ForeignKey("tracks.id", ondelete="CASCADE"), primary_key=True
    )
    genre: Mapped[str] = mapped_column(String(64), primary_key=True)
    probability: Mapped[float] = mapped_column(Float)

    track: Mapped[Track] = relationship(back_populates="genres")


class Segment(Base):
    """Prediction for one 3-second segment: the track's genre timeline."""

    __tablename__ = "segments"

    track_id: Mapped[int] = mapped_column(
        ForeignKey("tracks.id", ondelete="CASCADE"), primary_key=True
    )
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    genre: Mapped[str] = mapped_column(String(64))
    confidence: Mapped[float] = mapped_column(Float)
    probabilities: Mapped[bytes] = mapped_column(LargeBinary)  # float32 per genre, model order
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)  # fp16, projected (0002)

    track: Mapped[Track] = relationship(back_populates="segments")


class CatalogMeta(Base):
    """Key/value facts about the catalog as a whole (index version, active model)."""

    __tablename__ = "catalog_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class StemStatus:
    """Values of ``stem_sets.status``."""

    OK = "ok"  # every stem file was written; ``stems`` lists them
    FAILED = "failed"  # separation failed; ``error`` says why; batch runs skip it until retried

    ALL = (OK, FAILED)


class StemSet(Base):
    """One separation of one audio content by one model with one group of settings.

    Keyed by what determines the result (the content hash, not the track id or path),
    so a moved or renamed file, or a second copy, reuses the stems and an edited file
    does not. Paths are relative to the data directory, so the directory can move.
    """

    __tablename__ = "stem_sets"
    __table_args__ = (
        UniqueConstraint("content_hash", "model", "settings_hash", name="uq_stem_sets_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    model: Mapped[str] = mapped_column(String(128))
    settings_hash: Mapped[str] = mapped_column(String(16))
    settings: Mapped[str] = mapped_column(Text)  # JSON of the settings hashed into the key
    status: Mapped[str] = mapped_column(String(16), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    directory: Mapped[str | None] = mapped_column(Text)  # relative to the data directory
    format: Mapped[str | None] = mapped_column(String(8))
    sample_rate: Mapped[int | None] = mapped_column(Integer)
    channels: Mapped[int | None] = mapped_column(Integer)
    frames: Mapped[int | None] = mapped_column(BIG_INTEGER)
    device: Mapped[str | None] = mapped_column(String(32))
    compute_seconds: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)

    stems: Mapped[list[Stem]] = relationship(
        back_populates="stem_set", cascade="all, delete-orphan", order_by="Stem.name"
    )


class Stem(Base):
    """One stem file (vocals, drums, bass, other, ...) of a stem set."""

    __tablename__ = "stems"

    stem_set_id: Mapped[int] = mapped_column(
        ForeignKey("stem_sets.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    path: Mapped[str] = mapped_column(Text)  # relative to the data directory

    stem_set: Mapped[StemSet] = relationship(back_populates="stems")


# -- OpenSubsonic (migration 0004) --------------------------------------------------------


class SubsonicUser(Base):
    """A Subsonic login. ``password_hash`` checks ``p=``; ``password_secret`` (encrypted
    with the data directory's key, see ``catalog.subsonic_store``) answers token auth."""

    __tablename__ = "subsonic_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    password_secret: Mapped[str | None] = mapped_column(Text)
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class SubsonicApiKey(Base):
    """An API key (the ``apiKeyAuthentication`` extension), kept as its SHA-256 only."""

    __tablename__ = "subsonic_api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("subsonic_users.id", ondelete="CASCADE"))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Playlist(Base):
    __tablename__ = "playlists"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(
        ForeignKey("subsonic_users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(Text)
    comment: Mapped[str | None] = mapped_column(Text)
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    changed_at: Mapped[datetime] = mapped_column(DateTime)


class PlaylistEntry(Base):
    __tablename__ = "playlist_entries"

    playlist_id: Mapped[int] = mapped_column(
        ForeignKey("playlists.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    track_id: Mapped[int] = mapped_column(ForeignKey("tracks.id", ondelete="CASCADE"))


class Star(Base):
    """A starred song, album or artist, by its Subsonic id (``tr-``, ``al-``, ``ar-``)."""

    __tablename__ = "stars"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("subsonic_users.id", ondelete="CASCADE"), primary_key=True
    )
    item_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    starred_at: Mapped[datetime] = mapped_column(DateTime)


class Play(Base):
    """One scrobble: a play (``submission``) or a now-playing notice."""

    __tablename__ = "plays"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("subsonic_users.id", ondelete="CASCADE"), index=True
    )
    track_id: Mapped[int] = mapped_column(ForeignKey("tracks.id", ondelete="CASCADE"), index=True)
    played_at: Mapped[datetime] = mapped_column(DateTime)
    submission: Mapped[bool] = mapped_column(Boolean)
class GenreModel(Base):
    """One fit of ``sonic learn-genres`` (migration 0005): versioned, the newest active.

    Arrays are float32 blobs (see :class:`catalog.records.GenreModelRecord`).
    """

    __tablename__ = "genre_models"

    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    embedding_model_id: Mapped[str] = mapped_column(String(64), index=True)
    genres: Mapped[str] = mapped_column(Text)  # JSON list, the order of the rows of coef
    dim: Mapped[int] = mapped_column(Integer)
    coef: Mapped[bytes] = mapped_column(LargeBinary)
    intercept: Mapped[bytes] = mapped_column(LargeBinary)
    mean: Mapped[bytes] = mapped_column(LargeBinary)
    scale: Mapped[bytes] = mapped_column(LargeBinary)
    temperature: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    target_precision: Mapped[float] = mapped_column(Float)
    shipped_threshold: Mapped[float | None] = mapped_column(Float)
    min_tracks: Mapped[int] = mapped_column(Integer)
    n_tracks: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[str] = mapped_column(Text)  # JSON
    left_out: Mapped[str] = mapped_column(Text)  # JSON {genre: tracks}
    active: Mapped[int] = mapped_column(Integer, default=1)


class LibraryPrediction(Base):
    """The library model's genre for one track (0005); ``source`` 'cv' for a tagged track.

    A track whose tag trained the model is predicted by the cross-validation fold
    that did not see it, so a wrong tag is not simply repeated back.
    """

    __tablename__ = "library_predictions"
    __table_args__ = (
        Index("ix_library_predictions_genre_conf", "model_version", "genre", "confidence"),
    )

    track_id: Mapped[int] = mapped_column(
        ForeignKey("tracks.id", ondelete="CASCADE"), primary_key=True
    )
    model_version: Mapped[int] = mapped_column(
        ForeignKey("genre_models.version", ondelete="CASCADE")
    )
    genre: Mapped[str] = mapped_column(String(64))
    confidence: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(8))  # "cv" or "model"
    probabilities: Mapped[bytes] = mapped_column(LargeBinary)  # float32, the model's genre order


class TagBackup(Base):
    """A file's genre field as it was before ``sonic tag-genres --apply`` wrote it (0005).

    ``field`` names the frame or key written (TCON, GENRE, ©gen); ``old_values`` is a
    JSON list of the exact strings (null: the field was absent); ``encoding`` the ID3
    text encoding and ``position`` where a Vorbis comment's genre entries stood, so
    ``--undo`` writes back the same bytes in the same place.
    """

    __tablename__ = "tag_backups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    track_id: Mapped[int] = mapped_column(ForeignKey("tracks.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(FsPath)
    field: Mapped[str] = mapped_column(String(16))
    old_values: Mapped[str | None] = mapped_column(SafeText)
    encoding: Mapped[int | None] = mapped_column(Integer)
    position: Mapped[int | None] = mapped_column(Integer)  # Vorbis: index of the first entry
    new_values: Mapped[str] = mapped_column(SafeText)
    written_at: Mapped[datetime] = mapped_column(DateTime)
    undone_at: Mapped[datetime | None] = mapped_column(DateTime)
