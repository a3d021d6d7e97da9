"""Reading audio for training, pretraining and evaluation: every format ingest reads.

A user's own library is often M4A (AAC). Ingest decodes it through FFmpeg; the
training side used to fall back on audioread, which needs an ``ffmpeg`` program
that is not there, so M4A files were skipped and one broken file ended a
``sonic train`` run. These tests pin the shared readers to ingest's samples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audio_fixtures import chord, tone, write, write_m4a
from embeddings.audio import DecodeError, audio_info, decode_all, read_audio, silence_reason
from embeddings.training.dataset import load_audio, load_excerpt

SR = 22050


@pytest.fixture(scope="module")
def m4a(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("m4a") / "sweep.m4a"
    return write_m4a(path, chord([220, 990], 8, 44100), 44100)


def test_m4a_reads_through_ffmpeg_with_ingests_samples(m4a: Path) -> None:
    info = audio_info(m4a)
    assert info.decoder.startswith("ffmpeg/") and info.sample_rate == 44100
    assert abs(info.duration_s - 8.0) < 0.1
    audio, rate, duration = load_audio(m4a, SR)
    assert rate == 44100 and abs(duration - 8.0) < 0.1
    np.testing.assert_array_equal(audio, decode_all(m4a, SR))  # what ingest would index


def test_m4a_excerpt_is_the_same_span_of_the_whole_decode(m4a: Path) -> None:
    whole, _ = read_audio(m4a, SR)
    part, _ = read_audio(m4a, SR, start_s=2.5, max_seconds=3.0)
    start = int(2.5 * SR)
    np.testing.assert_array_equal(part, whole[start : start + 3 * SR])
    excerpt, offset, duration = load_excerpt(m4a, SR, max_seconds=3.0, seed=1)
    assert 0.0 < offset < 5.0 and abs(duration - 8.0) < 0.1
    start = int(round(offset * SR))
    np.testing.assert_array_equal(excerpt, whole[start : start + 3 * SR])


def test_libsndfile_excerpt_seeks_to_the_same_samples(tmp_path: Path) -> None:
    path = write(tmp_path / "a.flac", tone(330, 10, 44100), 44100)
    whole, info = read_audio(path, SR)
    assert info.decoder == "libsndfile/flac" and info.duration_s == 10.0
    np.testing.assert_allclose(whole, decode_all(path, SR), atol=1e-4)
    part, _ = read_audio(path, SR, start_s=4.0, max_seconds=2.0)
    assert len(part) == 2 * SR
    # soxr started mid-file: equal away from the edges of the excerpt
    np.testing.assert_allclose(part[500:-500], whole[4 * SR + 500 : 6 * SR - 500], atol=1e-3)


def test_bad_files_raise_the_reason(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    text = tmp_path / "list.m4a"
    text.write_text("a shopping list, not music\n" * 40)
    for read in (audio_info, lambda p: read_audio(p, SR)):
        with pytest.raises(DecodeError, match=r"empty file \(0 bytes\)"):
            read(empty)
        with pytest.raises(DecodeError, match="not a readable audio file.*libsndfile.*ffmpeg"):
            read(text)


def test_an_unreadable_file_is_not_said_to_be_missing(tmp_path: Path) -> None:
    """libsndfile calls an unknown format 'does not exist'; the user is told what is true."""
    garbage = tmp_path / "garbage.mp3"
    garbage.write_bytes(b"not audio" * 100)
    with pytest.raises(DecodeError) as caught:
        read_audio(garbage, SR)
    reason = str(caught.value)
    assert "does not exist" not in reason and "format not recognised" in reason
    assert str(garbage) not in reason and "Errno" not in reason  # the caller names the file


def test_silence_is_named_with_its_level() -> None:
    assert silence_reason(np.zeros(100, np.float32)) == "silent: peak level -inf dBFS"
    assert silence_reason(np.full(100, 1e-5, np.float32)) == "silent: peak level -100 dBFS"
    assert silence_reason(np.zeros(0, np.float32)) == "no audio decoded"
    assert silence_reason(tone(440, 0.1, SR)) is None
