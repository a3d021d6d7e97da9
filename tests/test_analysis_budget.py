"""The analysis budget: evenly spread windows, decoded alone, and --analysis full."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import soxr
from sqlalchemy import select
from typer.testing import CliRunner

from audio_fixtures import chord, tone, write
from catalog.schema import Segment
from catalog.store import Catalog
from embeddings.audio import open_audio
from embeddings.frontend import FrontendConfig
from embeddings.windows import BestWindowTracker, analysis_windows
from helpers import run_ingest, tracks_by_path
from ingest.windowed import read_windows

SR = 22050


def _music(seconds: float) -> np.ndarray:
    """A chord whose root rises through the track, so every window sounds different."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    freq = 110 + 330 * t / seconds
    phase = 2 * np.pi * np.cumsum(freq) / SR
    return (0.2 * np.sin(phase) + 0.1 * np.sin(1.5 * phase)).astype(np.float32)


def test_windows_cover_the_track_evenly():
    # the default: single 3-s segments, thirty for 90 s, one every 20 s of a 600-s track
    windows = analysis_windows(600.0, 90.0)
    assert [w.length_s for w in windows] == [3.0] * 30
    centres = np.array([w.start_s + 1.5 for w in windows])
    np.testing.assert_allclose(np.diff(centres), 20.0, atol=1e-3)
    assert centres[0] == pytest.approx(600.0 - centres[-1], abs=1e-3)
    # longer windows: as many as fit in the budget, spread the same way
    windows = analysis_windows(600.0, 60.0, window_segments=4)
    assert [w.length_s for w in windows] == [12.0] * 5
    assert sum(w.length_s for w in windows) <= 60.0
    starts = np.array([w.start_s for w in windows])
    centres = starts + 6.0
    np.testing.assert_allclose(np.diff(centres), 120.0, atol=1e-3)  # equal spacing
    assert centres[0] == pytest.approx(600.0 - centres[-1], abs=1e-3)  # symmetric
    assert starts[0] > 0 and starts[-1] + 12.0 < 600.0
    # a budget that is not a multiple of a window: as many whole windows as fit
    assert [w.length_s for w in analysis_windows(300.0, 30.0, window_segments=4)] == [12.0] * 2
    # a budget shorter than a window: one window of whole segments within it
    assert [w.length_s for w in analysis_windows(300.0, 7.0, window_segments=4)] == [6.0]
    with pytest.raises(ValueError, match="positive"):
        analysis_windows(300.0, 0.0)


def test_a_short_track_or_no_budget_is_analysed_whole():
    assert analysis_windows(59.9, 60.0) is None
    assert analysis_windows(60.0, 60.0) is None
    assert analysis_windows(None, 60.0) is None  # no declared length: stream it whole
    assert analysis_windows(3600.0, None) is None  # --analysis full


@pytest.mark.parametrize("suffix", [".flac", ".ogg"])  # libsndfile seeks; FFmpeg seeks
def test_only_the_windows_are_decoded_and_they_are_the_tracks_samples(tmp_path, suffix):
    path = write(tmp_path / f"long{suffix}", _music(100.0), SR)
    config = FrontendConfig()
    whole = np.concatenate(list(open_audio(path, SR).blocks))
    info = open_audio(path, SR).info
    windows = analysis_windows(info.duration_s, 24.0, window_segments=2)
    reading = read_windows(path, config, windows, info)
    assert reading.usable and reading.stopped_early is None
    assert reading.n_segments == 8 and len(windows) == 4
    # only the windows were decoded: 24 s of source frames, not 100
    assert reading.decoded_seconds == pytest.approx(24.0, abs=0.01)
    starts = np.concatenate(reading.starts)
    expected = [w.start_s + 3.0 * i for w in windows for i in range(2)]
    np.testing.assert_allclose(starts, expected, atol=1e-6)
    for segment, start in zip(np.concatenate(reading.segments), starts, strict=True):
        at = int(round(start * SR))
        same = whole[at : at + len(segment)]
        # the resampler starts afresh at a window: equal away from its first samples
        np.testing.assert_allclose(segment[2000:], same[2000:], atol=2e-3)


