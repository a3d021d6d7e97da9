"""Decoding: every format to 22,050 Hz mono, long files in bounded memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from audio_fixtures import tone, write
from embeddings.audio import DecodeError, decode_all, downmix, open_audio
from embeddings.frontend import FrontendConfig
from ingest.messages import Chunk, Done, Fail
from ingest.worker import Task, analyse_file


def _spectrum(audio: np.ndarray) -> np.ndarray:
    """Magnitude with 1 Hz bins (one second at 22,050 Hz)."""
    return np.abs(np.fft.rfft(audio[22050:44100]))


def test_resampled_tone_keeps_its_pitch(pristine_library):
    for name, expected in (("tone_wav", 440), ("aiff", 3000), ("opus", 80)):
        audio = decode_all(pristine_library.good[name], 22050)
        assert abs(int(np.argmax(_spectrum(audio))) - expected) <= 2, name


def test_multichannel_is_downmixed_keeping_every_channel(pristine_library):
    spectrum = _spectrum(decode_all(pristine_library.good["multichannel"], 22050))
    floor = np.median(spectrum)
    for channel in range(6):  # channel i carries a 110 * (i + 1) Hz tone
        assert spectrum[110 * (channel + 1)] > 100 * floor


def test_downmix_is_the_channel_mean():
    rng = np.random.default_rng(0)
    for shape in ((4096, 2), (4096, 6), (4096, 1), (4096,)):
        block = rng.standard_normal(shape).astype(np.float32)
        expected = block if block.ndim == 1 else block.mean(axis=1, dtype=np.float64)
        mixed = downmix(block)
        assert mixed.dtype == np.float32 and mixed.shape == (4096,), shape
        np.testing.assert_allclose(mixed, expected, atol=1e-6, err_msg=str(shape))


def test_stem_audio_converts_channels_as_demucs_does():
    from ingest.stems.audio import convert_channels

    stereo = np.random.default_rng(1).standard_normal((4096, 2)).astype(np.float32)
    mono = convert_channels(stereo, 1)
    assert mono.shape == (4096, 1) and mono.dtype == np.float32
    np.testing.assert_allclose(mono[:, 0], stereo.mean(axis=1), atol=1e-6)
    assert convert_channels(mono, 2).shape == (4096, 2)
    assert convert_channels(stereo, 2) is stereo


def test_m4a_goes_through_ffmpeg(pristine_library):
    stream = open_audio(pristine_library.good["m4a"], 22050)
    assert stream.info.decoder.startswith("ffmpeg/")
    audio = np.concatenate(list(stream.blocks))
    assert abs(len(audio) / 22050 - 6.0) < 0.1


def test_undecodable_files_raise_clear_errors(pristine_library):
    with pytest.raises(DecodeError, match="empty file"):
        open_audio(pristine_library.bad["zero"], 22050)
    with pytest.raises(DecodeError, match="not a readable audio file"):
        open_audio(pristine_library.bad["text"], 22050)


def _analysis_peak_bytes(path) -> tuple[int, int]:
    """(peak traced memory, segments) of analysing one file, chunks dropped as sent."""
    counts = []

    def send(message):
        if isinstance(message, Chunk):
            counts.append(len(message.features))  # keep only the count, as the pipeline consumes
        elif isinstance(message, Done | Fail):
            assert isinstance(message, Done), message

    tracemalloc.start()
    analyse_file(Task(0, str(path)), FrontendConfig(), send)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, sum(counts)


def test_long_track_is_streamed_in_bounded_memory(tmp_path):
    """A 20-minute file (106 MB as float32) costs what a 5-minute one does."""
    short = write(tmp_path / "short.flac", tone(220, 5 * 60, 44100, amp=0.2), 44100)
    long = write(tmp_path / "long.flac", tone(220, 20 * 60, 44100, amp=0.2), 44100)
    _analysis_peak_bytes(short)  # warm-up: lazy imports and caches are not per-track costs
    short_peak, short_segments = _analysis_peak_bytes(short)
    long_peak, long_segments = _analysis_peak_bytes(long)
    assert (short_segments, long_segments) == (100, 400)
    assert long_peak < 1.2 * short_peak + 2 * 2**20, (short_peak, long_peak)
    assert long_peak < 30 * 2**20
