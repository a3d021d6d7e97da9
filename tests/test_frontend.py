"""The log-mel front end matches librosa and segments tracks as the spec says."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from audio_fixtures import chord, noise
from embeddings.frontend import (
    FrontendConfig,
    StreamingSegmenter,
    mel_band_edges,
    mel_filterbank,
    normalise,
    power_mel,
    segment_features,
    split_segments,
    to_db,
)

CONFIG = FrontendConfig()
FULL_BAND = FrontendConfig(band_limit_hz=None)  # librosa's filters, up to Nyquist


@pytest.mark.parametrize(
    "config",
    [FULL_BAND, FrontendConfig(sample_rate=16_000, n_fft=512, n_mels=64),
     FrontendConfig(sample_rate=44_100, n_fft=4096, n_mels=96, band_limit_hz=None)],
)  # fmt: skip
def test_mel_filterbank_equals_librosa(config):
    ours = mel_filterbank(config)
    theirs = librosa.filters.mel(sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels)
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("config", [CONFIG, FrontendConfig(sample_rate=16_000, n_mels=64)])
def test_mel_band_edges_equal_librosa(config):
    theirs = librosa.mel_frequencies(n_mels=config.n_mels + 2, fmax=config.sample_rate / 2)
    np.testing.assert_allclose(mel_band_edges(config), theirs, rtol=1e-9)


def test_heatmaps_do_not_import_librosa():
    """Heatmaps are drawn in the ingest process; librosa would add about 60 MB to it."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np; from embeddings.heatmap_image import render_heatmap_png; "
        "from embeddings.frontend import FrontendConfig; x = np.random.rand(128, 130); "
        "render_heatmap_png(x, x, FrontendConfig(), 0.0, 't'); print('librosa' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_decode_workers_do_not_import_librosa():
    """librosa would cost every decode worker about 110 MB for one small matrix."""
    import subprocess
    import sys

    code = (
        "import sys; from ingest import worker; from embeddings.frontend import *; "
        "mel_filterbank(FrontendConfig()); print('librosa' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_segment_shape_is_128_by_130():
    assert CONFIG.segment_samples == 66150
    assert CONFIG.shape == (128, 130)
    features = segment_features(noise(3, seed=3), CONFIG)
    assert features.shape == (128, 130) and features.dtype == np.float32
    assert abs(features.mean()) < 1e-4 and features.std() == pytest.approx(1, abs=1e-3)


def test_mel_and_db_match_librosa():
    segment = chord([220, 330, 1760], 3) + noise(3, seed=4, amp=0.02)
    ours = power_mel(segment, FULL_BAND)
    theirs = librosa.feature.melspectrogram(
        y=segment, sr=22050, n_fft=2048, hop_length=512, n_mels=128
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-6 * theirs.max())
    np.testing.assert_allclose(
        to_db(ours, 80.0), librosa.power_to_db(theirs, ref=np.max, top_db=80.0), atol=0.05
    )


def test_band_limit_only_empties_filters_above_it():
    limited, full = mel_filterbank(CONFIG), mel_filterbank(FULL_BAND)
    fft_hz = np.linspace(0.0, CONFIG.sample_rate / 2, 1 + CONFIG.n_fft // 2)
    below = fft_hz <= CONFIG.band_limit_hz
    np.testing.assert_array_equal(limited[:, below], full[:, below])
    assert not limited[:, ~below].any() and full[:, ~below].any()
    assert not limited[-2:].any() and limited[:-4].any(axis=1).all()  # top bands only


def _upsampled_and_back(audio: np.ndarray) -> np.ndarray:
    """What ingest reads from a 44.1 kHz file of the same music: soxr back to 22,050 Hz."""
    import soxr

    up = soxr.resample(audio, 22_050, 44_100, quality="VHQ")
    return soxr.resample(up, 44_100, 22_050, quality="HQ").astype(np.float32)


def test_band_limit_makes_a_44k_file_look_like_the_22k_clip():
    """The resampler removes the last kilohertz below Nyquist; the features must not care."""
    segment = noise(3, seed=7, amp=0.1) + chord([440, 10_700], 3)  # energy up to Nyquist
    resampled = _upsampled_and_back(segment)

    def gap(config: FrontendConfig) -> float:
        return float(
            np.abs(segment_features(segment, config) - segment_features(resampled, config)).max()
        )

    assert gap(FULL_BAND) > 1.0  # a different input, in standard deviations
    assert gap(CONFIG) < 0.05


def test_checkpoints_from_before_the_band_limit_keep_the_full_band():
    legacy = {k: v for k, v in CONFIG.to_dict().items() if k != "band_limit_hz"}
    assert FrontendConfig.from_dict(legacy).band_limit_hz is None
    assert FrontendConfig.from_dict(CONFIG.to_dict()) == CONFIG
    assert CONFIG.same_shape(FrontendConfig.from_dict(legacy))
    assert not CONFIG.same_shape(FrontendConfig(n_mels=96))


def test_silent_segment_normalises_to_zeros_not_nan():
    features = normalise(to_db(power_mel(np.zeros(66150, np.float32), CONFIG), 80.0))
    assert np.all(features == 0)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0.2, 1), (2.9, 1), (3.0, 1), (3.5, 1), (4.0, 2), (7.0, 3), (61.0, 21), (60.5, 20)],
)
def test_split_segments_pads_short_clips_and_keeps_real_tails(seconds, expected):
    audio = noise(seconds, seed=5)
    segments = split_segments(audio, CONFIG)
    assert segments.shape == (expected, 66150)
    np.testing.assert_array_equal(
        segments.reshape(-1)[: min(len(audio), expected * 66150)], audio[: expected * 66150]
    )


def test_streaming_segmenter_equals_whole_file_split():
    audio = noise(20.4, seed=6)
    segmenter = StreamingSegmenter(CONFIG)
    parts = [segmenter.push(audio[i : i + 10_000]) for i in range(0, len(audio), 10_000)]
    parts.append(segmenter.finish())
    np.testing.assert_array_equal(np.concatenate(parts), split_segments(audio, CONFIG))


def test_the_heatmap_colour_table_is_matplotlibs_inferno():
    from matplotlib import colormaps

    from embeddings.inferno import inferno_table

    expected = (colormaps["inferno"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.float32)
    np.testing.assert_array_equal(inferno_table(), expected)
