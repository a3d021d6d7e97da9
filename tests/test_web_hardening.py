"""A hostile user against a real running server (issue 28): files, hosts, links, names, ids.

Each test starts uvicorn on a free port in a thread (``service_fixtures``) and
speaks HTTP to it, Gradio's own API included; nothing is mocked.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from pathlib import Path

import httpx
import pytest
from service_fixtures import build_small_library, running_server
from web_probes import leaks, route_probes

from audio_fixtures import tone, wav_bytes, write
from catalog.paths import display_path
from helpers import run_ingest, tracks_by_path
from ui.service import create_app
from ui.state import ServiceState, Settings
from ui.web.uploads import NOT_AN_UPLOAD, Uploads

UPLOAD_LIMIT = 1_000_000
UPLOAD_CAP = 600_000  # room for one ~400 kB clip, not two


@pytest.fixture(scope="module")
def served(tmp_path_factory, model):
    tmp = tmp_path_factory.mktemp("hardening")
    library = build_small_library(tmp / "music")
    data_dir = tmp / "data"
    summary = run_ingest([library.root], data_dir, model)
    assert summary.analysed == 5
    ids = {p: t.id for p, t in tracks_by_path(data_dir).items()}
    settings = Settings(
        data_dir=data_dir, max_upload_bytes=UPLOAD_LIMIT, upload_cache_bytes=UPLOAD_CAP
    )
    app = create_app(data_dir, state=ServiceState(settings, model=model))
    with running_server(app) as base, httpx.Client(base_url=base, timeout=60) as client:
        yield {
            "client": client,
            "app": app,
            "base": base,
            "library": library,
            "data_dir": data_dir,
            "tmp": tmp,
            "model": model,
            "id": {name: ids[str(path)] for name, path in library.files.items()},
        }


@pytest.fixture
def api(served) -> httpx.Client:
    return served["client"]


def file_data(path: str | Path) -> dict:
    return {"path": str(path), "meta": {"_type": "gradio.FileData"}}


def gradio_call(client: httpx.Client, api_name: str, data: list) -> str:
    """One call through Gradio's HTTP API: POST the inputs, read the event stream to its end."""
    posted = client.post(f"/ui/gradio_api/call/{api_name}", json={"data": data})
    assert posted.status_code == 200, posted.text
    event_id = posted.json()["event_id"]
    return client.get(f"/ui/gradio_api/call/{api_name}/{event_id}").text


def upload(client: httpx.Client, name: str, content: bytes) -> Path:
    """A file sent through Gradio's own upload route; the path Gradio stored it at."""
    response = client.post("/ui/gradio_api/upload", files={"files": (name, content, "audio/wav")})
    assert response.status_code == 200, response.text
    (stored,) = response.json()
    path = Path(stored)
    deadline = time.monotonic() + 10  # Gradio may move the file in a background task
    while not path.exists():
        assert time.monotonic() < deadline, stored
        time.sleep(0.05)
    return path


def upload_folder_files() -> dict[str, bytes]:
    folder = Path(Uploads(0).folder)
    return {
        str(p): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and not p.is_symlink() and p.stat().st_size < 10_000_000
    }


# -- 1. Gradio opens only its own uploads ---------------------------------------------------


def test_gradio_handlers_open_no_file_but_an_upload(api, served):
    """Before the fix: the outside clip was analysed, /etc/passwd copied into Gradio's cache."""
    outside = write(served["tmp"] / "outside" / "secret.wav", tone(300, 3.0), 22050)
    folder = Path(Uploads(0).folder)
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / f"sonic-test-link-{os.getpid()}.wav"  # inside the folder, pointing out
    link.unlink(missing_ok=True)
    link.symlink_to(outside)
    before = upload_folder_files()
    try:
        answers = {
            target: gradio_call(api, "analyse", [file_data(target), "mean", 3, 5])
            for target in (outside, "/etc/passwd", "/etc", "/no/such/file.wav", link,
                           "http://127.0.0.1:1/x.wav", "../../../../etc/passwd")
        }  # fmt: skip
    finally:
        link.unlink()
    for target, answer in answers.items():
        assert "event: complete" not in answer and "predicted" not in answer, target
        assert NOT_AN_UPLOAD in answer, (target, answer)
        assert str(target) not in answer
    assert len(set(answers.values())) == 1  # one answer: nothing about what exists
    # Any input that Gradio would take a file from, a text box too (it echoed the copy's path).
    searched = gradio_call(api, "search", [file_data("/etc/passwd")])
    assert NOT_AN_UPLOAD in searched and "/etc/passwd" not in searched
    after = upload_folder_files()
    new = {p: c for p, c in after.items() if p not in before}
    assert not [p for p, c in new.items() if b"root:" in c or c == outside.read_bytes()]


