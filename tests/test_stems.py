"""Stem separation and its cache, with a tiny randomly initialised HTDemucs.

The weights go into a local Demucs model folder built here (a ``.yaml`` bag and a
checksummed ``<signature>.th`` package), so the real ``get_model(name, repo=...)``
loading path runs. Nothing is downloaded.
"""

from __future__ import annotations

import json
import random
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from demucs.apply import TensorChunk, apply_model
from demucs.pretrained import get_model
from demucs_fixtures import SOURCES, write_tiny_weights
from typer.testing import CliRunner

import ingest.stems.separator as separator_module
from catalog.queries import track_details
from catalog.records import Analysis, AudioFacts, FileFacts, Tags
from catalog.schema import StemStatus
from catalog.stems import get_stem_set
from catalog.store import Catalog
from ingest.hashing import content_hash
from ingest.stems import (
    SplitStream,
    StemSeparationError,
    StemSeparator,
    StemSettings,
    StemWeightsError,
    load_demucs_model,
    prune_stems,
    remix_track,
    separate_many,
    separate_track,
    stem_directory,
)

MODEL = "tiny_htdemucs"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # The tiny model is latency-bound; on a busy 2-core box extra threads only spin.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    """A local Demucs model folder: ``tiny_htdemucs.yaml`` naming one checksummed package."""
    return write_tiny_weights(tmp_path_factory.mktemp("demucs_models"), MODEL)


@pytest.fixture(scope="module")
def reference_model(models_dir):
    """The same weights as the separator loads, for computing what Demucs itself outputs."""
    return get_model(MODEL, repo=models_dir)


@pytest.fixture
def catalog(request, tmp_path):
    """The test's catalog; on PostgreSQL too for a test that asks for ``catalog_url``."""
    url = None
    if "catalog_url" in request.fixturenames:
        url = request.getfixturevalue("catalog_url")  # sets $SONIC_DATABASE_URL first
    with Catalog(tmp_path / "data") as cat:
        assert cat.is_postgres == (url is not None)
        yield cat


