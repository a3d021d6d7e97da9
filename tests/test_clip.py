"""Analysing a clip on the fly, the arrays the track views draw, and remixing stems."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from audio_fixtures import chord, noise, tone, write
from embeddings.inference import aggregate
from ingest.clip import ClipAnalyser, ClipError, preview
from ingest.stems import preview_mix


@pytest.fixture(scope="module")
def analyser(model):
    return ClipAnalyser(model, "cpu", "fp32")


def test_clip_analysis_follows_the_ingest_rules(analyser, tmp_path):
    audio = np.concatenate([chord([220, 277, 330], 6.5), noise(2.0, seed=4)])
    result = analyser.analyse_audio(audio, "vote")
    assert result.segment_probabilities.shape == (3, len(analyser.model.genres))  # 8.5 s
    np.testing.assert_allclose(
        result.probabilities, aggregate(result.segment_probabilities, "vote")
    )
    assert np.linalg.norm(result.embedding) == pytest.approx(1.0, abs=1e-5)
    data = result.to_dict(k=2)
    assert [row["genre"] for row in data["top_k"]][0] == data["genre"]
    assert len(data["top_k"]) == 2 and len(data["timeline"]) == 3
    assert data["timeline"][2]["start_s"] == 6.0
    path = write(tmp_path / "clip.flac", audio, 22050)
    from_file = analyser.analyse_bytes(path.read_bytes(), "upload.flac", "vote")
    np.testing.assert_allclose(from_file.embedding, result.embedding, atol=1e-3)
    with pytest.raises(ClipError, match="silent"):
        analyser.analyse_audio(np.zeros(22050 * 4, dtype=np.float32))
    with pytest.raises(ClipError, match="aggregation"):
        analyser.analyse_audio(audio, "sum")
    with pytest.raises(ClipError, match="not a readable audio file"):
        analyser.analyse_bytes(b"hello" * 100, "x.mp3")


def test_preview_is_reduced_for_drawing(model):
    audio = tone(440, 65.0)
    view = preview(audio, model.frontend, bins=500, max_columns=300)
    assert view.envelope_max.shape == (500,) and view.mel_db.shape == (128, 300)
    assert view.duration_s == pytest.approx(65.0)
    assert view.envelope_max.max() == pytest.approx(0.3, abs=1e-3)
    assert view.mel_db.max() == pytest.approx(0.0, abs=1e-3) and view.mel_db.min() >= -80.0


def test_remix_applies_gains(tmp_path):
    a = write(tmp_path / "vocals.wav", np.stack([tone(200, 1.0)] * 2, axis=1), 22050)
    b = write(tmp_path / "drums.wav", np.stack([tone(300, 1.0)] * 2, axis=1), 22050)
    rate, mix = preview_mix({"vocals": a, "drums": b}, {"vocals": 0.0, "drums": 0.5})
    assert rate == 22050 and mix.shape == (22050, 2)
    np.testing.assert_allclose(mix, 0.5 * sf.read(str(b), dtype="float32")[0], atol=1e-4)
    _, loud = preview_mix({"vocals": a, "drums": b}, {"vocals": 2.0, "drums": 2.0})
    assert np.abs(loud).max() == pytest.approx(1.0)
