"""Hostile files (issue 28): no single file ends an ingest run, hangs it or blows its memory.

Every file here is real and written in a temporary folder (headers by hand with
``struct`` where soundfile refuses), and every run is a real ingest with the
shipped model: whatever a file does, it becomes that file's failure or warning
with a reason a person can read, and the good file beside it is still indexed.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import select

from audio_fixtures import chord, tone, write, write_float_wav
from catalog.schema import TrackGenre
from catalog.store import Catalog
from embeddings.audio_files import DecodeError, read_audio
from helpers import assert_index_consistent, run_ingest, tracks_by_path
from ingest.clip import ClipAnalyser, ClipError

SR = 22050


def _good(root: Path) -> Path:
    return write(root / "good.flac", chord([261.6, 329.6, 392.0], 4, SR), SR)


def _stored_probabilities(data_dir: Path) -> list[float]:
    with Catalog(data_dir) as catalog, catalog.sessions() as s:
        return [g.probability for g in s.scalars(select(TrackGenre))]


# -- 1. NaN, infinity and 1e30 samples -------------------------------------------------------


def _nonfinite_library(root: Path) -> dict[str, Path]:
    base = tone(440, 4, SR)
    nan = base.copy()
    nan[::100] = np.nan  # 882 samples
    inf = base.copy()
    inf[::97] = np.inf
    inf[50::97] = -np.inf
    huge = base.copy()
    huge[::1000] = 1e30  # 89 samples: float32 squares of these overflow
    base44 = tone(440, 4, 44100)
    nan44 = base44.copy()
    nan44[1000:1010] = np.nan  # through the resampler, which would smear it
    return {
        "nan": write_float_wav(root / "nan.wav", nan, SR),
        "inf": write_float_wav(root / "inf.wav", inf, SR),
        "huge": write_float_wav(root / "huge.wav", huge, SR),
        "nan44": write_float_wav(root / "nan44.wav", nan44, 44100),
        "all_nan": write_float_wav(root / "all_nan.wav", np.full(4 * SR, np.nan), SR),
        "good": _good(root),
    }


def test_non_finite_samples_are_cleaned_with_a_warning_and_the_run_goes_on(tmp_path, model):
    files = _nonfinite_library(tmp_path / "music")
    data_dir = tmp_path / "data"
    summary = run_ingest([tmp_path / "music"], data_dir, model)
    tracks = {name: tracks_by_path(data_dir)[str(path)] for name, path in files.items()}

    assert summary.analysed == 5
    assert summary.failed == [
        (str(files["all_nan"]), "no finite audio samples (every sample is NaN or infinite)")
    ]
    for name in ("nan", "inf", "huge", "nan44", "good"):
        assert tracks[name].status == "ok", (name, tracks[name].error)
        assert np.isfinite(tracks[name].confidence), name
    assert "replaced 882 non-finite samples" in tracks["nan"].warning
    assert "replaced 10 non-finite samples" in tracks["nan44"].warning
    inf_count = len(range(0, 4 * SR, 97)) + len(range(50, 4 * SR, 97))
    assert f"replaced {inf_count:,} non-finite samples" in tracks["inf"].warning  # not "silent"
    assert "clipped 89 samples" in tracks["huge"].warning
    assert tracks["good"].warning is None
    assert all(np.isfinite(p) for p in _stored_probabilities(data_dir))
    assert_index_consistent(data_dir)


def test_a_model_giving_nan_fails_the_track_not_the_run(tmp_path, model):
    """Defence in depth: non-finite network output never reaches SQLite or FAISS."""
    good = _good(tmp_path / "music")
    network = copy.deepcopy(model.network)
    head = [m for m in network.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        head.bias.fill_(float("nan"))
    poisoned = dataclasses.replace(model, network=network, model_id="poisoned-nan")
    data_dir = tmp_path / "data"

    summary = run_ingest([good.parent], data_dir, poisoned, heatmaps=False)

    assert summary.analysed == 0
    assert len(summary.failed) == 1
    assert summary.failed[0][1].startswith("the model produced non-finite output")
    assert tracks_by_path(data_dir)[str(good)].status == "failed"
    assert _stored_probabilities(data_dir) == []


def test_uploads_and_training_reads_get_the_same_cleaning(tmp_path, model):
    files = _nonfinite_library(tmp_path / "music")
    analyser = ClipAnalyser(model, device="cpu")
    for name in ("nan", "inf", "huge", "nan44"):
        clip = analyser.analyse_file(files[name])
        assert np.isfinite(clip.probabilities).all() and np.isfinite(clip.embedding).all(), name
        audio, _ = read_audio(files[name], SR)
        assert np.isfinite(audio).all() and np.abs(audio).max() <= 1_000, name
    with pytest.raises(ClipError, match="no finite audio samples"):
        analyser.analyse_file(files["all_nan"])
    with pytest.raises(DecodeError, match="no finite audio samples"):
        read_audio(files["all_nan"], SR)