@pytest.mark.parametrize("seconds", [100.0, 40.0])  # 40 s: windows past a lying header's end
def test_vorbis_windows_read_through_one_open_file_are_the_per_window_streams(
    tmp_path, monkeypatch, seconds
):
    """One open demuxer for all windows (embeddings/audio/seeking.py) gives the same
    segments, starts, counts and reasons as one stream per window, on 44.1 kHz stereo."""
    import ingest.windowed as windowed

    left, right = _music(seconds), np.roll(_music(seconds), 5000)
    stereo = soxr.resample(np.stack([left, right], axis=1), SR, 44_100).astype(np.float32)
    path = write(tmp_path / "long.ogg", stereo, 44_100)
    config = FrontendConfig()
    info = open_audio(path, SR).info
    assert info.decoder == "ffmpeg/vorbis" and info.channels == 2
    # 100 s: ten 3-s windows; 40 s: a header claiming 100 s puts the last windows past the end
    declared = replace(info, duration_s=100.0)
    windows = analysis_windows(declared.duration_s, 30.0)
    per_window = []
    monkeypatch.setattr(windowed, "_read_one", _counting(windowed._read_one, per_window))
    fast = read_windows(path, config, windows, declared)
    assert per_window == []  # every window came from the one open file
    monkeypatch.setattr(windowed, "_one_open_file", lambda *a: None)
    slow = read_windows(path, config, windows, declared)
    assert per_window  # and these from a stream each
    assert fast.n_segments == slow.n_segments == (10 if seconds == 100 else 4)
    np.testing.assert_allclose(np.concatenate(fast.segments), np.concatenate(slow.segments),
                               atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(np.concatenate(fast.starts), np.concatenate(slow.starts))
    assert fast.frames_decoded == slow.frames_decoded and fast.peak == slow.peak
    assert fast.end_s == pytest.approx(slow.end_s)
    assert fast.stopped_early == slow.stopped_early
    assert (fast.stopped_early is None) == (seconds == 100)


def _counting(function, calls: list):
    def counted(*args, **kwargs):
        calls.append(args)
        return function(*args, **kwargs)

    return counted


def test_the_heatmap_window_never_spans_a_gap():
    tracker = BestWindowTracker(n_classes=2, size=2)
    feats = np.arange(4, dtype=np.float32)[:, None]
    probs = np.array([[0.1, 0.9], [0.9, 0.1], [0.9, 0.1], [0.1, 0.9]], dtype=np.float32)
    # segments 0,1 are one window, 2,3 another 60 s later: (1, 2) must not pair up
    tracker.push(feats, probs, starts=[10.0, 13.0, 70.0, 73.0])
    first, window = tracker.best(0)
    assert first in (0, 2) and len(window) == 2
    # windows shorter than the heatmap's (single segments) compete as they are
    tracker = BestWindowTracker(n_classes=2, size=4)
    tracker.push(feats, probs, starts=[10.0, 30.0, 50.0, 70.0])
    assert tracker.best(0)[0] in (1, 2) and len(tracker.best(0)[1]) == 1
    assert tracker.best(1)[0] in (0, 3)


def _segments(data_dir) -> dict[str, list[tuple[float, float]]]:
    with Catalog(data_dir) as catalog, catalog.sessions() as s:
        rows = s.execute(select(Segment.track_id, Segment.idx, Segment.start_s, Segment.end_s))
        out: dict[int, list] = {}
        for track_id, _, start, end in sorted(rows, key=lambda r: (r[0], r[1])):
            out.setdefault(track_id, []).append((start, end))
    return {t.path: out.get(t.id, []) for t in tracks_by_path(data_dir).values()}


def test_ingest_analyses_the_windows_and_records_where_they_are(tmp_path, model):
    music = tmp_path / "music"
    long = write(music / "long.ogg", _music(90.0), SR)
    short = write(music / "short.wav", chord((220, 277, 330), 20.0), SR)
    data_dir = tmp_path / "data"
    summary = run_ingest([music], data_dir, model, analysis_seconds=24.0)
    assert summary.analysed == 2 and not summary.failed
    assert "at most 24 s per track" in summary.analysis
    assert summary.to_dict()["analysis"] == summary.analysis
    rows, segments = tracks_by_path(data_dir), _segments(data_dir)
    windows = analysis_windows(90.0, 24.0)
    assert rows[str(long)].n_segments == 8
    assert len(windows) == 8  # the default: single segments
    assert [s for s, _ in segments[str(long)]] == pytest.approx(
        [w.start_s for w in windows], abs=1e-3
    )
    assert rows[str(long)].duration_s == pytest.approx(90.0, abs=0.1)  # the track's, not 24
    # the heatmap explains one analysed window
    heat = rows[str(long)]
    assert any(heat.heatmap_start_s == pytest.approx(w.start_s, abs=1e-3) for w in windows)
    assert heat.heatmap_end_s - heat.heatmap_start_s == pytest.approx(windows[0].length_s)
    # a track within the budget is analysed whole, from its start
    assert rows[str(short)].n_segments == 7  # 20 s: six full segments and the 2 s tail
    assert [s for s, _ in segments[str(short)]] == pytest.approx([3.0 * i for i in range(7)])


def test_analysis_full_analyses_every_segment(tmp_path, model):
    music = tmp_path / "music"
    long = write(music / "long.flac", _music(90.0), SR)
    data_dir = tmp_path / "data"
    summary = run_ingest([music], data_dir, model, analysis_seconds=None)
    assert summary.analysis == "full tracks"
    assert tracks_by_path(data_dir)[str(long)].n_segments == 30
    assert [s for s, _ in _segments(data_dir)[str(long)]] == pytest.approx(
        [3.0 * i for i in range(30)]
    )


def test_a_track_silent_where_the_windows_fall_is_analysed_whole(tmp_path, model):
    """Under full analysis it was indexed: the budget must not make it fail as silent."""
    audio = np.zeros(int(90.0 * SR), dtype=np.float32)
    audio[: 3 * SR] = tone(440, 3.0)  # sound only in the first 3 s, before any window
    music = tmp_path / "music"
    path = write(music / "intro.wav", audio, SR)
    data_dir = tmp_path / "data"
    summary = run_ingest([music], data_dir, model, analysis_seconds=24.0)
    assert summary.analysed == 1, summary.failed
    assert tracks_by_path(data_dir)[str(path)].n_segments == 30


def test_the_cli_takes_full_or_seconds_and_says_which(tmp_path):
    from ui.cli import app

    music = tmp_path / "music"
    write(music / "long.wav", _music(40.0), SR)
    runner = CliRunner()
    bad = runner.invoke(app, ["ingest", str(music), "--data-dir", str(tmp_path / "d0"),
                              "--analysis", "lots"])  # fmt: skip
    assert bad.exit_code != 0 and "--analysis must be 'full' or a positive number" in bad.output
    for setting, expected in (("full", "full tracks"), ("30", "at most 30 s per track")):
        data_dir = tmp_path / f"d-{setting}"
        result = runner.invoke(app, ["ingest", str(music), "--data-dir", str(data_dir),
                                     "--analysis", setting, "--json", "--no-progress"])  # fmt: skip
        assert result.exit_code == 0, result.output
        assert expected in json.loads(result.stdout)["analysis"]


def test_explaining_another_genre_picks_a_window_that_was_analysed(tmp_path, model):
    from ingest.explain import explain_track

    music = tmp_path / "music"
    path = write(music / "long.flac", _music(90.0), SR)
    data_dir = tmp_path / "data"
    run_ingest([music], data_dir, model, analysis_seconds=24.0)
    track = tracks_by_path(data_dir)[str(path)]
    other = next(g for g in model.genres if g != track.genre)
    with Catalog(data_dir) as catalog:
        result = explain_track(catalog, track.id, model, "gradcam", other)
    windows = analysis_windows(90.0, 24.0)
    start, end = result["window_s"]
    assert any(start == pytest.approx(w.start_s, abs=1e-3) for w in windows), (start, windows)
    assert end - start == pytest.approx(12.0)