def test_an_upload_is_analysed_once_then_deleted(api):
    stored = upload(api, "clip.wav", wav_bytes(tone(330, 4.0)))
    assert Uploads(0).resolve(str(stored)) is not None
    answer = gradio_call(
        api, "analyse", [{**file_data(stored), "orig_name": "clip.wav"}, "mean", 3, 5]
    )
    assert "event: complete" in answer and "predicted **" in answer, answer[:500]
    assert not stored.exists()
    again = gradio_call(api, "analyse", [file_data(stored), "mean", 3, 5])
    assert NOT_AN_UPLOAD in again and "predicted" not in again


def test_the_upload_folder_is_capped_oldest_first(api):
    clips = [wav_bytes(tone(f, 9.0)) for f in (200, 250, 300)]  # ~400 kB each
    assert all(UPLOAD_CAP / 2 < len(c) < UPLOAD_CAP for c in clips)
    first = upload(api, "a.wav", clips[0])
    second = upload(api, "b.wav", clips[1])
    assert first.exists()  # 400 kB kept: under the cap
    third = upload(api, "c.wav", clips[2])
    assert not first.exists()  # 800 kB before the third: the oldest went
    assert second.exists() and third.exists()


def test_unanalysed_uploads_expire(served):
    settings = Settings(data_dir=served["data_dir"], upload_max_age_s=1)
    app = create_app(served["data_dir"], state=ServiceState(settings, model=served["model"]))
    with running_server(app) as base, httpx.Client(base_url=base, timeout=60) as client:
        stored = upload(client, "old.wav", wav_bytes(tone(440, 1.0)))
        deadline = time.monotonic() + 15
        while stored.exists():
            assert time.monotonic() < deadline, "Gradio's delete_cache did not remove it"
            time.sleep(0.2)


# -- 2. the Host header (DNS rebinding) -----------------------------------------------------


def test_a_foreign_host_header_is_refused(api, served):
    port = httpx.URL(served["base"]).port
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", "0.0.0.0"):
        for route in ("/health", "/tracks", "/ui/", "/docs"):
            refused = api.get(route, headers={"Host": host})
            assert refused.status_code == 400, (host, route)
            assert "--allowed-host" in refused.json()["detail"]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST.", f"[::1]:{port}"):
        assert api.get("/health", headers={"Host": host}).status_code == 200, host


def test_allowed_hosts_come_from_the_environment_or_a_star(served, monkeypatch):
    monkeypatch.setenv("SONIC_ALLOWED_HOSTS", "music.local, Box.lan")
    app = create_app(
        served["data_dir"], settings=Settings(data_dir=served["data_dir"]), mount_ui=False
    )
    with running_server(app) as base, httpx.Client(base_url=base) as client:
        for host in ("music.local", "box.lan:8000", "localhost"):
            assert client.get("/health", headers={"Host": host}).status_code == 200, host
        assert client.get("/health", headers={"Host": "other.lan"}).status_code == 400
    monkeypatch.delenv("SONIC_ALLOWED_HOSTS")
    anyone = Settings(data_dir=served["data_dir"], allowed_hosts=["*"])
    app = create_app(served["data_dir"], settings=anyone, mount_ui=False)
    with running_server(app) as base, httpx.Client(base_url=base) as client:
        assert client.get("/health", headers={"Host": "anything.example"}).status_code == 200


def test_sonic_serve_documents_allowed_host():
    from typer.testing import CliRunner

    from ui.cli import app as cli

    help_text = CliRunner().invoke(cli, ["serve", "--help"], env={"COLUMNS": "200"})
    assert help_text.exit_code == 0 and "--allowed-host" in help_text.stdout


# -- 3. playlists carry signed, expiring per-track links, never the token --------------------

TOKEN = "hardening-s3cret"


@pytest.fixture(scope="module")
def guarded(served):
    settings = Settings(data_dir=served["data_dir"], token=TOKEN)
    state = ServiceState(settings, model=served["model"])
    app = create_app(served["data_dir"], state=state, mount_ui=False)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with running_server(app, headers=auth) as base:
        with httpx.Client(base_url=base, headers=auth) as client:
            yield client


def m3u_urls(text: str) -> list[httpx.URL]:
    return [httpx.URL(line) for line in text.splitlines() if line and not line.startswith("#")]


