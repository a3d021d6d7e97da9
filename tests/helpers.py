"""Small helpers shared by test modules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import select

from catalog.schema import Track
from catalog.store import Catalog
from embeddings.checkpoint import GenreModel
from ingest.pipeline import IngestOptions, IngestSummary, ingest


def run_ingest(roots, data_dir: Path, model: GenreModel, **options) -> IngestSummary:
    with Catalog(data_dir) as catalog:
        return ingest(list(roots), catalog, model, IngestOptions(workers=2, **options))


def tracks_by_path(data_dir: Path) -> dict[str, Track]:
    with Catalog(data_dir) as catalog, catalog.sessions() as s:
        return {t.path: t for t in s.scalars(select(Track))}


def assert_index_consistent(data_dir: Path) -> None:
    """FAISS on disk holds exactly the OK tracks' embeddings, equal to SQLite's blobs."""
    from catalog.index import VectorIndex

    rows = {t.id: t for t in tracks_by_path(data_dir).values()}
    ok = {i for i, t in rows.items() if t.status == "ok"}
    index = VectorIndex.load(data_dir / "index.faiss")
    assert set(index.ids().tolist()) == ok
    for track_id in ok:
        stored = np.frombuffer(rows[track_id].embedding, dtype=np.float32)
        np.testing.assert_allclose(index.vector(track_id), stored, rtol=0, atol=1e-6)
    with Catalog(data_dir) as catalog:
        assert catalog.index_health()["consistent"]