@pytest.fixture
def model_calls(monkeypatch):
    """Counts calls into Demucs' apply_model made by the separator."""
    calls = {"n": 0}
    real = separator_module.apply_model

    def spy(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(separator_module, "apply_model", spy)
    return calls


def write_audio(path: Path, seconds: float, rate: int, channels: int, seed: int = 0) -> np.ndarray:
    """A chord plus clicks plus a little noise; different seeds give different content."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    tone = sum(np.sin(2 * np.pi * f * t) for f in (110.0 * (1 + seed), 277.0, 440.0)) / 3
    clicks = (np.arange(n) % (rate // 4) < 40).astype(float)
    mono = 0.05 * tone + 0.05 * clicks + 0.01 * rng.standard_normal(n)
    audio = np.stack([mono * (1 - 0.3 * c) for c in range(channels)], axis=1).astype(np.float32)
    subtype = "FLOAT" if path.suffix == ".wav" else None
    sf.write(path, audio, rate, subtype=subtype)
    return audio


def add_track(catalog: Catalog, path: Path, genre: str = "rock", track_id: int | None = None):
    """Record a track the way an ingest would (the genre analysis is made up)."""
    stat = path.stat()
    facts = FileFacts(str(path), stat.st_size, stat.st_mtime_ns, content_hash(path), "wav")
    info = sf.info(str(path))
    genres = [genre, "jazz" if genre != "jazz" else "rock"]
    analysis = Analysis(
        model_id="test-model",
        genres=genres,
        probabilities=np.array([0.9, 0.1]),
        embedding=np.full(4, 0.5, dtype=np.float32),
        segment_probabilities=np.zeros((0, 2)),
        segment_seconds=3.0,
    )
    audio = AudioFacts(info.duration, info.samplerate, info.channels)
    return catalog.record_analysis(facts, Tags(), audio, analysis, track_id)


def separator(models_dir: Path, **settings) -> StemSeparator:
    settings.setdefault("shifts", 0)
    return StemSeparator(StemSettings(model=MODEL, **settings), models_dir=models_dir, device="cpu")


def reference_stems(model, audio: np.ndarray, shifts: int = 0, seed: int = 0) -> np.ndarray:
    """(sources, frames, channels) from apply_model on the whole track (the Demucs way)."""
    mix = torch.from_numpy(np.ascontiguousarray(audio.T))[None]
    random.seed(seed)
    with torch.no_grad():
        out = apply_model(model, mix, shifts=shifts, split=True, overlap=0.25)[0]
    return out.numpy().transpose(0, 2, 1)


# -- separation ------------------------------------------------------------------------------


def test_four_stems_with_the_tracks_length_and_rate(tmp_path, catalog, models_dir):
    path = tmp_path / "mono22k.flac"
    audio = write_audio(path, 2.3, 22050, channels=1)
    track_id = add_track(catalog, path)

    result = separate_track(catalog, track_id, separator(models_dir))

    assert not result.cached
    assert sorted(result.record.stems) == sorted(SOURCES)
    for name, stem_path in result.record.stems.items():
        info = sf.info(str(stem_path))
        assert (info.frames, info.samplerate, info.format) == (len(audio), 22050, "FLAC"), name
        assert stem_path.is_relative_to(catalog.paths.stems)
        assert content_hash(path) in stem_path.parts  # keyed by content, not by track or name
    record = result.record
    assert (record.key.model, record.status, record.frames) == (MODEL, StemStatus.OK, len(audio))
    assert record.settings["overlap"] == 0.25
    artefacts = track_details(catalog, track_id)["artefacts"]["stems"]
    assert artefacts == {name: str(p) for name, p in record.stems.items()}


def test_streamed_stems_equal_apply_model_on_the_whole_track(
    tmp_path, catalog, models_dir, reference_model
):
    path = tmp_path / "stereo.wav"
    audio = write_audio(path, 3.3, 44100, channels=2)
    track_id = add_track(catalog, path)
    for shifts in (0, 1):  # one shift: same random offset as Demucs draws after the same seed
        random.seed(7)
        result = separate_track(
            catalog, track_id, separator(models_dir, shifts=shifts, format="wav")
        )
        expected = reference_stems(reference_model, audio, shifts=shifts, seed=7)
        for i, name in enumerate(SOURCES):
            got, rate = sf.read(result.record.stems[name], dtype="float32")
            assert rate == 44100
            np.testing.assert_allclose(got, expected[i], atol=1e-6, err_msg=name)


def test_second_call_is_a_cache_hit_without_the_model(
    tmp_path, catalog, models_dir, model_calls, monkeypatch, catalog_url
):
    path = tmp_path / "a.wav"
    write_audio(path, 1.5, 44100, channels=2)
    track_id = add_track(catalog, path)
    first = separate_track(catalog, track_id, separator(models_dir))
    assert not first.cached and model_calls["n"] > 0
    calls = model_calls["n"]

    loads = []
    monkeypatch.setattr(separator_module, "load_demucs_model", lambda *a: loads.append(a))
    again = separator(models_dir)
    second = separate_track(catalog, track_id, again)

    assert second.cached
    assert model_calls["n"] == calls and loads == [] and again._model is None
    assert second.record.stems == first.record.stems


def test_a_moved_or_copied_file_reuses_its_stems(
    tmp_path, catalog, models_dir, model_calls, catalog_url
):
    path = tmp_path / "song.wav"
    write_audio(path, 1.5, 44100, channels=2)
    track_id = add_track(catalog, path)
    first = separate_track(catalog, track_id, separator(models_dir))
    calls = model_calls["n"]

    moved = tmp_path / "elsewhere" / "renamed.wav"
    moved.parent.mkdir()
    shutil.move(path, moved)
    stat = moved.stat()  # what ingest does on finding the same content under a new path
    catalog.touch(
        track_id, FileFacts(str(moved), stat.st_size, stat.st_mtime_ns, content_hash(moved))
    )
    after_move = separate_track(catalog, track_id, separator(models_dir))
    copy = tmp_path / "copy.wav"
    shutil.copyfile(moved, copy)
    copy_id = add_track(catalog, copy)
    of_copy = separate_track(catalog, copy_id, separator(models_dir))

    assert after_move.cached and of_copy.cached
    assert after_move.record.stems == first.record.stems == of_copy.record.stems
    assert model_calls["n"] == calls


def test_a_modified_file_does_not_reuse_stems(tmp_path, catalog, models_dir, model_calls):
    path = tmp_path / "song.wav"
    write_audio(path, 1.5, 44100, channels=2, seed=1)
    track_id = add_track(catalog, path)
    first = separate_track(catalog, track_id, separator(models_dir))
    calls = model_calls["n"]

    write_audio(path, 1.5, 44100, channels=2, seed=2)  # edited in place, not re-ingested yet
    second = separate_track(catalog, track_id, separator(models_dir))

    assert not second.cached and model_calls["n"] > calls
    assert second.record.key.content_hash == content_hash(path) != first.record.key.content_hash
    old = sf.read(first.record.stems["vocals"])[0]
    new = sf.read(second.record.stems["vocals"])[0]
    assert not np.allclose(old, new)

    add_track(catalog, path, track_id=track_id)  # the next ingest records the new content
    pruned = prune_stems(catalog)
    assert pruned["stem_sets_removed"] == 1
    assert get_stem_set(catalog, first.record.key) is None
    assert not first.record.directory.exists()
    assert get_stem_set(catalog, second.record.key).status == StemStatus.OK


def test_a_deleted_stem_file_is_detected_and_recomputed(tmp_path, catalog, models_dir, model_calls):
    path = tmp_path / "a.wav"
    write_audio(path, 1.5, 44100, channels=2)
    track_id = add_track(catalog, path)
    first = separate_track(catalog, track_id, separator(models_dir))
    calls = model_calls["n"]
    first.record.stems["bass"].unlink()

    again = separate_track(catalog, track_id, separator(models_dir))

    assert not again.cached and model_calls["n"] > calls
    assert "bass" in again.recomputed_because
    assert all(p.is_file() for p in again.record.stems.values())
    assert again.record.stems == first.record.stems


def test_split_stream_memory_does_not_grow_with_length():
    """Overlap-add of an identity 'model' over 2 minutes: exact output, bounded buffers."""
    rate, segment_length = 8000, 8000
    sources, channels = 4, 2

    def identity(chunk: TensorChunk) -> torch.Tensor:
        x = chunk.padded(chunk.length)  # what the chunk sees, no extra context
        return (x[0] / sources).expand(sources, -1, -1)

    stream = SplitStream(identity, segment_length, 0.25, sources, channels, torch.device("cpu"))
    signal = torch.randn(channels, 120 * rate)
    outputs, peak = [], 0
    for start in range(0, signal.shape[-1], 3000):
        outputs += stream.push(signal[:, start : start + 3000])
        peak = max(peak, stream.buffer.shape[-1], stream.acc.shape[-1])
    outputs += stream.finish()
    out = torch.cat(outputs, dim=-1)

    assert out.shape == (sources, channels, signal.shape[-1])
    torch.testing.assert_close(out.sum(0), signal, atol=1e-5, rtol=1e-5)
    assert peak <= 2 * segment_length + 3000  # a couple of segments, whatever the length


@pytest.mark.parametrize("frames", [1, 5999, 6000, 6001, 8000, 8001, 47_123])
@pytest.mark.parametrize("prefix", [0, 2205])
def test_split_stream_plans_exactly_the_chunks_it_runs(frames, prefix):
    """The total a face shows ("chunk N / M") is the count the split really runs."""
    ran = []

    def silent(chunk: TensorChunk) -> torch.Tensor:
        ran.append(chunk.offset)
        return torch.zeros(4, 2, chunk.length)

    stream = SplitStream(silent, 8000, 0.25, 4, 2, torch.device("cpu"), prefix=prefix)
    planned = stream.planned_chunks(frames)
    for start in range(0, frames, 1500):
        stream.push(torch.zeros(2, min(1500, frames - start)))
    stream.finish()
    assert stream.chunks_done == len(ran) == planned


def test_chunk_reports_count_up_to_the_total_and_a_raise_stops_with_nothing_kept(
    tmp_path, catalog, models_dir
):
    path = tmp_path / "six.wav"
    write_audio(path, 6.0, 44100, channels=2)
    track_id = add_track(catalog, path)
    reports: list[tuple[int, int | None]] = []
    sep = separator(models_dir, shifts=1)
    sep.chunks = lambda done, total: reports.append((done, total))
    separate_track(catalog, track_id, sep)
    done = [d for d, _ in reports]
    assert done[:-1] == list(range(1, len(done)))  # one report per chunk, in order
    assert done[-1] == done[-2] == sep.chunks_run  # and a last one: all ran
    totals = {t for _, t in reports}
    assert totals == {sep.chunks_run}  # the total known from the start, and exact
    # 6 s in 0.75-s strides, plus up to 0.5 s of random shift
    assert 8 <= sep.chunks_run <= 9

    class Stop(BaseException):  # what ui.jobs.JobCancelled is: not an Exception
        pass

    def stop_at_three(done, total):
        if done == 3:
            raise Stop

    other = tmp_path / "other.wav"
    write_audio(other, 6.0, 44100, channels=2, seed=1)
    other_id = add_track(catalog, other)
    sep = separator(models_dir, shifts=1)
    sep.chunks = stop_at_three
    with pytest.raises(Stop):
        separate_track(catalog, other_id, sep)
    assert sep.chunks_run == 3
    key = sep.settings.key(content_hash(other))
    assert get_stem_set(catalog, key) is None  # neither stems nor a failure recorded
    folder = stem_directory(catalog, key)
    assert [p.name for p in folder.iterdir()] == [".lock"]  # no partial stems left
    assert track_details(catalog, other_id)["artefacts"]["stems"] == {}


# -- remix --------------------------------------------------------------------------------------


def test_remix_at_unity_gain_reconstructs_the_model_output_sum(
    tmp_path, catalog, models_dir, reference_model
):
    path = tmp_path / "a.wav"
    audio = write_audio(path, 2.2, 44100, channels=2)
    track_id = add_track(catalog, path)
    sep = separator(models_dir)
    expected = reference_stems(reference_model, audio)

    full = remix_track(catalog, track_id, sep, out_path=tmp_path / "all.wav")
    karaoke = remix_track(catalog, track_id, sep, mute=["vocals"], format="wav")
    bass = remix_track(catalog, track_id, sep, solo=["bass"], format="wav")

    assert full.gains == {name: 1.0 for name in sorted(SOURCES)}
    got, rate = sf.read(full.path, dtype="float32")
    assert rate == 44100 and len(got) == len(audio)
    # FLAC stems are 24-bit: four of them sum within a few LSB of the float output.
    np.testing.assert_allclose(got, expected.sum(axis=0), atol=1e-5)
    np.testing.assert_allclose(
        sf.read(karaoke.path, dtype="float32")[0], expected[:3].sum(axis=0), atol=1e-5
    )
    np.testing.assert_allclose(sf.read(bass.path, dtype="float32")[0], expected[1], atol=1e-5)
    assert karaoke.stems_cached and karaoke.path.is_relative_to(catalog.paths.stems)


# -- weights ------------------------------------------------------------------------------------


def test_missing_weights_give_an_error_naming_both_options(tmp_path, catalog, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    for folder in (empty, tmp_path / "absent"):
        with pytest.raises(StemWeightsError) as info:
            load_demucs_model("htdemucs", folder)
        assert "--models-dir" in str(info.value) and "SONIC_DEMUCS_DIR" in str(info.value)

    def offline(name, repo=None):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.delenv("SONIC_DEMUCS_DIR", raising=False)
    monkeypatch.setattr("demucs.pretrained.get_model", offline)
    with pytest.raises(StemWeightsError) as info:
        load_demucs_model("htdemucs")
    message = str(info.value)
    assert "download" in message and "--models-dir" in message and "SONIC_DEMUCS_DIR" in message

    path = tmp_path / "a.wav"  # a missing model is not the track's fault: nothing recorded
    write_audio(path, 1.0, 44100, channels=2)
    track_id = add_track(catalog, path)
    monkeypatch.setenv("SONIC_DEMUCS_DIR", str(empty))
    sep = StemSeparator(StemSettings(model="htdemucs", shifts=0), device="cpu")
    with pytest.raises(StemWeightsError):
        separate_track(catalog, track_id, sep)
    assert get_stem_set(catalog, sep.settings.key(content_hash(path))) is None


# -- batch, prune, CLI --------------------------------------------------------------------------


def test_batch_by_genre_records_failures_and_prune_drops_vanished_tracks(
    tmp_path, catalog, models_dir, catalog_url
):
    good, bad, jazz = (tmp_path / f"{n}.wav" for n in ("good", "bad", "jazz"))
    write_audio(good, 1.2, 44100, channels=2, seed=1)
    write_audio(bad, 1.2, 44100, channels=2, seed=2)
    write_audio(jazz, 1.2, 44100, channels=2, seed=3)
    good_id, bad_id = add_track(catalog, good), add_track(catalog, bad)
    add_track(catalog, jazz, genre="jazz")
    bad.write_bytes(b"RIFF" + bytes(300))  # damaged after ingest

    summary = separate_many(catalog, separator(models_dir), genre="rock")
    assert (summary.tracks, summary.separated, len(summary.failed)) == (2, 1, 1)
    assert summary.failed[0][0] == bad_id
    key = StemSettings(model=MODEL, shifts=0).key(content_hash(bad))
    assert get_stem_set(catalog, key).status == StemStatus.FAILED

    again = separate_many(catalog, separator(models_dir), genre="rock")
    assert (again.cached, again.skipped_failed, again.separated) == (1, 1, 0)
    retried = separate_many(catalog, separator(models_dir), genre="rock", retry_failed=True)
    assert len(retried.failed) == 1

    done = separate_track(catalog, good_id, separator(models_dir))
    catalog.mark_missing([good_id])
    assert prune_stems(catalog, keep_missing=True)["stem_sets_removed"] == 1  # the failed one
    assert done.record.directory.exists()
    result = prune_stems(catalog)
    assert result["stem_sets_removed"] == 1 and result["bytes_freed"] > 0
    assert not done.record.directory.exists()
    assert track_details(catalog, good_id)["artefacts"]["stems"] == {}


def test_cli_stems_remix_and_prune(tmp_path, models_dir):
    from ui.cli import app

    data = tmp_path / "data"
    path = tmp_path / "song.wav"
    write_audio(path, 1.2, 44100, channels=2)
    with Catalog(data) as cat:
        track_id = add_track(cat, path)
    runner = CliRunner()
    common = ["--data-dir", str(data), "--demucs-model", MODEL, "--shifts", "0", "--no-progress"]

    first = runner.invoke(app, ["stems", str(path), *common, "--models-dir", str(models_dir)])
    assert first.exit_code == 0, first.output
    assert "separated" in first.output
    second = runner.invoke(app, ["stems", str(track_id), *common, "--json"])
    assert second.exit_code == 0, second.output  # cached: no weights needed at all
    assert json.loads(second.output)["cached"] is True

    remixed = runner.invoke(
        app, ["remix", str(track_id), *common, "--karaoke", "--output", str(tmp_path / "k.wav")]
    )
    assert remixed.exit_code == 0, remixed.output
    assert sf.info(str(tmp_path / "k.wav")).frames == int(1.2 * 44100)

    batch = runner.invoke(app, ["stems", "--all", "--genre", "rock", *common, "--json"])
    assert batch.exit_code == 0 and json.loads(batch.output)["cached"] == 1

    no_weights = runner.invoke(
        app, ["stems", str(track_id), *common, "--models-dir", str(tmp_path), "--force"]
    )
    assert no_weights.exit_code == 1
    assert "--models-dir" in no_weights.output and "SONIC_DEMUCS_DIR" in no_weights.output

    pruned = runner.invoke(app, ["stems", "--prune", "--data-dir", str(data), "--json"])
    assert pruned.exit_code == 0 and json.loads(pruned.output)["stem_sets_removed"] == 0
    assert runner.invoke(app, ["stems", "--data-dir", str(data)]).exit_code == 2


def test_settings_and_format_are_part_of_the_key(tmp_path, catalog, models_dir):
    path = tmp_path / "a.wav"
    write_audio(path, 1.0, 44100, channels=2)
    track_id = add_track(catalog, path)
    flac = separate_track(catalog, track_id, separator(models_dir))
    wav = separate_track(catalog, track_id, separator(models_dir, format="wav"))
    overlap = separate_track(catalog, track_id, separator(models_dir, overlap=0.5))
    keys = {flac.record.key, wav.record.key, overlap.record.key}
    assert len(keys) == 3 and not wav.cached and not overlap.cached
    assert wav.record.stems["vocals"].suffix == ".wav"
    with pytest.raises(ValueError):
        StemSettings(format="ogg")
    with pytest.raises(StemSeparationError):
        mp3 = tmp_path / "hi.wav"
        write_audio(mp3, 0.5, 96000, channels=2)
        separate_track(catalog, add_track(catalog, mp3), separator(models_dir, format="mp3"))
