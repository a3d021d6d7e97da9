"""Decoding: every format to 22,050 Hz mono, long files in bounded memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from audio_fixtures import tone, write
from embeddings.frontend import FrontendConfig
from ingest.decode import DecodeError, decode_all, open_audio
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


def test_long_track_is_streamed_in_bounded_memory(tmp_path):
    """20 minutes decode to ~106 MB of float32; the worker never holds more than a chunk."""
    path = write(tmp_path / "long.flac", tone(220, 20 * 60, 44100, amp=0.2), 44100)
    chunks = []

    def send(message):
        if message[0] == "chunk":
            chunks.append(len(message[3]))  # keep only the count, as the pipeline consumes
        elif message[0] == "done":
            chunks.append(message)

    tracemalloc.start()
    analyse_file(Task(0, str(path)), FrontendConfig(), send)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    done = chunks.pop()
    assert done[0] == "done" and done[3] == 400  # 1200 s / 3 s
    assert sum(chunks) == 400
    assert peak < 40 * 2**20, f"peak {peak / 2**20:.1f} MiB"
