"""File names that are not UTF-8: indexed, kept losslessly, shown safely (issue 28, defect 1).

POSIX names are bytes; old libraries are full of Latin-1 ones. Such a name used to
end the whole ingest with ``UnicodeEncodeError ... surrogates not allowed`` on every
re-run, so the library never completed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from audio_fixtures import chord, tone, write
from catalog.paths import display_path, displayable
from catalog.queries import resolve_track, track_details
from catalog.store import Catalog
from helpers import assert_index_consistent, run_ingest, tracks_by_path

REPO = Path(__file__).resolve().parents[1]
SR = 22050
LATIN1 = b"caf\xe9 cr\xe8me.wav"  # "café crème" in Latin-1: not valid UTF-8


def _write_bytes_name(folder: Path, name: bytes, audio, scratch: Path) -> str:
    """Write a WAV and rename it to a name made of raw bytes; returns the str Python uses."""
    tmp = write(scratch / "tmp.wav", audio, SR)  # soundfile cannot open such a name itself
    target = os.path.join(os.fsencode(folder), name)
    os.rename(tmp, target)
    return os.fsdecode(target)


@pytest.fixture
def odd_library(tmp_path: Path) -> tuple[Path, str, Path]:
    root = tmp_path / "music"
    (root / b"\xc4lbum".decode("latin-1")).mkdir(parents=True)  # a valid UTF-8 folder name
    odd_dir = Path(os.fsdecode(os.path.join(os.fsencode(root), b"d\xfcsseldorf")))
    odd_dir.mkdir()
    odd = _write_bytes_name(odd_dir, LATIN1, chord([261.6, 329.6, 392.0], 4.0), tmp_path)
    good = write(root / "plain.wav", tone(440, 4.0), SR)
    return root, odd, good


def test_a_latin1_name_is_indexed_and_the_run_goes_on(odd_library, data_dir, model):
    root, odd, good = odd_library
    summary = run_ingest([root], data_dir, model)
    assert summary.failed == []
    assert summary.analysed == 2
    rows = tracks_by_path(data_dir)
    assert set(rows) == {odd, str(good)}
    assert rows[odd].status == "ok"
    assert_index_consistent(data_dir)
    # the stored name is the file's own bytes: it opens the same file again
    assert os.fsencode(rows[odd].path) == os.path.join(os.fsencode(root), b"d\xfcsseldorf", LATIN1)
    assert Path(rows[odd].path).is_file()


def test_a_rerun_skips_it_and_a_move_keeps_its_identity(odd_library, data_dir, model):
    root, odd, _ = odd_library
    run_ingest([root], data_dir, model)
    again = run_ingest([root], data_dir, model)
    assert (again.analysed, again.skipped, again.failed) == (0, 2, [])
    before = tracks_by_path(data_dir)[odd].id
    moved = os.path.join(os.fsencode(root), b"moved \xff.wav")
    os.rename(os.fsencode(odd), moved)
    third = run_ingest([root], data_dir, model)
    assert third.reused == 1 and third.failed == []
    assert tracks_by_path(data_dir)[os.fsdecode(moved)].id == before


def test_queries_find_it_by_its_path(odd_library, data_dir, model):
    root, odd, _ = odd_library
    run_ingest([root], data_dir, model)
    with Catalog(data_dir) as catalog:
        track_id = resolve_track(catalog, odd)
        details = track_details(catalog, track_id)
    assert details["path"] == odd  # the real name, for the layers that open the file
    assert displayable(details)["path"].endswith("d\\xfcsseldorf/caf\\xe9 cr\\xe8me.wav")
    json.dumps(displayable(details), ensure_ascii=False).encode("utf-8")  # encodable


def test_display_path_escapes_only_the_bad_bytes():
    assert display_path(os.fsdecode(b"/m/caf\xe9.mp3")) == "/m/caf\\xe9.mp3"
    assert display_path("/m/café.mp3") == "/m/café.mp3"
    assert display_path(b"/m/\xff") == "/m/\\xff"
    assert displayable({"a": [os.fsdecode(b"\xe9")], "n": 3}) == {"a": ["\\xe9"], "n": 3}


def _sonic(*args: str) -> subprocess.CompletedProcess:
    """The real CLI in a real process: its stdout is a real UTF-8 stream, not a test buffer."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [sys.executable, "-m", "ui.cli", *args], cwd=REPO, env=env, capture_output=True,
        timeout=120,
    )  # fmt: skip


def test_the_cli_shows_the_name_escaped(odd_library, data_dir, model):
    root, odd, _ = odd_library
    run_ingest([root], data_dir, model)
    listing = _sonic("tracks", "--data-dir", str(data_dir))
    assert listing.returncode == 0, listing.stderr.decode()
    assert "caf\\xe9 cr\\xe8me.wav" in listing.stdout.decode("utf-8")
    as_json = _sonic("tracks", "--data-dir", str(data_dir), "--json")
    assert as_json.returncode == 0, as_json.stderr.decode()
    paths = [t["path"] for t in json.loads(as_json.stdout)["tracks"]]
    assert display_path(odd) in paths
    shown = _sonic("show", odd, "--data-dir", str(data_dir))
    assert shown.returncode == 0, shown.stderr.decode()
    assert "caf\\xe9" in shown.stdout.decode("utf-8")


def test_a_failure_naming_the_file_is_recorded(tmp_path, data_dir, model):
    root = tmp_path / "music"
    root.mkdir()
    bad = os.path.join(os.fsencode(root), b"bro\xefken.flac")
    with open(bad, "wb") as fh:
        fh.write(b"not audio at all\n" * 20)
    good = write(root / "fine.wav", tone(330, 4.0), SR)
    summary = run_ingest([root], data_dir, model)
    assert summary.analysed == 1
    assert [p for p, _ in summary.failed] == [os.fsdecode(bad)]
    rows = tracks_by_path(data_dir)
    assert rows[os.fsdecode(bad)].status == "failed"
    assert rows[os.fsdecode(bad)].error
    assert rows[str(good)].status == "ok"
    again = run_ingest([root], data_dir, model)  # recorded once, not retried
    assert (again.analysed, again.skipped, again.failed) == (0, 2, [])


def test_such_a_name_decodes_with_the_same_decoder_as_any_other(tmp_path):
    from embeddings.audio import open_audio

    plain = write(tmp_path / "plain.flac", chord([220.0, 277.2, 329.6], 3.0), SR)
    odd = os.path.join(os.fsencode(tmp_path), b"\xe9t\xe9.flac")
    with open(odd, "wb") as fh:
        fh.write(plain.read_bytes())
    streams = [open_audio(Path(p), SR) for p in (plain, os.fsdecode(odd))]
    assert streams[0].info.decoder == streams[1].info.decoder == "libsndfile/flac"
    audio = [np.concatenate(list(s.blocks)) for s in streams]
    np.testing.assert_array_equal(audio[0], audio[1])


def test_an_unreadable_file_with_such_a_name_gets_a_clean_reason(tmp_path):
    from embeddings.audio import DecodeError, open_audio

    odd = os.path.join(os.fsencode(tmp_path), b"\xe9.mp3")
    with open(odd, "wb") as fh:
        fh.write(b"not audio at all\n" * 20)
    with pytest.raises(DecodeError) as caught:
        open_audio(Path(os.fsdecode(odd)), SR)
    assert "libsndfile: format not recognised" in str(caught.value)
    assert "\\xe9" not in str(caught.value) and "b'" not in str(caught.value)
