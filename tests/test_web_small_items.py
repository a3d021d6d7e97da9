"""The web UI's small promises, checked without a browser (issue 27's "small items").

A tie in band focus is not called "mostly"; a short clip's last segment ends where
the audio does; map tooltips never say "null"; cancelling a job stops it; a Demucs
weights folder is checked by its files; top-K redraws from stored segments.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from embeddings.aggregation import aggregate
from embeddings.bands import band_focus_sentence
from ingest.clip import ClipAnalysis
from ingest.stems.weights import weights_missing
from ui.jobs import Jobs
from ui.web.render import map_svg, tracks_table
from ui.web.track import probabilities


def test_a_tie_between_bands_is_not_mostly_one_of_them():
    tie = band_focus_sentence({"low": 0.0, "mid": 0.5, "high": 0.5})
    assert "mostly" not in tie and "equally" in tie and "highs" in tie and "mid range" in tie
    assert "mostly to the mid" in band_focus_sentence({"low": 0.1, "mid": 0.6, "high": 0.3})


def test_a_ten_second_clips_last_segment_ends_at_ten_seconds():
    genres = ["a", "b"]
    clip = ClipAnalysis(
        model_id="m", model_trained=False, genres=genres, aggregation="mean",
        probabilities=np.array([0.5, 0.5]), segment_probabilities=np.full((4, 2), 0.5),
        embedding=np.zeros(4), duration_s=10.0, segment_seconds=3.0,
    )  # fmt: skip
    ends = [s["end_s"] for s in clip.timeline()]
    assert ends == [3.0, 6.0, 9.0, 10.0]


def test_map_tooltips_skip_missing_tags():
    svg = map_svg([
        {"id": 1, "x": 0.0, "y": 0.0, "genre": None, "title": None, "artist": None,
         "album": None},
        {"id": 2, "x": 1.0, "y": 1.0, "genre": "rock", "title": "T", "artist": "A",
         "album": None},
    ])  # fmt: skip
    assert "null" not in svg and "None" not in svg
    assert "<title>track 1 (unknown genre)</title>" in svg and "<title>A - T (rock)</title>" in svg
    assert svg.count("class='sonic-open'") == 2


def test_listing_links_titles_artists_and_albums():
    row = {"id": 7, "path": "/m/x.flac", "title": "X <b>", "artist": "Ann", "album": "Al",
           "genre": "jazz", "confidence": 0.5, "status": "ok"}  # fmt: skip
    html = tracks_table([row])
    assert "href='?track=7'" in html and "X &lt;b&gt;" in html
    assert "data-kind='artist' data-value='Ann'" in html and "data-kind='album'" in html


def test_cancel_stops_a_running_job_at_its_next_step():
    jobs = Jobs()
    started = threading.Event()

    def work(set_progress):
        for i in range(1000):
            started.set()
            set_progress(i / 1000)
            time.sleep(0.01)
        return {}

    job = jobs.submit("stems", "k", work)
    assert started.wait(10)
    jobs.cancel(job.id)
    deadline = time.monotonic() + 10
    while job.status == "running":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert job.status == "cancelled" and job.progress < 0.5
    jobs.shutdown()


def test_weights_folder_is_checked_by_its_files(tmp_path):
    assert "htdemucs.yaml" in weights_missing("htdemucs", tmp_path)
    (tmp_path / "htdemucs.yaml").write_text("models: ['955717e8']\n")
    missing = weights_missing("htdemucs", tmp_path)
    assert "955717e8" in missing and "--models-dir" in missing
    (tmp_path / "955717e8-8726e21a.th").write_bytes(b"weights")
    assert weights_missing("htdemucs", tmp_path) is None


@pytest.mark.parametrize("method", ["mean", "median", "max", "vote"])
def test_aggregation_redraws_from_the_stored_segments(method):
    rng = np.random.default_rng(0)
    seg = rng.dirichlet(np.ones(3), size=6).astype(np.float32)
    timeline = [{"probabilities": dict(zip("abc", map(float, row), strict=True))} for row in seg]
    got = probabilities(timeline, method, {})
    assert np.allclose([got[g] for g in "abc"], aggregate(seg, method))