def test_the_radio_m3u_has_signed_links_and_no_token(guarded, served):
    seed = served["id"]["chord"]
    before = time.time()
    m3u = httpx.get(  # the token in the query, as a player would send it (it used to leak)
        guarded.base_url.join("/playlists/radio.m3u"), params={"seed": seed, "n": 3, "token": TOKEN}
    )
    assert m3u.status_code == 200
    assert TOKEN not in m3u.text and "token" not in m3u.text
    urls = m3u_urls(m3u.text)
    assert len(urls) == 3 and urls[0].path == f"/tracks/{seed}/audio"
    assert all(set(u.params) == {"exp", "sig"} for u in urls)
    assert int(before) + 24 * 3600 <= int(urls[0].params["exp"]) <= time.time() + 24 * 3600 + 1
    anonymous = httpx.Client(base_url=str(guarded.base_url))
    data = served["library"].files["chord"].read_bytes()
    played = anonymous.get(str(urls[0]))
    assert played.status_code == 200 and played.content == data
    part = anonymous.get(str(urls[0]), headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == data[10:20]
    assert "set-cookie" not in played.headers
    short = guarded.get("/playlists/radio.m3u", params={"seed": seed, "n": 1, "valid_hours": 1})
    assert int(m3u_urls(short.text)[0].params["exp"]) <= time.time() + 3600 + 1
    for hours in (0, 10_000):
        too = guarded.get("/playlists/radio.m3u", params={"seed": seed, "valid_hours": hours})
        assert too.status_code == 422


def test_a_signature_opens_only_its_track_until_it_expires(guarded, served):
    from ui.signed_links import MAX_LIFETIME_S, link_key, signature

    seed, other = served["id"]["chord"], served["id"]["sine"]
    m3u = guarded.get("/playlists/radio.m3u", params={"seed": seed, "n": 1})
    url = m3u_urls(m3u.text)[0]
    exp, sig = url.params["exp"], url.params["sig"]
    anonymous = httpx.Client(base_url=str(guarded.base_url))
    assert (
        anonymous.get(f"/tracks/{seed}/audio", params={"exp": exp, "sig": sig}).status_code == 200
    )
    flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    now = int(time.time())
    past = now - 5
    far = now + MAX_LIFETIME_S + 3600
    key = link_key(TOKEN)
    refused = [
        (f"/tracks/{other}/audio", {"exp": exp, "sig": sig}),  # another track
        (f"/tracks/{seed}/audio", {"exp": exp, "sig": flipped}),  # tampered signature
        (f"/tracks/{seed}/audio", {"exp": str(int(exp) + 1), "sig": sig}),  # tampered expiry
        (f"/tracks/{seed}/audio", {"exp": str(past), "sig": signature(key, seed, past)}),
        (f"/tracks/{seed}/audio", {"exp": str(far), "sig": signature(key, seed, far)}),
        (f"/tracks/{seed}/audio", {"exp": exp}),  # no signature
        (f"/tracks/{seed}/audio", {"exp": exp, "sig": signature(b"guess", seed, int(exp))}),
        (f"/tracks/{seed}", {"exp": exp, "sig": sig}),  # another route of the same track
        (f"/tracks/{seed}/heatmap.png", {"exp": exp, "sig": sig}),
        (f"/tracks/0{seed}/audio", {"exp": exp, "sig": sig}),
        (f"/playlists/radio.m3u?seed={seed}", {"exp": exp, "sig": sig}),
    ]
    for path, params in refused:
        response = anonymous.get(path, params=params)
        assert response.status_code == 401, (path, params)
    posted = anonymous.post(f"/tracks/{seed}/audio", params={"exp": exp, "sig": sig})
    assert posted.status_code == 401


def test_without_a_token_playlists_stay_plain_and_open(api, served):
    seed = served["id"]["sine"]
    m3u = api.get("/playlists/radio.m3u", params={"seed": seed, "n": 2})
    urls = m3u_urls(m3u.text)
    assert [u.params for u in urls] == [httpx.QueryParams(), httpx.QueryParams()]
    assert httpx.get(str(urls[0])).status_code == 200


# -- 4. file names that are not UTF-8 are shown safely, served exactly -----------------------

ODD = "/music/caf\udce9.wav"  # os.fsdecode(b"/music/caf\xe9.wav"): a Latin-1 name


def test_json_answers_escape_undecodable_names_in_one_place():
    from ui.service import SafeJSONResponse

    content = {"path": ODD, "tracks": [{"path": ODD, "id": 1}], "k\udce9": [ODD], "n": 1.5}
    body = json.loads(SafeJSONResponse(content).body)
    assert body == {
        "path": "/music/caf\\xe9.wav",
        "tracks": [{"path": "/music/caf\\xe9.wav", "id": 1}],
        "k\\xe9": ["/music/caf\\xe9.wav"],
        "n": 1.5,
    }
    assert json.loads(SafeJSONResponse({"path": "/music/café.wav"}).body)["path"] == (
        "/music/café.wav"
    )


def test_m3u_writes_undecodable_names_losslessly_and_titles_safely():
    from catalog.playlists import m3u_path, to_m3u

    assert m3u_path("/music/café crème.wav") == "/music/café crème.wav"  # UTF-8: plain
    url = m3u_path(ODD + " x")
    assert url == "file:///music/caf%E9.wav%20x"
    assert urllib.parse.unquote_to_bytes(url[len("file://") :]) == os.fsencode(ODD + " x")
    text = to_m3u([{"id": 1, "path": ODD, "duration_s": 3.2}], lambda t: m3u_path(t["path"]))
    assert text.encode("utf-8")  # no surrogate left
    assert text.splitlines()[1:] == ["#EXTINF:3,caf\\xe9.wav", "file:///music/caf%E9.wav"]


def test_the_web_ui_shows_undecodable_names():
    from ui.web.render import esc, name, tracks_table

    row = {"id": 1, "path": ODD, "title": None, "artist": None, "status": "ok"}
    assert name(row) == "caf\\xe9.wav"
    assert esc(f"failed: cannot read {ODD}").encode("utf-8")
    table = tracks_table([row, {**row, "title": "T\udce9", "artist": "A"}])
    assert "caf\\xe9.wav</a>" in table and "T\\xe9</a>" in table
    assert table.encode("utf-8")


def test_a_non_utf8_file_name_end_to_end(tmp_path, model):
    """Ingest b'caf\\xe9.wav' and ask every face for it. Needs the catalog to store such
    names losslessly (catalog.column_types.FsPath)."""
    root = tmp_path / "music"
    root.mkdir()
    clip = write(tmp_path / "clip.wav", tone(350, 4.0), 22050)
    odd = os.fsdecode(os.path.join(os.fsencode(root), b"caf\xe9.wav"))
    os.rename(clip, odd)
    data_dir = tmp_path / "data"
    assert run_ingest([root], data_dir, model).analysed == 1
    (track_id,) = [t.id for p, t in tracks_by_path(data_dir).items() if p == odd]
    app = create_app(data_dir, state=ServiceState(Settings(data_dir=data_dir), model=model))
    with running_server(app) as base, httpx.Client(base_url=base, timeout=60) as client:
        listing = client.get("/tracks")
        assert listing.status_code == 200
        assert listing.json()["tracks"][0]["path"].endswith("/caf\\xe9.wav")
        detail = client.get(f"/tracks/{track_id}")
        assert detail.status_code == 200 and detail.json()["path"] == display_path(odd)
        audio = client.get(f"/tracks/{track_id}/audio")
        assert audio.status_code == 200 and audio.content == Path(odd).read_bytes()
        for params in ({}, {"paths": True}):
            m3u = client.get("/playlists/radio.m3u", params={"seed": track_id, **params})
            assert m3u.status_code == 200, m3u.text
        assert m3u.text.splitlines()[1].startswith("#EXTINF:4,caf\\xe9")
        assert m3u.text.splitlines()[2] == "file://" + urllib.parse.quote(os.fsencode(odd))
        assert client.get("/map").status_code == 200
        assert client.get(f"/tracks/{track_id}/similar").status_code == 200
        opened = gradio_call(client, "open_track", [track_id, 3, "mean", 5, False])
        assert "event: complete" in opened and "caf\\\\xe9.wav" in opened, opened[:800]


# -- 5. ids are parsed strictly; no bad request is a 500 -------------------------------------


def test_track_ids_have_one_spelling(api, served):
    track_id = served["id"]["sine"]
    assert api.get(f"/tracks/{track_id}").status_code == 200
    for spelling in (f"+{track_id}", f"0{track_id}", f"{track_id}.0", f"%20{track_id}",
                     f"{track_id}%20", f"1_{track_id}", "\u0661", f"{track_id}%0A"):  # fmt: skip
        for route in (f"/tracks/{spelling}", f"/tracks/{spelling}/audio"):
            refused = api.get(route)
            assert refused.status_code == 422, route
            assert "positive whole number" in refused.text, route
        seeded = api.get("/playlists/radio", params={"seed": urllib.parse.unquote(spelling)})
        assert seeded.status_code == 422, spelling


def test_no_route_answers_500_or_leaks_a_file_to_a_bad_request(api, served):
    valid = {"track_id": str(served["id"]["sine"]), "other_id": str(served["id"]["chord"]),
             "job_id": "0" * 32, "stem": "vocals", "name": "getSong"}  # fmt: skip
    probes = route_probes(served["app"], valid)
    assert len(probes) > 300
    for method, url in probes:
        response = api.request(method, url)
        assert response.status_code < 500, (method, url, response.text[:300])
        assert not leaks(response.content)
