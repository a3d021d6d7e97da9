"""Genres learnt from the library's own tags (issue 24): tags in, the model, views, tag review."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import mutagen
import numpy as np
import pytest
from mutagen.id3 import ID3, TCON
from typer.testing import CliRunner

from audio_fixtures import chord, clicks, noise, tone, write, write_m4a
from catalog.genre_names import GenreMappingError, load_mapping, normalise_genres
from catalog.genre_store import active_model, save_model
from catalog.records import GenreModelRecord
from catalog.store import Catalog
from embeddings.library_genres import (
    NotEnoughTags,
    choose_threshold,
    expected_calibration_error,
    fit_temperature,
    grouped_folds,
    learn_genres,
    softmax,
)
from helpers import run_ingest
from ingest.tags import read_tags
from ui.cli import app

runner = CliRunner()


def cli(data_dir: Path, *args: str):
    return runner.invoke(app, [*args, "--data-dir", str(data_dir)])


# -- normalisation -------------------------------------------------------------------------

NORMALISATION = [
    (["Hip-Hop"], ["hip-hop"]),
    (["Hip Hop"], ["hip-hop"]),
    (["Rap"], ["hip-hop"]),
    (["hiphop"], ["hip-hop"]),
    (["HIP_HOP "], ["hip-hop"]),
    (["R&B"], ["r&b"]),
    (["rnb"], ["r&b"]),
    (["Rhythm and Blues"], ["r&b"]),
    (["R'n'B"], ["r&b"]),
    (["(17)"], ["rock"]),  # ID3v1 numeric, in parentheses
    (["17"], ["rock"]),  # bare number
    (["(32)"], ["classical"]),
    (["(17)(18)"], ["rock", "electronic"]),  # two references: Rock, Techno
    (["(17)Hard Rock"], ["rock"]),  # a refinement replaces the number
    (["Rock/Pop"], ["rock", "pop"]),  # separators
    (["Jazz; Blues, Soul"], ["jazz", "blues", "soul"]),
    (["Hip Hop", "Rap"], ["hip-hop"]),  # multi-valued field, one genre once
    (["Metal", "rock"], ["metal", "rock"]),  # tag order kept
    (["Post Rock"], ["post-rock"]),  # outside the vocabulary: one tidy spelling
    (["post-rock"], ["post-rock"]),
    (["Other"], []),
    (["", "  "], []),
]


@pytest.mark.parametrize(("raw", "expected"), NORMALISATION)
def test_genre_tags_normalise_into_one_vocabulary(raw, expected):
    assert normalise_genres(raw) == expected


def test_the_mapping_file_wins_over_the_built_in_table(tmp_path: Path):
    path = tmp_path / "genres.toml"
    path.write_text(
        '[synonyms]\n"Britpop" = "Rock"\n"Rap" = "spoken word"\n"Rock/Pop" = "pop"\n'
        '"Other" = ""\n'
    )
    mapping = load_mapping(path)
    assert normalise_genres(["britpop"], mapping) == ["rock"]
    assert normalise_genres(["RAP"], mapping) == ["spoken-word"]
    assert normalise_genres(["Rock/Pop"], mapping) == ["pop"]  # the whole field first
    assert normalise_genres(["Rock/Britpop"], mapping) == ["rock"]
    assert normalise_genres(["Other", "Jazz"], mapping) == ["jazz"]
    assert load_mapping(tmp_path / "absent.toml") == {}


@pytest.mark.parametrize(
    "text", ['[synonyms\n"a" = "b"', '[synonyms]\n"a" = 3\n', 'synonyms = "rock"\n']
)
def test_a_broken_mapping_file_is_a_clear_error(tmp_path: Path, text: str):
    path = tmp_path / "genres.toml"
    path.write_text(text)
    with pytest.raises(GenreMappingError, match="genres.toml"):
        load_mapping(path)


def test_genre_fields_are_read_raw_from_id3_vorbis_and_mp4(tmp_path: Path):
    mp3 = write(tmp_path / "a.mp3", tone(440, 2, 22050), 22050)
    id3 = ID3()
    id3.add(TCON(encoding=3, text=["(32)", "Hip Hop"]))
    id3.save(str(mp3))
    flac = write(tmp_path / "b.flac", tone(440, 2, 22050), 22050)
    audio = mutagen.File(str(flac))
    audio["GENRE"] = ["Rap", "R&B"]
    audio.save()
    m4a = write_m4a(tmp_path / "c.m4a", tone(440, 2, 22050), 22050)
    audio = mutagen.File(str(m4a))
    if audio.tags is None:
        audio.add_tags()
    audio.tags["\xa9gen"] = ["Rhythm and Blues"]
    audio.save()
    bare = write(tmp_path / "d.wav", tone(440, 2, 22050), 22050)
    assert read_tags(mp3).genres == ["(32)", "Hip Hop"]  # as written, numeric form kept
    assert read_tags(flac).genres == ["Rap", "R&B"]
    assert read_tags(m4a).genres == ["Rhythm and Blues"]
    assert read_tags(bare).genres == []
    assert normalise_genres(read_tags(mp3).genres) == ["classical", "hip-hop"]


# -- the model on synthetic embeddings ---------------------------------------------------------


def _clusters(rng, genres=4, albums=4, per_album=8, spread=1.0, album_spread=0.5, dim=512):
    """Unit vectors around one centre per genre, each album offset from it."""
    centres = rng.normal(size=(genres, dim))
    x, labels, groups = [], [], []
    for g in range(genres):
        for a in range(albums):
            offset = rng.normal(size=dim) * album_spread
            for _ in range(per_album):
                v = centres[g] + offset + rng.normal(size=dim) * spread
                x.append(v / np.linalg.norm(v))
                labels.append(f"genre{g}")
                groups.append(f"album{g}-{a}")
    return np.array(x, dtype=np.float32), labels, groups, centres


def test_fitting_recovers_known_clusters_and_reports_left_out_genres():
    rng = np.random.default_rng(0)
    x, labels, groups, centres = _clusters(rng, per_album=5)
    rare = rng.normal(size=(3, 512)).astype(np.float32)
    x = np.vstack([x, rare / np.linalg.norm(rare, axis=1, keepdims=True)])
    labels += ["rare"] * 3
    groups += ["rare-album"] * 3
    labels[0] = None  # one untagged track: not trained on
    learnt = learn_genres(x, labels, groups, min_tracks=8)
    assert learnt.head.genres == ["genre0", "genre1", "genre2", "genre3"]
    assert learnt.left_out == {
        "rare": {"tracks": 3, "albums": 1, "reason": "fewer than 8 tracks"}
    }
    assert 0 not in set(learnt.used.tolist())
    assert learnt.metrics["accuracy"] > 0.95
    assert set(learnt.metrics["per_genre"]) == set(learnt.head.genres)
    # new tracks near each centre come out as that genre
    fresh = centres + rng.normal(size=centres.shape)
    predicted = learnt.head.probabilities(fresh / np.linalg.norm(fresh, axis=1, keepdims=True))
    assert predicted.argmax(axis=1).tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(predicted.sum(axis=1), 1.0, atol=1e-5)


def test_grouped_cross_validation_never_splits_an_album_and_does_not_reward_album_recognition():
    rng = np.random.default_rng(1)
    # the genre is a coin per album, the sound only the album's: nothing to learn about genre
    x, groups, labels = [], [], []
    for a in range(24):
        centre = rng.normal(size=512) * 3
        label = ["rock", "jazz"][a % 2]
        for _ in range(8):
            v = centre + rng.normal(size=512)
            x.append(v / np.linalg.norm(v))
            groups.append(f"album{a}")
            labels.append(label)
    x = np.array(x, dtype=np.float32)
    y = np.array([0 if label == "rock" else 1 for label in labels])
    for train, test in grouped_folds(y, np.array(groups), 5):
        assert not set(np.array(groups)[train]) & set(np.array(groups)[test])
    learnt = learn_genres(x, labels, groups, min_tracks=8)
    assert learnt.metrics["accuracy"] < 0.75  # about chance (0.5): it cannot know
    # the same data split by track instead would claim album recognition as genre
    from embeddings.library_genres import fit_head

    order = rng.permutation(len(y))
    train, test = order[: len(y) // 2], order[len(y) // 2 :]
    by_track = fit_head(x[train], y[train], 2).logits(x[test]).argmax(axis=1) == y[test]
    assert by_track.mean() > 0.9


def test_abstention_keeps_precision_on_overlapping_genres():
    rng = np.random.default_rng(2)
    x, labels, groups, _ = _clusters(rng, genres=3, albums=6, per_album=6, spread=12.0)
    learnt = learn_genres(x, labels, groups, min_tracks=8, target_precision=0.9)
    probs, used = learnt.oof_probabilities, learnt.used
    y = np.array([learnt.head.genres.index(labels[i]) for i in used])
    answered = probs.max(axis=1) >= learnt.threshold
    assert learnt.metrics["accuracy"] < 0.9  # hard enough that abstaining matters
    assert 0 < answered.sum() < len(y)  # some answered, some "uncertain"
    assert (probs[answered].argmax(axis=1) == y[answered]).mean() >= 0.9
    assert learnt.metrics["precision_at_threshold"] >= 0.9


def test_choose_threshold_picks_the_lowest_line_that_meets_the_target():
    conf = np.array([0.99, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
    correct = np.array([1, 1, 1, 1, 1, 1, 0, 1, 0, 0], dtype=bool)
    threshold, precision, coverage = choose_threshold(conf, correct, 0.85)
    assert threshold == 0.5 and precision == pytest.approx(7 / 8) and coverage == 0.8
    threshold, precision, coverage = choose_threshold(conf, correct, 1.0)
    assert threshold == 0.7 and coverage == 0.6
    threshold, _, coverage = choose_threshold(conf, np.zeros(10, dtype=bool), 0.9)
    assert threshold > 0.99 and coverage == 0.0  # never right: always "uncertain"


def test_temperature_scaling_calibrates_overconfident_logits():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, size=2000)
    logits = rng.normal(size=(2000, 4))
    logits[np.arange(2000), y] += 1.0
    sharp = logits * 6  # right about half the time, nearly always "sure"
    t = fit_temperature(sharp, y)
    assert t > 3
    before = expected_calibration_error(softmax(sharp), y)["ece"]
    after = expected_calibration_error(softmax(sharp / t), y)["ece"]
    assert after < before / 3 and after < 0.05


def test_too_few_tags_is_a_clear_error():
    x = np.eye(20, 512, dtype=np.float32)
    with pytest.raises(NotEnoughTags, match="at least two genres"):
        learn_genres(x, ["rock"] * 12 + [None] * 8, [f"a{i % 4}" for i in range(20)])


def test_a_model_is_stored_as_arrays_and_read_back_exactly(tmp_path: Path):
    rng = np.random.default_rng(4)
    with Catalog(tmp_path / "data") as catalog:
        catalog.activate_model("emb-1", ["a"], 512)
        record = GenreModelRecord(
            genres=["jazz", "rock"], coef=rng.normal(size=(2, 512)).astype(np.float32),
            intercept=np.array([0.5, -0.5], np.float32), mean=np.zeros(512, np.float32),
            scale=np.ones(512, np.float32), temperature=1.7, threshold=0.8,
            target_precision=0.9, embedding_model_id="emb-1", min_tracks=8, n_tracks=40,
            metrics={"accuracy": 0.9}, left_out={"polka": {"tracks": 2}},
        )  # fmt: skip
        first = save_model(catalog, record)
        second = save_model(catalog, record)
        back = active_model(catalog)
        assert (first, second, back.version) == (1, 2, 2)
        np.testing.assert_array_equal(back.coef, record.coef)
        assert back.genres == ["jazz", "rock"] and back.temperature == 1.7
        assert back.left_out == {"polka": {"tracks": 2}}
        catalog.activate_model("emb-2", ["a"], 512)  # another embedding: it no longer applies
        assert active_model(catalog) is None
    with sqlite3.connect(tmp_path / "data" / "catalog.db") as db:
        blob = db.execute("SELECT coef FROM genre_models WHERE version = 1").fetchone()[0]
    assert len(blob) == 2 * 512 * 4  # float32, no pickle


# -- through the catalog and the CLI, on synthesised, tagged audio ------------------------------

HIPHOP_SPELLINGS = ["Hip Hop", "Hip-Hop", "Rap", "hiphop"]


def _beat(seed: int) -> np.ndarray:
    return clicks(3.5, 22050, bpm=90 + seed) + noise(3.5, 22050, seed=seed, amp=0.05)


def _calm(seed: int) -> np.ndarray:
    base = 196.0 * (1 + 0.03 * seed)
    return chord([base, base * 1.25, base * 1.5], 3.5, 22050)


def _set_tags(path: Path, album: str, genre: list[str] | None) -> None:
    audio = mutagen.File(str(path), easy=True)
    if audio.tags is None:
        audio.add_tags()
    audio["album"] = album
    audio["artist"] = album.split()[0]
    if genre is not None:
        audio["genre"] = genre
    audio.save()


def _write_numeric_genre(path: Path, text: str) -> None:
    id3 = ID3(str(path))
    id3.setall("TCON", [TCON(encoding=1, text=[text])])  # UTF-16, as old taggers wrote
    id3.save(str(path), v2_version=3)


def _build_tagged_library(root: Path) -> dict[str, Path]:
    """Two genres on three albums each, four tracks an album, in FLAC and MP3, plus:
    an untagged beat, a beat tagged classical (wrong), and a lone polka track."""
    files: dict[str, Path] = {}
    for a in range(3):
        for t in range(4):
            n = a * 4 + t
            beat = write(root / f"beats{a}" / f"b{t}.flac", _beat(n), 22050)
            _set_tags(beat, f"Beats{a} Vol", [HIPHOP_SPELLINGS[n % 4]])
            calm = write(root / f"calm{a}" / f"c{t}.mp3", _calm(n), 22050)
            _set_tags(calm, f"Calm{a} Suite", None)
            _write_numeric_genre(calm, "(32)" if n % 2 else "Classical")
            files[f"beat{n}"], files[f"calm{n}"] = beat, calm
    files["untagged"] = write(root / "loose" / "untagged.mp3", _beat(40), 22050)
    _set_tags(files["untagged"], "Loose Ends", None)
    files["wrong"] = write(root / "loose" / "wrong.flac", _beat(41), 22050)
    _set_tags(files["wrong"], "Loose Ends", ["Classical"])
    files["polka"] = write(root / "loose" / "polka.flac", _calm(42), 22050)
    _set_tags(files["polka"], "Loose Ends", ["Polka"])
    return files


@pytest.fixture(scope="module")
def tagged_catalog(tmp_path_factory, model):
    root = tmp_path_factory.mktemp("tagged")
    files = _build_tagged_library(root / "music")
    summary = run_ingest([root / "music"], root / "data", model, heatmaps=False)
    assert summary.analysed == len(files)
    return root, files


@pytest.fixture
def tagged(tagged_catalog, tmp_path: Path):
    """A private copy (files and catalog) per test; paths rewritten to the copy."""
    root, files = tagged_catalog
    shutil.copytree(root / "music", tmp_path / "music")
    shutil.copytree(root / "data", tmp_path / "data")
    with sqlite3.connect(tmp_path / "data" / "catalog.db") as db:
        db.execute("UPDATE tracks SET path = replace(path, ?, ?)",
                   (str(root / "music"), str(tmp_path / "music")))  # fmt: skip
        db.execute("DELETE FROM catalog_meta WHERE key = 'library_roots'")
    (tmp_path / "data" / "index.faiss").unlink(missing_ok=True)
    copied = {k: tmp_path / "music" / p.relative_to(root / "music") for k, p in files.items()}
    return tmp_path / "data", copied


def _track_id(data_dir: Path, path: Path) -> int:
    with sqlite3.connect(data_dir / "catalog.db") as db:
        return db.execute("SELECT id FROM tracks WHERE path = ?", (str(path),)).fetchone()[0]


def test_learn_genres_then_three_views_browsing_and_disagreement(tagged):
    data_dir, files = tagged
    result = cli(data_dir, "learn-genres", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["genres"] == ["classical", "hip-hop"]  # four spellings, one genre
    assert report["left_out"]["polka"]["reason"] == "fewer than 8 tracks"
    assert report["per_genre"]["hip-hop"]["tracks"] == 12
    assert report["per_genre"]["classical"]["tracks"] == 13  # "wrong" counts as classical
    assert report["folds"] >= 2 and report["accuracy"] > 0.85
    text = cli(data_dir, "learn-genres")
    assert "precision" in text.output and "left out: polka" in text.output

    shown = json.loads(cli(data_dir, "show", str(files["calm1"]), "--json").output)
    views = shown["genre_views"]
    assert views["tag"] == {"genres": ["classical"], "raw": ["(32)"]}
    assert views["library"]["predicted"] == "classical"
    assert views["library"]["source"] == "cv"  # predicted by the fold that held it out
    assert views["gtzan"]["predicted"] in shown["probabilities"]
    assert "library genre" in cli(data_dir, "show", str(files["calm1"])).output

    page = json.loads(cli(data_dir, "tracks", "--genre", "Hip Hop", "--json").output)
    assert page["genre_model"] == "library"
    found = {t["path"] for t in page["tracks"]}
    assert {str(files[f"beat{n}"]) for n in range(12)} <= found  # all confidently hip-hop
    assert not found & {str(files[f"calm{n}"]) for n in range(12)}
    assert all(t["genre_views"]["library"]["genre"] == "hip-hop" for t in page["tracks"])

    disagree = json.loads(cli(data_dir, "tracks", "--disagree", "--json").output)
    mistagged = {r["path"]: r for r in disagree["mistagged"]}
    assert str(files["wrong"]) in mistagged
    assert mistagged[str(files["wrong"])]["suggestion"] == "hip-hop"
    untagged = {r["path"]: r["suggestion"] for r in disagree["untagged"]}
    assert untagged.get(str(files["untagged"])) == "hip-hop"


def test_tag_genres_dry_run_apply_and_undo_restore_exact_bytes(tagged, model):
    data_dir, files = tagged
    assert cli(data_dir, "learn-genres").exit_code == 0
    targets = [files["untagged"], files["wrong"]]
    before = {p: p.read_bytes() for p in targets}

    dry = cli(data_dir, "tag-genres", "--mistagged", "--json")
    assert dry.exit_code == 0, dry.output
    planned = {r["path"]: r["write"] for r in json.loads(dry.output)["plan"]}
    assert planned[str(files["untagged"])] in HIPHOP_SPELLINGS  # the library's own words
    assert all(p.read_bytes() == before[p] for p in targets)  # a dry run writes nothing

    applied = cli(data_dir, "tag-genres", "--apply", "--mistagged", "--json")
    assert applied.exit_code == 0, applied.output
    written = planned[str(files["untagged"])]
    assert read_tags(files["untagged"]).genres == [written]
    assert read_tags(files["wrong"]).genres == [planned[str(files["wrong"])]]
    shown = json.loads(cli(data_dir, "show", str(files["wrong"]), "--json").output)
    assert shown["genre_views"]["tag"]["genres"] == ["hip-hop"]
    # a tag edit is not new audio: the next ingest analyses nothing
    again = run_ingest([files["wrong"].parent.parent], data_dir, model, heatmaps=False)
    assert again.analysed == 0

    undone = cli(data_dir, "tag-genres", "--undo", "--json")
    assert undone.exit_code == 0, undone.output
    assert all(p.read_bytes() == before[p] for p in targets)  # byte for byte
    assert read_tags(files["wrong"]).genres == ["Classical"]
    assert read_tags(files["untagged"]).genres == []
    assert json.loads(cli(data_dir, "tag-genres", "--undo", "--json").output)["undone"] == []


def test_undo_leaves_alone_a_tag_changed_since(tagged):
    data_dir, files = tagged
    assert cli(data_dir, "learn-genres").exit_code == 0
    target = files["untagged"]
    tid = str(_track_id(data_dir, target))
    assert cli(data_dir, "tag-genres", "--apply", "--track", tid).exit_code == 0
    _set_tags(target, "Loose Ends", ["Trip Hop"])  # the owner retags it by hand
    undone = json.loads(cli(data_dir, "tag-genres", "--undo", "--json").output)["undone"]
    assert "changed since" in undone[0]["error"]
    assert read_tags(target).genres == ["Trip Hop"]


def test_a_library_without_genre_tags_says_what_it_needs_and_changes_nothing(tmp_path, model):
    music = tmp_path / "music"
    for i in range(4):
        write(music / f"t{i}.wav", tone(200 + 100 * i, 3.5, 22050), 22050)
    data_dir = tmp_path / "data"
    run_ingest([music], data_dir, model, heatmaps=False)

    def snapshot():
        with sqlite3.connect(data_dir / "catalog.db") as db:
            tables = ("tracks", "genre_models", "library_predictions", "tag_backups")
            return {t: db.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in tables}

    before = snapshot()
    result = cli(data_dir, "learn-genres")
    assert result.exit_code != 0
    assert "genre tag" in result.output and "at least 8" in result.output
    assert snapshot() == before
    assert before["genre_models"] == []
    assert cli(data_dir, "tracks", "--disagree").exit_code != 0
    dry = json.loads(cli(data_dir, "tag-genres", "--json").output)
    assert dry["plan"] == []


def test_ingest_applies_the_fitted_model_to_new_tracks_without_reanalysing(tagged, model):
    data_dir, files = tagged
    assert cli(data_dir, "learn-genres").exit_code == 0
    music = files["untagged"].parent.parent
    new = write(music / "late" / "late.flac", _beat(77), 22050)
    summary = run_ingest([music], data_dir, model, heatmaps=False)
    assert summary.analysed == 1  # only the new file's audio
    assert summary.library_genres == 1
    shown = json.loads(cli(data_dir, "show", str(new), "--json").output)
    library = shown["genre_views"]["library"]
    assert library["source"] == "model" and library["predicted"] == "hip-hop"
    assert shown["genre_views"]["tag"] == {"genres": [], "raw": []}


def test_a_broken_mapping_file_stops_learn_genres_and_ingest_with_its_name(tagged, model):
    data_dir, files = tagged
    (data_dir / "genres.toml").write_text("[synonyms\n")
    result = cli(data_dir, "learn-genres")
    assert result.exit_code != 0 and "genres.toml" in result.output
    ingest = cli(data_dir, "ingest", str(files["polka"]))
    assert ingest.exit_code != 0 and "genres.toml" in ingest.output


def test_rest_and_web_ui_show_the_three_views(tagged, model):
    import httpx
    from service_fixtures import running_server

    from ui.service import create_app
    from ui.state import ServiceState, Settings
    from ui.web.render import browsed_genre, genre_views_line

    data_dir, files = tagged
    assert cli(data_dir, "learn-genres").exit_code == 0
    counts = json.loads(cli(data_dir, "genres", "--json").output)
    assert {c["genre"] for c in counts} <= {"hip-hop", "classical", "uncertain"}
    assert sum(c["tracks"] for c in counts) == len(files)
    app = create_app(data_dir, state=ServiceState(Settings(data_dir=data_dir), model=model))
    with running_server(app) as base, httpx.Client(base_url=base, timeout=60) as client:
        tid = _track_id(data_dir, files["wrong"])
        track = client.get(f"/tracks/{tid}").json()
        views = track["genre_views"]
        assert views["tag"]["raw"] == ["Classical"]
        assert views["library"]["genre"] == "hip-hop" and not views["library"]["uncertain"]
        assert views["gtzan"]["predicted"] == track["genre"]
        page = client.get("/tracks", params={"genre": "hip-hop", "limit": 100}).json()
        assert str(files["wrong"]) in {t["path"] for t in page["tracks"]}
        disagree = client.get("/genres/disagree").json()
        assert tid in {r["id"] for r in disagree["mistagged"]}
        assert client.get("/genres/disagree", params={"limit": 0}).status_code == 422
    line = genre_views_line(views)
    assert "tag <b>classical</b>" in line and "library model <b>hip-hop</b>" in line
    assert browsed_genre({**track, "genre_views": views})[0] == "hip-hop"
    unsure = {**views, "library": {**views["library"], "uncertain": True, "genre": "uncertain"}}
    assert "library model <b>uncertain</b> (best guess hip-hop" in genre_views_line(unsure)


# -- the OpenSubsonic API browses by the library model ------------------------------------------


def _subsonic(client, method: str, **params) -> dict:
    from subsonic_fixtures import ADMIN, ADMIN_PW, token_params

    query = {**token_params(ADMIN, ADMIN_PW), "f": "json", **params}
    response = client.get(f"/rest/{method}", params=query)
    assert response.status_code == 200, response.text
    body = response.json()["subsonic-response"]
    assert body["status"] == "ok", body
    return body


def _make_uncertain(data_dir: Path, *paths: Path) -> None:
    """Put these tracks' library predictions below the model's threshold (in SQLite)."""
    with sqlite3.connect(data_dir / "catalog.db") as db:
        for path in paths:
            db.execute(
                "UPDATE library_predictions SET confidence = 0.0 WHERE track_id = ?",
                (_track_id(data_dir, path),),
            )


def test_subsonic_genres_are_the_library_models_never_uncertain_else_the_tag(
    tagged, model, monkeypatch
):
    import httpx
    from service_fixtures import running_server
    from subsonic_fixtures import ADMIN, ADMIN_PW

    from catalog import library_view
    from catalog import subsonic_users as users
    from ui.service import create_app
    from ui.state import ServiceState, Settings

    monkeypatch.setattr(library_view, "RECHECK_S", 0.0)  # see a refit at once, not in 5 s
    data_dir, files = tagged
    with Catalog(data_dir) as catalog:
        users.add_user(catalog, ADMIN, ADMIN_PW, admin=True)
    app = create_app(data_dir, state=ServiceState(Settings(data_dir=data_dir), model=model),
                     mount_ui=False)  # fmt: skip
    with running_server(app) as base, httpx.Client(base_url=base, timeout=60) as client:
        sid = {k: f"tr-{_track_id(data_dir, p)}" for k, p in files.items()}
        shipped = json.loads(cli(data_dir, "show", str(files["wrong"]), "--json").output)["genre"]
        before = _subsonic(client, "getSong", id=sid["wrong"])["song"]
        assert before["genre"] == shipped  # no library model yet: the shipped head's, as before

        assert cli(data_dir, "learn-genres").exit_code == 0
        _make_uncertain(data_dir, files["wrong"], files["untagged"])
        views = {
            k: json.loads(cli(data_dir, "show", str(p), "--json").output)["genre_views"]
            for k, p in files.items()
        }
        assert views["wrong"]["library"]["uncertain"] and views["untagged"]["library"]["uncertain"]

        songs = {k: _subsonic(client, "getSong", id=i)["song"] for k, i in sid.items()}
        # uncertain, tagged "Classical": the file's tag, not the model's guess (hip-hop)
        assert songs["wrong"]["genre"] == "classical"
        assert songs["wrong"]["genres"] == [{"name": "classical"}]
        # uncertain and untagged: no genre at all, never "uncertain"
        assert songs["untagged"].get("genre") is None and songs["untagged"]["genres"] == []
        for key, song in songs.items():  # everywhere else: what `sonic show` calls its genre
            library, tag = views[key]["library"], views[key]["tag"]["genres"]
            expected = (tag[0] if tag else None) if library["uncertain"] else library["genre"]
            assert song.get("genre") == expected, key
        assert {songs[f"beat{n}"]["genre"] for n in range(12)} == {"hip-hop"}

        genres = {g["value"]: g for g in _subsonic(client, "getGenres")["genres"]["genre"]}
        assert set(genres) <= {"hip-hop", "classical", "polka"}  # library genres and tags only
        counted = [s["genre"] for s in songs.values() if s.get("genre")]
        assert sum(g["songCount"] for g in genres.values()) == len(counted) == len(files) - 1
        assert genres["hip-hop"]["songCount"] == counted.count("hip-hop")
        by_genre = _subsonic(client, "getSongsByGenre", genre="hip-hop", count=500)
        hiphop = {s["id"] for s in by_genre["songsByGenre"]["song"]}
        assert {sid[f"beat{n}"] for n in range(12)} <= hiphop
        assert sid["wrong"] not in hiphop and sid["untagged"] not in hiphop
        albums = _subsonic(client, "getAlbumList2", type="byGenre", genre="hip-hop", size=500)
        names = {a["name"] for a in albums["albumList2"]["album"]}
        assert {"Beats0 Vol", "Beats1 Vol", "Beats2 Vol"} <= names
        assert not names & {"Calm0 Suite", "Calm1 Suite", "Calm2 Suite"}
        assert len(names) == genres["hip-hop"]["albumCount"]
        album = _subsonic(client, "getAlbum", id=songs["beat0"]["albumId"])["album"]
        assert album["genre"] == "hip-hop" and album["genres"] == [{"name": "hip-hop"}]


# -- the same commands on a shared PostgreSQL catalog ---------------------------------------------


def test_learn_tag_and_disagree_honour_the_database_url_on_postgresql(
    tmp_path, model, postgres_server, monkeypatch
):
    """``--database-url`` (and ``$SONIC_DATABASE_URL``) point all three at PostgreSQL:
    the rows land there, and the SQLite file in the data directory stays empty."""
    import httpx
    from service_fixtures import running_server
    from sqlalchemy import func, select
    from subsonic_fixtures import ADMIN, ADMIN_PW

    from catalog import subsonic_users as users
    from catalog.genre_views import library_state
    from catalog.schema import TagBackup
    from ingest.pipeline import IngestOptions, ingest
    from ui.service import create_app
    from ui.state import ServiceState, Settings

    files = _build_tagged_library(tmp_path / "music")
    data_dir = tmp_path / "data"
    url = postgres_server.new_database()
    monkeypatch.delenv("SONIC_DATABASE_URL", raising=False)
    with Catalog(data_dir, url) as catalog:
        assert catalog.is_postgres
        summary = ingest([tmp_path / "music"], catalog, model,
                         IngestOptions(workers=2, heatmaps=False))  # fmt: skip
        assert summary.analysed == len(files)

    learnt = cli(data_dir, "learn-genres", "--database-url", url, "--json")
    assert learnt.exit_code == 0, learnt.output
    assert json.loads(learnt.output)["genres"] == ["classical", "hip-hop"]
    with Catalog(data_dir, url) as catalog:
        assert library_state(catalog)["version"] == 1
    with Catalog(data_dir) as sqlite_catalog:  # the data dir's own file: untouched
        assert library_state(sqlite_catalog) is None and sqlite_catalog.active_model_id is None
    assert cli(data_dir, "tracks", "--disagree").exit_code != 0  # no model in SQLite

    disagree = cli(data_dir, "tracks", "--disagree", "--database-url", url, "--json")
    assert disagree.exit_code == 0, disagree.output
    mistagged = {r["path"] for r in json.loads(disagree.output)["mistagged"]}
    assert str(files["wrong"]) in mistagged
    monkeypatch.setenv("SONIC_DATABASE_URL", url)  # the environment variable does the same
    assert json.loads(cli(data_dir, "tracks", "--disagree", "--json").output) == json.loads(
        disagree.output
    )
    monkeypatch.delenv("SONIC_DATABASE_URL")

    before = files["untagged"].read_bytes()
    applied = cli(data_dir, "tag-genres", "--apply", "--database-url", url, "--json")
    assert applied.exit_code == 0, applied.output
    written = {o["path"]: o["written"] for o in json.loads(applied.output)["outcomes"]}
    assert read_tags(files["untagged"]).genres == [written[str(files["untagged"])]]
    with Catalog(data_dir, url) as catalog, catalog.sessions() as s:
        assert s.scalar(select(func.count()).select_from(TagBackup)) == len(written)

    # the OpenSubsonic API on the same PostgreSQL catalog browses by the library model
    with Catalog(data_dir, url) as catalog:
        users.add_user(catalog, ADMIN, ADMIN_PW, admin=True)
    settings = Settings(data_dir=data_dir, database_url=url)
    app = create_app(data_dir, state=ServiceState(settings, model=model), mount_ui=False)
    with running_server(app) as base, httpx.Client(base_url=base, timeout=60) as client:
        genres = {g["value"] for g in _subsonic(client, "getGenres")["genres"]["genre"]}
        assert "hip-hop" in genres and genres <= {"hip-hop", "classical", "polka"}
        by_genre = _subsonic(client, "getSongsByGenre", genre="hip-hop", count=500)
        titles = {s["path"].rsplit("/", 1)[-1] for s in by_genre["songsByGenre"]["song"]}
        assert {"b0.flac", "b1.flac", "b2.flac", "b3.flac"} <= titles

    undone = cli(data_dir, "tag-genres", "--undo", "--database-url", url, "--json")
    assert undone.exit_code == 0, undone.output
    assert files["untagged"].read_bytes() == before  # byte for byte
