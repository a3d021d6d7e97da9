"""Radio playlists, the library map, filtered similarity and index reloads, on records only.

The catalog is filled through ``record_analysis`` with chosen embeddings and tags,
so the expected answers are known exactly (no audio, no model).
"""

from __future__ import annotations

import numpy as np
import pytest

from catalog.playlists import radio, to_m3u
from catalog.projection import library_map, project
from catalog.queries import TrackNotFound, similar
from catalog.records import Analysis, AudioFacts, FileFacts, Tags
from catalog.store import Catalog
from catalog.why_similar import why_similar

GENRES = ["blues", "jazz", "rock"]


def add(catalog: Catalog, n: int, vector, artist, album, genre=0, content=None) -> int:
    probs = np.full(3, 0.1, dtype=np.float32)
    probs[genre] = 0.8
    v = np.asarray(vector, dtype=np.float32)
    return catalog.record_analysis(
        FileFacts(f"/music/{n}.flac", 100, n, content or f"hash{n}", "flac"),
        Tags(f"t{n}", artist, album, n, 30.0),
        AudioFacts(30.0, 44100, 2),
        Analysis("m", GENRES, probs, v / np.linalg.norm(v), np.stack([probs, probs]), 3.0),
    )


@pytest.fixture
def catalog(tmp_path):
    with Catalog(tmp_path / "data") as cat:
        cat.activate_model("m", GENRES, 4)
        yield cat


def test_radio_alternates_artists_and_albums(catalog):
    # Closest to the seed: two more by the seed's artist, then others.
    seed = add(catalog, 1, [1, 0, 0, 0], "A", "a1")
    add(catalog, 2, [0.99, 0.1, 0, 0], "A", "a1")
    add(catalog, 3, [0.98, 0.15, 0, 0], "A", "a2")
    add(catalog, 4, [0.9, 0, 0.3, 0], "B", "b1")
    add(catalog, 5, [0.85, 0, 0.4, 0], "C", "c1")
    add(catalog, 6, [0.8, 0, 0, 0.5], "B", "b1")
    data = radio(catalog, seed, n=6)
    order = [t["artist"] for t in data["tracks"]]
    assert order[0] == "A" and all(a != b for a, b in zip(order, order[1:], strict=False))
    assert data["relaxed"] == 0
    assert [t["id"] for t in data["tracks"]][:3] == [seed, 4, 2]  # best allowed each time
    assert len(radio(catalog, seed, n=3)["tracks"]) == 3
    with pytest.raises(TrackNotFound):
        radio(catalog, 999, n=3)


def test_radio_relaxes_only_when_it_must_and_skips_duplicate_audio(catalog):
    seed = add(catalog, 1, [1, 0, 0, 0], "A", "x")
    add(catalog, 2, [0.9, 0.1, 0, 0], "A", "x")
    add(catalog, 3, [0.8, 0.2, 0, 0], "A", "x")
    add(catalog, 4, [0.99, 0.01, 0, 0], "Z", "z", content="hash1")  # a copy of the seed
    data = radio(catalog, seed, n=5)
    assert [t["id"] for t in data["tracks"]] == [seed, 2, 3]
    assert data["relaxed"] == 2


def test_m3u_lines():
    text = to_m3u(
        [
            {"id": 1, "path": "/m/x.mp3", "artist": "A", "title": "T", "duration_s": 61.6},
            {"id": 2, "path": "/m/odd\nname.mp3", "artist": None, "title": None,
             "duration_s": None},
        ],
        lambda t: t["path"],
    )  # fmt: skip
    assert text.splitlines() == [
        "#EXTM3U", "#EXTINF:62,A - T", "/m/x.mp3", "#EXTINF:-1,odd name.mp3", "/m/odd name.mp3",
    ]  # fmt: skip


def test_similar_filters_and_comparison(catalog):
    seed = add(catalog, 1, [1, 0, 0, 0], "A", "a", genre=0)
    same_album = add(catalog, 2, [0.99, 0.1, 0, 0], "A", "a", genre=0)
    other_genre = add(catalog, 3, [0.95, 0.2, 0, 0], "B", "b", genre=2)
    far = add(catalog, 4, [0, 0, 1, 0], "C", "c", genre=0)
    assert [t["id"] for t in similar(catalog, seed, 3)] == [same_album, other_genre, far]
    assert [t["id"] for t in similar(catalog, seed, 3, exclude_same_album=True)] == [
        other_genre, far,
    ]  # fmt: skip
    assert [t["id"] for t in similar(catalog, seed, 3, genre="blues")] == [same_album, far]
    why = why_similar(catalog, seed, same_album)
    assert why["score"] == pytest.approx(0.99 / np.linalg.norm([0.99, 0.1]), abs=1e-5)
    assert why["shared_genres"][0]["genre"] == "blues"
    assert "blues" in why["summary"] and why["timeline_share"] == {"track": 1.0, "other": 1.0}
    apart = why_similar(catalog, seed, other_genre)
    assert apart["genre_overlap"] == pytest.approx(0.3, abs=1e-5)


def test_library_map_projects_every_indexed_track(catalog):
    rng = np.random.default_rng(0)
    for i in range(30):
        add(catalog, i + 1, rng.standard_normal(4), "A", "a", genre=i % 3)
    data = library_map(catalog)
    assert data["total"] == data["shown"] == 30
    assert {p["genre"] for p in data["points"]} == set(GENRES)
    sampled = library_map(catalog, max_points=10)
    assert sampled["total"] == 30 and sampled["shown"] == 10
    # PCA: the first axis carries the most variance, and the picture is reproducible.
    x = rng.standard_normal((50, 8)) * np.array([5, 1, 1, 1, 1, 1, 1, 1])
    coords = project(x.astype(np.float32))
    assert coords[:, 0].var() > coords[:, 1].var()
    np.testing.assert_array_equal(coords, project(x.astype(np.float32)))
    with pytest.raises(ValueError):
        project(x, "tsne")


def test_a_reader_reloads_the_index_another_writer_saved(tmp_path):
    with Catalog(tmp_path) as writer:
        writer.activate_model("m", GENRES, 4)
        first = add(writer, 1, [1, 0, 0, 0], "A", "a")
        writer.save_index()
        reader = Catalog(tmp_path)
        assert len(reader.index()) == 1
        assert reader.refresh_index() is False  # unchanged file: nothing to do
        second = add(writer, 2, [0, 1, 0, 0], "B", "b")
        assert reader.refresh_index() is False  # not saved yet: the reader keeps its copy
        writer.save_index()
        assert reader.refresh_index() is True
        assert {i for i, _ in reader.index().search(np.array([1, 1, 0, 0.0]), 5)} == {
            first, second,
        }  # fmt: skip
        assert reader.library_roots() == []
        writer.add_library_roots([tmp_path / "music", tmp_path / "music"])
        assert reader.library_roots() == [tmp_path / "music"]
        reader.close()
