"""SQLAlchemy models of the catalog.

These classes describe the tables for queries; the tables themselves are created
and changed only by the Alembic migrations in ``migrations/``. SQLite is the source
of truth: each analysed track keeps its embedding as a float32 blob, and the FAISS
index on disk is a fast copy that can always be rebuilt from it.
"""

from __future__ import annotations

import os
from datetime import datetime

from sqlalchemy import (
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
from sqlalchemy.types import TypeDecorator

from catalog.paths import display_path, path_is_text


class FsPath(TypeDecorator):
    """A file path stored losslessly, whatever bytes its name holds.

    POSIX names are bytes and old libraries hold Latin-1 ones; Python decodes those
    bytes to lone surrogates, which SQLite's UTF-8 text refuses. A name that is valid
    UTF-8 is stored as TEXT, as always; any other is stored as its raw bytes (SQLite
    keeps a BLOB in a TEXT column as it is) and read back with ``os.fsdecode``, so
    it names the same file again. Comparisons bind the same way, so ``path == x``
    still finds it. Existing catalogs need no migration.
    """

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if isinstance(value, str) and not path_is_text(value):
            return os.fsencode(value)
        return value

    def process_result_value(self, value, dialect):
        if isinstance(value, bytes):
            return os.fsdecode(value)
        return value


class SafeText(TypeDecorator):
    """Free text that may quote an undecodable file name (an error, a tag): shown escaped.

    Unlike a path, such text is only ever shown, so its odd bytes become ``\\xNN``
    escapes (:func:`catalog.paths.display_path`) instead of failing the transaction.
    """

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if isinstance(value, str) and not path_is_text(value):
            return display_path(value)
        return value


class Base(DeclarativeBase):
    pass


class TrackStatus:
    """Values of ``tracks.status``."""

    OK = "ok"  # analysed; embedding stored and indexed
    FAILED = "failed"  # could not be analysed; ``error`` says why; retried when the file changes
    MISSING = "missing"  # the file is gone; row kept so a reappearing/moved file keeps its id

    ALL = (OK, FAILED, MISSING)


class Track(Base):
    __tablename__ = "tracks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(FsPath, unique=True)
    size: Mapped[int] = mapped_column(Integer)
    mtime_ns: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    format: Mapped[str | None] = mapped_column(String(16))

    title: Mapped[str | None] = mapped_column(SafeText)
    artist: Mapped[str | None] = mapped_column(SafeText, index=True)
    album: Mapped[str | None] = mapped_column(SafeText, index=True)
    track_number: Mapped[int | None] = mapped_column(Integer)
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
    frames: Mapped[int | None] = mapped_column(Integer)
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
