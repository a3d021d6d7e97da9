"""The sonic CLI: every read command answers in text and in JSON; exit codes mean something."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from embeddings.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from helpers import run_ingest, tracks_by_path
from ui.cli import app

runner = CliRunner()


@pytest.fixture
def catalog_dir(library, data_dir, model):
    run_ingest([library.root], data_dir, model)
    return data_dir


def sonic(*args: str):
    result = runner.invoke(app, list(args))
    return result


def test_genres_counts_every_analysed_track(catalog_dir, library):
    result = sonic("genres", "--data-dir", str(catalog_dir), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert sum(row["tracks"] for row in data) == len(library.good)
    text = sonic("genres", "--data-dir", str(catalog_dir))
    assert data[0]["genre"] in text.stdout


def test_tracks_browses_by_genre_and_lists_failures(catalog_dir, library):
    genres = json.loads(sonic("genres", "--data-dir", str(catalog_dir), "--json").stdout)
    top = genres[0]
    page = json.loads(
        sonic("tracks", "--genre", top["genre"], "--data-dir", str(catalog_dir), "--json").stdout
    )
    assert page["total"] == top["tracks"]
    confidences = [t["confidence"] for t in page["tracks"]]
    assert confidences == sorted(confidences, reverse=True)
    failed = sonic("tracks", "--status", "failed", "--data-dir", str(catalog_dir))
    assert failed.exit_code == 0
    assert "reason: empty file (0 bytes)" in failed.stdout
    by_text = json.loads(
        sonic("tracks", "-q", "Noisemakers", "--data-dir", str(catalog_dir), "--json").stdout
    )
    found = {t["path"] for t in by_text["tracks"]}  # the FLAC and its truncated copy
    assert found == {str(library.good["noise_flac"]), str(library.good["truncated_flac"])}


def test_similar_accepts_an_id_or_a_path(catalog_dir, library):
    path = str(library.good["chord_mp3"])
    track_id = tracks_by_path(catalog_dir)[path].id
    by_path = json.loads(
        sonic("similar", path, "-k", "3", "--data-dir", str(catalog_dir), "--json").stdout
    )
    by_id = json.loads(
        sonic("similar", str(track_id), "-k", "3", "--data-dir", str(catalog_dir), "--json").stdout
    )
    assert by_path == by_id
    assert by_id["track_id"] == track_id and len(by_id["neighbours"]) == 3
    text = sonic("similar", path, "-k", "3", "--data-dir", str(catalog_dir))
    assert text.stdout.count("#") >= 3


def test_similar_on_a_failed_track_explains_why(catalog_dir, library):
    result = sonic("similar", str(library.bad["silent"]), "--data-dir", str(catalog_dir))
    assert result.exit_code == 1
    assert "no embedding" in result.output and "silent" in result.output


def test_show_prints_everything_the_catalog_holds(catalog_dir, library, model):
    path = str(library.good["noise_flac"])
    data = json.loads(sonic("show", path, "--data-dir", str(catalog_dir), "--json").stdout)
    assert data["title"] == "Static" and data["artist"] == "The Noisemakers"
    assert set(data["probabilities"]) == set(model.genres)
    assert sum(data["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    assert len(data["timeline"]) == data["n_segments"] == 2
    assert data["artefacts"]["audio"] == path
    assert data["in_index"] is True
    text = sonic("show", path, "--data-dir", str(catalog_dir))
    assert "timeline:" in text.stdout and "probabilities:" in text.stdout
    missing = sonic("show", "/no/such/file.mp3", "--data-dir", str(catalog_dir))
    assert missing.exit_code == 1 and "no track" in missing.output


def test_status_reports_counts_and_index_health(catalog_dir, library):
    data = json.loads(sonic("status", "--data-dir", str(catalog_dir), "--json").stdout)
    assert data["tracks"]["ok"] == len(library.good)
    assert data["tracks"]["failed"] == len(library.bad)
    assert data["index"]["consistent"] is True
    assert data["index"]["file_vectors"] == len(library.good)
    (catalog_dir / "index.faiss").unlink()
    broken = json.loads(sonic("status", "--data-dir", str(catalog_dir), "--json").stdout)
    assert broken["index"]["consistent"] is False


def test_ingest_exit_codes(tmp_path, library):
    data_dir = str(tmp_path / "data")
    nothing = sonic("ingest", str(tmp_path / "nope"), "--data-dir", data_dir)
    assert nothing.exit_code == 1 and "no such file" in nothing.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = sonic("ingest", str(empty), "--data-dir", data_dir, "--no-progress")
    assert result.exit_code == 1 and "no audio files" in result.output
    only_bad = sonic("ingest", str(library.root / "bad"), "--data-dir", data_dir, "--json")
    assert only_bad.exit_code == 1
    summary = json.loads(only_bad.stdout)
    assert len(summary["failed"]) == len(library.bad)
    mixed = sonic("ingest", str(library.root), "--data-dir", data_dir, "--no-progress")
    assert mixed.exit_code == 0, mixed.output
    assert f"indexed {len(library.good)}" in mixed.stdout


def test_ingest_model_shipped_names_the_packaged_checkpoint(tmp_path, library):
    shipped = load_checkpoint(DEFAULT_CHECKPOINT).model_id
    one = next(iter(library.good.values()))
    result = sonic(
        "ingest", str(one), "--checkpoint", "shipped", "--data-dir", str(tmp_path), "--json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model_id"] == shipped


def _commands():
    """(name, click command) of every ``sonic`` command, walking the typer app."""
    import typer.main

    def walk(command, prefix):
        if hasattr(command, "commands"):  # a group: its commands, and theirs
            for name, sub in command.commands.items():
                yield from walk(sub, [*prefix, name])
        else:
            yield " ".join(prefix), command

    return list(walk(typer.main.get_command(app), []))


WIDE = {"COLUMNS": "200"}  # rich wraps long option names in an 80-column help box


def test_every_command_has_help():
    commands = _commands()
    assert len(commands) >= 15
    undocumented = []
    for name, command in commands:
        result = runner.invoke(app, [*name.split(), "--help"], env=WIDE)
        assert result.exit_code == 0, (name, result.output)
        assert "--json" in result.stdout, name
        for param in command.params:
            if param.param_type_name != "option" or param.hidden:
                continue
            if not (param.help or "").strip():
                undocumented.append(f"{name} {param.opts[0]}: no help")
            for spelling in param.opts + param.secondary_opts:
                if spelling not in result.stdout:
                    undocumented.append(f"{name} {spelling}: not in --help")
    assert undocumented == []


def test_one_name_per_concept_and_the_old_spellings_still_work():
    from ui.options import RENAMED_OPTIONS

    names = dict(_commands())
    for name, renamed in RENAMED_OPTIONS.items():
        spelled = {s for p in names[name].params for s in p.opts + p.secondary_opts}
        for old, new in renamed.items():
            assert new in spelled and old not in spelled, (name, old, new)
            help_text = runner.invoke(app, [name, "--help"], env=WIDE).stdout
            shown = re.search(rf"(?<![\w-]){re.escape(old)}(?![\w-])", help_text)
            assert shown is None, (name, old)  # hidden
            # Parsing fails on an unknown option before --help is acted on, so this
            # exits 0 only if the old spelling is still understood.
            result = runner.invoke(app, [name, old, "x", "--help"], env=WIDE)
            assert result.exit_code == 0, (name, old, result.output)
            assert f"{old} is deprecated" in result.stderr and new in result.stderr
    # A genre-model file is --checkpoint wherever a command reads one.
    for name in ("ingest", "explain", "serve", "evaluate-similarity"):
        assert "--checkpoint" in {s for p in names[name].params for s in p.opts}, name
    unknown = runner.invoke(app, ["genres", "--model", "x"])
    assert unknown.exit_code == 2  # not an alias everywhere: only where it was an option


def test_the_failed_listing_carries_reasons_in_json(catalog_dir, library):
    page = json.loads(
        sonic("tracks", "--status", "failed", "--data-dir", str(catalog_dir), "--json").stdout
    )
    assert page["total"] == len(library.bad) > 0
    assert all(t["status"] == "failed" and t["error"] for t in page["tracks"])
    assert "empty file (0 bytes)" in {t["error"] for t in page["tracks"]}
