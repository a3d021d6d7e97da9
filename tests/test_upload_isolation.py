"""Uploads are decoded in a limited child process, never in the service (issue 28, defect 3).

``ingest.upload_decode`` runs the decoder under ``RLIMIT_AS`` and ``RLIMIT_CPU``.
Checked through the real REST route of a running server: a clip whose decode
needs more memory than the limit (made small here so a short file needs more) is
refused with a reason while the service's own memory stays where it was, and the
same clip under the default limit is analysed exactly as an in-process decode
would be. A decode that overruns its time is stopped with a reason too.
"""

from __future__ import annotations

import os

import httpx
import numpy as np
import pytest
from fuzz_files import wav_header
from service_fixtures import running_server

from audio_fixtures import chord, write
from ingest import upload_decode
from ingest.clip import ClipAnalyser, ClipError, decode_clip
from ingest.upload_decode import decode_here, decode_isolated
from ui.service import create_app
from ui.state import ServiceState, Settings

SR = 22050


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """Three minutes at 44.1 kHz: 16 MB of file, 16 MB of float32 samples once decoded."""
    audio = np.tile(chord([220.0, 277.0, 330.0], 10.0, sr=44100), 18)
    return write(tmp_path_factory.mktemp("clip") / "long.wav", audio, 44100)


def test_the_child_decodes_what_this_process_would(long_clip):
    here, cut_here = decode_here(long_clip, SR, 60.0)
    there, cut_there = decode_clip(long_clip, SR, 60.0)
    assert cut_here and cut_there and len(there) == 60 * SR
    np.testing.assert_array_equal(there, here)


def test_limits_stop_the_child_with_a_reason(long_clip, tmp_path):
    with pytest.raises(ClipError, match="more than the 24 MB an upload may use"):
        decode_isolated(long_clip, SR, memory_bytes=24 << 20)
    with pytest.raises(ClipError, match="longer than 0.05 s"):
        decode_isolated(long_clip, SR, wall_seconds=0.05)
    lying = tmp_path / "rate-1hz.wav"  # refused before anything is allocated, as before
    lying.write_bytes(wav_header(1, 1, 16, 4000) + bytes(4000))
    with pytest.raises(ClipError, match="sample rate"):
        decode_isolated(lying, SR)


def test_an_upload_too_big_to_decode_leaves_the_service_as_it_was(
    tmp_path, model, long_clip, monkeypatch
):
    data_dir = tmp_path / "data"
    state = ServiceState(Settings(data_dir=data_dir, device="cpu"), model=model)
    app = create_app(data_dir, state=state, mount_ui=False)
    upload = {"file": ("long.wav", long_clip.read_bytes())}
    with running_server(app) as base, httpx.Client(base_url=base, timeout=300) as client:
        ok = client.post("/similar", files=upload)
        assert ok.status_code == 200, ok.text
        audio, cut = decode_here(long_clip, SR, 900)
        expected = ClipAnalyser(model, "cpu").analyse_audio(audio, "mean", cut)
        got = ok.json()["analysis"]
        assert got["duration_s"] == pytest.approx(expected.duration_s)
        assert got["probabilities"] == pytest.approx(
            dict(zip(expected.genres, map(float, expected.probabilities), strict=True)), abs=1e-4
        )

        monkeypatch.setattr(upload_decode, "MEMORY_BYTES", 24 << 20)  # the service's limit
        before = _rss_bytes()  # the server runs in this process, in a thread
        refused = client.post("/similar", files=upload)
        assert refused.status_code == 422
        assert "more than the 24 MB an upload may use" in refused.json()["detail"]
        assert _rss_bytes() - before < 24 << 20  # the decode never happened in here
        assert client.get("/health").status_code == 200
