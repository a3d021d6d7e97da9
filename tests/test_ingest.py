"""Ingesting a synthesised library: formats, tags, bad files, incremental re-runs.

Tests taking ``catalog_url`` run twice: on SQLite and on a real PostgreSQL server.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from sqlalchemy import func, select

from audio_fixtures import chord, write
from catalog.index import VectorIndex
from catalog.queries import similar
from catalog.schema import Segment, TrackGenre
from catalog.stats import stats
from catalog.store import Catalog
from embeddings.checkpoint import untrained_model
from embeddings.inference import Predictor
from helpers import assert_index_consistent, run_ingest, tracks_by_path


def test_every_format_is_analysed_with_tags_and_embeddings(library, data_dir, model, catalog_url):
    summary = run_ingest([library.root], data_dir, model)
    rows = tracks_by_path(data_dir)

    assert summary.analysed == len(library.good)
    for name, path in library.good.items():
        track = rows[str(path)]
        assert track.status == "ok", (name, track.error)
        assert track.model_id == model.model_id
        assert track.content_hash and len(track.content_hash) == 64
        embedding = np.frombuffer(track.embedding, dtype=np.float32)
        assert embedding.shape == (512,)
        assert abs(np.linalg.norm(embedding) - 1) < 1e-4
        assert track.genre in model.genres
    for name, (title, artist, album, number) in library.tagged.items():
        track = rows[str(library.good[name])]
        assert (track.title, track.artist, track.album, track.track_number) == (
            title, artist, album, number,
        )  # fmt: skip
    untagged = rows[str(library.good["tone_wav"])]
    assert untagged.title == "tone" and untagged.artist is None  # file-name fallback

    surround = rows[str(library.good["multichannel"])]
    assert (surround.channels, surround.sample_rate) == (6, 48000)
    assert rows[str(library.good["oddrate"])].sample_rate == 11025
    assert rows[str(library.good["short"])].n_segments == 1  # padded to one segment
    assert rows[str(library.good["tone_wav"])].n_segments == 3  # 7 s: two full + 1 s tail kept
    assert rows[str(library.good["noise_flac"])].n_segments == 2  # 6.5 s: 0.5 s tail dropped
    assert "truncated" in rows[str(library.good["truncated_mp3"])].warning
    assert "truncated" in rows[str(library.good["truncated_flac"])].warning
    assert_index_consistent(data_dir)


def test_probabilities_and_timeline_are_stored(library, data_dir, model):
    run_ingest([library.root], data_dir, model)
    with Catalog(data_dir) as catalog, catalog.sessions() as s:
        sums = s.execute(
            select(TrackGenre.track_id, func.sum(TrackGenre.probability)).group_by(
                TrackGenre.track_id
            )
        ).all()
        assert len(sums) == len(library.good)
        for _, total in sums:
            assert total == pytest.approx(1.0, abs=1e-4)
        segments = s.scalars(select(Segment)).all()
        assert segments
        for seg in segments:
            probs = np.frombuffer(seg.probabilities, dtype=np.float32)
            assert probs.shape == (len(model.genres),)
            assert probs.sum() == pytest.approx(1.0, abs=1e-4)
            assert seg.genre == model.genres[int(probs.argmax())]
            assert seg.end_s - seg.start_s == pytest.approx(3.0)


def test_network_calls_never_exceed_the_batch_size(tmp_path, model, monkeypatch):
    """Workers send 32-segment chunks; a smaller batch splits them, in order."""
    music = tmp_path / "music"
    write(music / "long.wav", chord((220, 277, 330), 39.5), 22050)  # 13 segments
    sizes: list[int] = []
    predict = Predictor.predict

    def recording_predict(self, features):
        sizes.append(len(features))
        return predict(self, features)

    monkeypatch.setattr(Predictor, "predict", recording_predict)
    run_ingest([music], tmp_path / "small", model, batch_size=5, precision="fp32")
    assert sum(sizes) == 13 and max(sizes) <= 5
    run_ingest([music], tmp_path / "whole", model, precision="fp32")

    def timeline(data_dir):
        with Catalog(data_dir) as catalog, catalog.sessions() as s:
            rows = s.scalars(select(Segment).order_by(Segment.idx)).all()
            return [r.start_s for r in rows], np.stack(
                [np.frombuffer(r.probabilities, dtype=np.float32) for r in rows]
            )

    (starts, probs), (starts_whole, probs_whole) = (
        timeline(tmp_path / "small"),
        timeline(tmp_path / "whole"),
    )
    assert starts == starts_whole == [3.0 * i for i in range(13)]
    np.testing.assert_allclose(probs, probs_whole, atol=1e-4)


def test_bad_files_are_recorded_with_reasons_and_do_not_stop_ingest(
    library, data_dir, model, catalog_url
):
    summary = run_ingest([library.root], data_dir, model)
    rows = tracks_by_path(data_dir)
    failed = dict(summary.failed)
    expected = {
        "zero": "empty file",
        "text": "not a readable audio file",
        "header_only": "not a readable audio file",
        "silent": "silent",
    }
    for name, fragment in expected.items():
        path = str(library.bad[name])
        assert rows[path].status == "failed"
        assert fragment in rows[path].error
        assert fragment in failed[path]
        assert rows[path].embedding is None
    assert summary.analysed == len(library.good)


def test_rerun_analyses_nothing_and_does_not_retry_failures(library, data_dir, model, catalog_url):
    run_ingest([library.root], data_dir, model)
    before = tracks_by_path(data_dir)
    again = run_ingest([library.root], data_dir, model)
    assert again.analysed == 0 and again.failed == [] and again.reused == 0
    assert again.skipped == len(library.good) + len(library.bad)
    after = tracks_by_path(data_dir)
    assert {p: t.analysed_at for p, t in after.items()} == {
        p: t.analysed_at for p, t in before.items()
    }
    assert_index_consistent(data_dir)


def test_a_new_model_reanalyses_every_track_but_not_the_failures(
    library, data_dir, model, catalog_url
):
    # what every existing catalog goes through when a release ships a new default model
    run_ingest([library.root], data_dir, model)
    before = tracks_by_path(data_dir)
    other = untrained_model()
    assert other.model_id != model.model_id
    summary = run_ingest([library.root], data_dir, other)
    assert summary.analysed == len(library.good) and summary.failed == []
    assert not summary.index_repaired  # the old model's index is expected, not damage
    assert summary.previous_model_id == model.model_id  # and the user is told why
    after = tracks_by_path(data_dir)
    for path in map(str, library.good.values()):
        assert after[path].model_id == other.model_id
        assert after[path].embedding != before[path].embedding
    for path in map(str, library.bad.values()):  # a decode failure is not the model's
        assert after[path].status == "failed"
        assert after[path].analysed_at == before[path].analysed_at
    with Catalog(data_dir) as catalog:
        assert catalog.active_model_id == other.model_id
    assert_index_consistent(data_dir)
    assert summary.other_model_tracks == 0  # the whole library was redone
    again = run_ingest([library.root], data_dir, other)
    assert again.analysed == 0 and again.previous_model_id is None


def test_tracks_left_on_the_old_model_are_counted(library, data_dir, model):
    run_ingest([library.root], data_dir, model)
    part = library.root / "albumA"
    untouched = sum(1 for p in library.good.values() if part not in p.parents)
    summary = run_ingest([part], data_dir, untrained_model())
    assert 0 < summary.analysed < len(library.good)
    assert summary.other_model_tracks == untouched > 0
    with Catalog(data_dir) as catalog:
        assert len(catalog.index()) == summary.analysed  # search skips the old model's
        assert stats(catalog)["other_model_tracks"] == untouched  # and `sonic status` says so


def test_modified_file_is_reanalysed_and_touched_file_is_not(library, data_dir, model, catalog_url):
    run_ingest([library.root], data_dir, model)
    before = tracks_by_path(data_dir)
    changed = library.good["tone_wav"]
    write(changed, chord([100, 150, 900], 9, 22050), 22050)
    touched = library.good["clicks_ogg"]
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))

    summary = run_ingest([library.root], data_dir, model)
    after = tracks_by_path(data_dir)
    assert summary.analysed == 1 and summary.reused == 1
    assert after[str(changed)].id == before[str(changed)].id
    assert after[str(changed)].content_hash != before[str(changed)].content_hash
    assert after[str(changed)].n_segments == 3
    assert after[str(changed)].embedding != before[str(changed)].embedding
    assert after[str(touched)].analysed_at == before[str(touched)].analysed_at
    assert after[str(touched)].mtime_ns == touched.stat().st_mtime_ns
    assert_index_consistent(data_dir)


def test_broken_file_fixed_later_is_retried(library, data_dir, model, catalog_url):
    run_ingest([library.root], data_dir, model)
    broken = library.bad["zero"]
    write(broken.with_suffix(".wav"), chord([300, 500], 4, 22050), 22050)
    broken.unlink()
    broken.with_suffix(".wav").rename(broken)  # same path, now a real file
    summary = run_ingest([library.root], data_dir, model)
    assert summary.analysed == 1
    assert tracks_by_path(data_dir)[str(broken)].status == "ok"


def test_deleted_file_is_marked_missing_and_removed_from_index(
    library, data_dir, model, catalog_url
):
    run_ingest([library.root], data_dir, model)
    gone = library.good["noise_flac"]
    track_id = tracks_by_path(data_dir)[str(gone)].id
    gone.unlink()
    summary = run_ingest([library.root], data_dir, model)
    assert summary.missing == 1
    assert tracks_by_path(data_dir)[str(gone)].status == "missing"
    assert track_id not in VectorIndex.load(data_dir / "index.faiss").ids()
    assert_index_consistent(data_dir)


def test_moved_file_keeps_its_row_without_reanalysis(library, data_dir, model, catalog_url):
    run_ingest([library.root], data_dir, model)
    source = library.good["chord_mp3"]
    before = tracks_by_path(data_dir)[str(source)]
    target = library.root / "renamed" / "moved chord.mp3"
    target.parent.mkdir()
    shutil.move(source, target)

    summary = run_ingest([library.root], data_dir, model)
    after = tracks_by_path(data_dir)
    assert summary.analysed == 0 and summary.reused == 1 and summary.missing == 0
    assert str(source) not in after
    assert after[str(target)].id == before.id
    assert after[str(target)].analysed_at == before.analysed_at
    assert after[str(target)].status == "ok"
    assert_index_consistent(data_dir)


def test_two_copies_of_a_moved_file_get_one_row_each(library, data_dir, model, catalog_url):
    run_ingest([library.root], data_dir, model)
    source = library.good["tone_wav"]
    original_id = tracks_by_path(data_dir)[str(source)].id
    copy_a, copy_b = library.root / "a.wav", library.root / "b.wav"
    shutil.copy(source, copy_a)
    shutil.move(source, copy_b)
    summary = run_ingest([library.root], data_dir, model)
    rows = tracks_by_path(data_dir)
    assert {rows[str(copy_a)].id, rows[str(copy_b)].id} >= {original_id}
    assert rows[str(copy_a)].id != rows[str(copy_b)].id
    assert summary.reused == 1 and summary.analysed == 1
    assert_index_consistent(data_dir)


def test_similar_excludes_the_query_and_is_sorted(library, data_dir, model, catalog_url):
    run_ingest([library.root], data_dir, model)
    rows = tracks_by_path(data_dir)
    query = rows[str(library.good["chord_mp3"])].id
    with Catalog(data_dir) as catalog:
        result = similar(catalog, query, k=5)
    assert len(result) == 5
    assert query not in [r["id"] for r in result]
    scores = [r["score"] for r in result]
    assert scores == sorted(scores, reverse=True)
    assert all(-1.0001 <= s <= 1.0001 for s in scores)


def test_index_disagreeing_with_sqlite_is_rebuilt(library, data_dir, model, catalog_url):
    run_ingest([library.root], data_dir, model)
    index_file = data_dir / "index.faiss"
    stale = VectorIndex.load(index_file)
    stale.remove(stale.ids()[:3])  # an index that lost vectors but claims the same version
    stale.version -= 1
    stale.save(index_file)
    with Catalog(data_dir) as catalog:
        assert not catalog.index_health()["consistent"]
        assert len(catalog.index()) == len(library.good)
        assert catalog.index_repaired
    assert_index_consistent(data_dir)

    index_file.write_bytes(b"garbage")
    with Catalog(data_dir) as catalog:
        assert len(catalog.index()) == len(library.good)
    assert_index_consistent(data_dir)


def test_second_writer_is_refused_while_an_ingest_holds_the_lock(library, data_dir, model):
    from ingest.lock import CatalogBusyError, catalog_lock

    data_dir.mkdir(parents=True)
    with catalog_lock(data_dir), pytest.raises(CatalogBusyError):
        run_ingest([library.root], data_dir, model)


def test_the_summary_says_which_inference_path_ran(library, data_dir, model):
    summary = run_ingest([library.root], data_dir, model, precision="fp32")
    assert summary.inference.startswith("pytorch fp32")
    assert summary.to_dict()["inference"] == summary.inference
    again = run_ingest([library.root], data_dir, model)  # nothing to analyse: no network ran
    assert again.inference is None
