"""A 2-D map of the library: every indexed track's embedding projected to a plane.

PCA (NumPy's SVD) always; UMAP when ``umap-learn`` is installed and asked for.
Large libraries are sampled (evenly, reproducibly) to ``max_points``: a scatter of
more points than that tells nothing more and costs the browser.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from catalog.schema import Track
from catalog.store import Catalog

METHODS = ("pca", "umap")


def umap_available() -> bool:
    try:
        import umap  # noqa: F401
    except ImportError:
        return False
    return True


def project(vectors: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """(n, 2) coordinates for (n, dim) vectors."""
    if method not in METHODS:
        raise ValueError(f"unknown projection {method!r}; choose one of {', '.join(METHODS)}")
    n = len(vectors)
    if n == 0:
        return np.zeros((0, 2), dtype=np.float32)
    if n < 3:
        return np.column_stack([np.arange(n, dtype=np.float32), np.zeros(n, np.float32)])
    if method == "umap":
        if not umap_available():
            raise ValueError("UMAP needs the umap-learn package; use method=pca")
        import umap

        reducer = umap.UMAP(n_components=2, metric="cosine", random_state=seed)
        return reducer.fit_transform(vectors).astype(np.float32)
    centred = vectors.astype(np.float64) - vectors.mean(axis=0, dtype=np.float64)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    coords = centred @ vt[:2].T
    # Fix the sign of each axis so the same library gives the same picture every time.
    signs = np.sign(coords[np.abs(coords).argmax(axis=0), [0, 1]])
    return (coords * np.where(signs == 0, 1, signs)).astype(np.float32)


def library_map(catalog: Catalog, method: str = "pca", max_points: int = 20_000) -> dict:
    """Points ``{id, x, y, genre, title, artist, album, confidence}`` for a scatter plot."""
    ids, vectors = catalog.index().vectors()
    total = len(ids)
    if total > max_points:
        keep = np.linspace(0, total - 1, max_points).astype(np.int64)
        ids, vectors = ids[keep], vectors[keep]
    coords = project(vectors, method)
    rows = {}
    with catalog.sessions() as s:
        id_list = ids.tolist()
        for start in range(0, len(id_list), 5000):
            chunk = id_list[start : start + 5000]
            columns = (Track.id, Track.genre, Track.title, Track.artist, Track.album,
                       Track.confidence, Track.path)  # fmt: skip
            rows.update({r.id: r for r in s.execute(select(*columns).where(Track.id.in_(chunk)))})
    points = []
    for track_id, (x, y) in zip(ids.tolist(), coords.tolist(), strict=True):
        row = rows.get(track_id)
        if row is None:
            continue
        points.append(
            {
                "id": track_id,
                "x": x,
                "y": y,
                "genre": row.genre,
                "title": row.title or row.path.rsplit("/", 1)[-1],
                "artist": row.artist,
                "album": row.album,
                "confidence": row.confidence,
            }
        )
    return {"method": method, "total": total, "shown": len(points), "points": points}
