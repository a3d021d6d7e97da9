"""The OpenSubsonic API (/rest/) against a real uvicorn server, with py-sonic and raw HTTP.

One served library for the module (five synthesised tracks, see subsonic_fixtures);
py-sonic drives what it covers (it posts forms: the formPost extension), httpx the
rest: auth variants, both envelopes, Range, cover art, the sonic calls, errors.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import httpx
import libsonic
import pytest
from PIL import Image
from service_fixtures import build_small_library, running_server
from subsonic_fixtures import ADMIN, ADMIN_PW, ISRC, MBID, PLAIN, PLAIN_PW, decorate, token_params

from audio_fixtures import noise, tone, write
from catalog import subsonic_users as users
from catalog.store import Catalog
from helpers import run_ingest, tracks_by_path
from ui.service import create_app
from ui.state import ServiceState, Settings

NS = "{http://subsonic.org/restapi}"


@pytest.fixture(scope="module")
def served(tmp_path_factory, model):
    tmp = tmp_path_factory.mktemp("subsonic")
    library = build_small_library(tmp / "music")
    decorate(library)
    data_dir = tmp / "data"
    summary = run_ingest([library.root], data_dir, model)
    assert summary.analysed == 5
    ids = {p: t.id for p, t in tracks_by_path(data_dir).items()}
    settings = Settings(data_dir=data_dir, token="rest-token")
    app = create_app(data_dir, state=ServiceState(settings, model=model), mount_ui=False)
    with running_server(app, headers={"Authorization": "Bearer rest-token"}) as base:
        with httpx.Client(base_url=base, timeout=60) as client:
            # before any user exists, /rest/ refuses (and never opens by default)
            empty = client.get("/rest/ping", params={"u": "x", "p": "y", "f": "json"})
            with Catalog(data_dir) as catalog:
                users.add_user(catalog, ADMIN, ADMIN_PW, admin=True)
                users.add_user(catalog, PLAIN, PLAIN_PW, token_auth=False)
                key = users.new_api_key(catalog, ADMIN)
            yield {
                "client": client, "base": base, "library": library, "data_dir": data_dir,
                "id": {n: f"tr-{ids[str(p)]}" for n, p in library.files.items()},
                "api_key": key, "before_users": empty,
            }  # fmt: skip


@pytest.fixture
def call(served):
    """GET /rest/<method> as the admin (token auth), JSON; returns the response body."""

    def get(method: str, expect_ok: bool = True, **params) -> dict:
        query = {**token_params(ADMIN, ADMIN_PW), "f": "json", **params}
        response = served["client"].get(f"/rest/{method}", params=query)
        assert response.status_code == 200, response.text
        body = response.json()["subsonic-response"]
        if expect_ok:
            assert body["status"] == "ok", body
        return body

    return get


@pytest.fixture(scope="module")
def sonic(served):
    host, port = served["base"].rsplit(":", 1)
    return libsonic.Connection(host, ADMIN, ADMIN_PW, port=int(port), appName="tests")


def error_code(body: dict) -> int:
    assert body["status"] == "failed"
    return body["error"]["code"]


# -- envelope and auth --------------------------------------------------------------------


def check_envelope(body: dict) -> None:
    assert body["version"] == "1.16.1" and body["type"] == "sonic-catalog"
    assert body["openSubsonic"] is True and body["serverVersion"]


def test_refused_without_a_configured_user(served):
    body = served["before_users"].json()["subsonic-response"]
    assert error_code(body) == 40 and "sonic user add" in body["error"]["message"]


def test_json_and_xml_envelopes(served, call):
    body = call("ping")
    check_envelope(body)
    xml = served["client"].get("/rest/ping.view", params=token_params(ADMIN, ADMIN_PW))
    assert xml.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(xml.content)
    assert root.tag == NS + "subsonic-response"
    assert root.attrib["status"] == "ok" and root.attrib["type"] == "sonic-catalog"
    assert root.attrib["openSubsonic"] == "true" and root.attrib["version"] == "1.16.1"
    wrong = served["client"].get("/rest/ping", params={"u": ADMIN, "p": "nope"})
    error = ET.fromstring(wrong.content).find(NS + "error")
    assert error is not None and error.attrib["code"] == "40"


def test_auth_variants(served, call):
    c, key = served["client"], served["api_key"]

    def ping(**params) -> dict:
        return c.get("/rest/ping", params={"f": "json", **params}).json()["subsonic-response"]

    assert ping(u=ADMIN, p=ADMIN_PW)["status"] == "ok"
    assert ping(u=ADMIN, p="enc:" + ADMIN_PW.encode().hex())["status"] == "ok"
    assert ping(**token_params(ADMIN, ADMIN_PW, salt="zz9"))["status"] == "ok"
    assert ping(apiKey=key)["status"] == "ok"
    posted = c.post("/rest/ping.view", data={"u": PLAIN, "p": PLAIN_PW, "f": "json"})
    assert posted.json()["subsonic-response"]["status"] == "ok"  # formPost
    assert error_code(ping(u=ADMIN, p="wrong")) == 40
    assert error_code(ping(u="nobody", p="x")) == 40
    assert error_code(ping(**token_params(ADMIN, "wrong"))) == 40
    assert error_code(ping(u=ADMIN, p="enc:zz")) == 40
    assert error_code(ping(**token_params(PLAIN, PLAIN_PW))) == 41  # only a hash is kept
    assert error_code(ping()) == 10
    assert error_code(ping(u=ADMIN)) == 10
    assert error_code(ping(u=ADMIN, t="abc")) == 10
    assert error_code(ping(apiKey="not-a-key")) == 44
    assert error_code(ping(apiKey=key, u=ADMIN, p=ADMIN_PW)) == 43
    # the REST token does not open /rest/, and /rest/ logins do not open the REST API
    assert error_code(ping(token="rest-token")) == 10
    assert c.get("/health", params={"u": ADMIN, "p": ADMIN_PW}).status_code == 401


def test_system_calls(call, sonic):
    assert sonic.ping() is True
    assert sonic.getLicense()["license"]["valid"] is True
    extensions = {e["name"]: e["versions"] for e in call("getOpenSubsonicExtensions")
                  ["openSubsonicExtensions"]}  # fmt: skip
    assert extensions["sonicSimilarity"] == [1] and extensions["apiKeyAuthentication"] == [1]
    assert "formPost" in extensions
    user = call("getUser", username=ADMIN)["user"]
    assert user["username"] == ADMIN and user["adminRole"] is True and user["streamRole"]


def test_not_found_unknown_method_and_not_authorised(served, call):
    for method, params in [
        ("getSong", {"id": "tr-999999"}), ("getAlbum", {"id": "al-nope"}),
        ("getArtist", {"id": "x"}), ("stream", {"id": "tr-0"}), ("getCoverArt", {"id": "zz"}),
        ("getMusicDirectory", {"id": "dr-none"}), ("getPlaylist", {"id": "424242"}),
        ("getSonicSimilarTracks", {"id": "tr-777777"}),
    ]:  # fmt: skip
        assert error_code(call(method, expect_ok=False, **params)) == 70, method
    assert error_code(call("getSong", expect_ok=False)) == 10
    assert error_code(call("getAlbumList2", expect_ok=False)) == 10
    assert error_code(call("getAlbumList2", expect_ok=False, type="byGenre")) == 10
    assert error_code(call("getRandomSongs", expect_ok=False, size="ten")) == 0
    assert error_code(call("getVideos", expect_ok=False)) == 0  # unsupported: an error, not 404
    plain = {"u": PLAIN, "p": PLAIN_PW, "f": "json"}
    body = served["client"].get("/rest/startScan", params=plain).json()["subsonic-response"]
    assert error_code(body) == 50
    other = served["client"].get("/rest/getUser", params={**plain, "username": ADMIN})
    assert error_code(other.json()["subsonic-response"]) == 50
    for junk in ("getSong?id=%00%ff", "getAlbumList2?type=%e2%98%83", "stream?id=tr-1e9999"):
        answer = served["client"].get("/rest/" + junk, params=token_params(ADMIN, ADMIN_PW))
        assert answer.status_code == 200 and b'status="failed"' in answer.content


# -- browsing -----------------------------------------------------------------------------


def test_browse_by_artist_and_album(served, call, sonic):
    index = sonic.getArtists()["artists"]["index"]
    names = {a["name"]: a for group in index for a in group["artist"]}
    assert set(names) == {"Alpha", "Beta", "Gamma"}
    alpha = call("getArtist", id=names["Alpha"]["id"])["artist"]
    assert [a["name"] for a in alpha["album"]] == ["First"] and alpha["albumCount"] == 1
    album = sonic.getAlbum(alpha["album"][0]["id"])["album"]
    assert [s["title"] for s in album["song"]] == ["Sine", "Chord"]  # track order
    assert album["songCount"] == 2 and album["artist"] == "Alpha"
    song = call("getSong", id=served["id"]["chord"])["song"]
    assert song["albumId"] == album["id"] and song["suffix"] == "flac"
    assert song["contentType"] == "audio/flac" and song["duration"] in (3, 4, 5)
    assert song["genre"] and song["genres"] == [{"name": song["genre"]}]
    pulse = call("getSong", id=served["id"]["pulse"])["song"]
    assert pulse["musicBrainzId"] == MBID and pulse["isrc"] == [ISRC]
    search = call("search3", query="chor")["searchResult3"]
    assert [s["title"] for s in search["song"]] == ["Chord"]
    assert [a["name"] for a in call("search3", query="gam")["searchResult3"]["artist"]] == ["Gamma"]
    everything = call("search3", query='""', songCount=100)["searchResult3"]
    assert len(everything["song"]) == 5


def test_album_lists_and_count_clamped(call, sonic):
    by_name = call("getAlbumList2", type="alphabeticalByName")["albumList2"]["album"]
    assert [a["name"] for a in by_name] == ["First", "Second", "Third"]
    by_artist = sonic.getAlbumList2("alphabeticalByArtist")["albumList2"]["album"]
    assert [a["artist"] for a in by_artist] == ["Alpha", "Beta", "Gamma"]
    assert len(call("getAlbumList2", type="newest")["albumList2"]["album"]) == 3
    assert len(call("getAlbumList2", type="random", size=2)["albumList2"]["album"]) == 2
    assert len(call("getAlbumList", type="alphabeticalByName")["albumList"]["album"]) == 3
    songs = call("getRandomSongs", size=10**9)["randomSongs"]["song"]  # clamped, not refused
    assert len(songs) == 5 and len({s["id"] for s in songs}) == 5
    paged = call("getAlbumList2", type="alphabeticalByName", size=1, offset=1)
    assert [a["name"] for a in paged["albumList2"]["album"]] == ["Second"]


def test_genres_are_predicted_genres_with_counts(served, call):
    genres = call("getGenres")["genres"]["genre"]
    assert sum(g["songCount"] for g in genres) == 5
    counts = [g["songCount"] for g in genres]
    assert counts == sorted(counts, reverse=True)
    top = genres[0]
    songs = call("getSongsByGenre", genre=top["value"], count=500)["songsByGenre"]["song"]
    assert len(songs) == top["songCount"] and {s["genre"] for s in songs} == {top["value"]}
    albums = call("getAlbumList2", type="byGenre", genre=top["value"])["albumList2"]["album"]
    assert len(albums) == top["albumCount"] and all(a["genre"] == top["value"] for a in albums)
    xml = served["client"].get("/rest/getGenres", params=token_params(ADMIN, ADMIN_PW))
    genre = ET.fromstring(xml.content).find(f"{NS}genres/{NS}genre")
    assert genre.text == top["value"] and genre.attrib["songCount"] == str(top["songCount"])


def test_folder_browsing(served, call, sonic):
    folders = sonic.getMusicFolders()["musicFolders"]["musicFolder"]
    assert [f["name"] for f in folders] == ["music"]
    index = call("getIndexes")["indexes"]["index"]
    tops = {a["name"]: a["id"] for group in index for a in group["artist"]}
    assert set(tops) == {"alpha", "beta", "gamma"}  # the broken file's folder has no songs
    directory = call("getMusicDirectory", id=tops["beta"])["directory"]
    assert directory["name"] == "beta"
    assert sorted(c["title"] for c in directory["child"]) == ["Clicks", "Hiss"]
    assert all(c["isDir"] is False and c["parent"] == tops["beta"] for c in directory["child"])


# -- media --------------------------------------------------------------------------------


def test_stream_with_range_and_download(served):
    c, song = served["client"], served["id"]["chord"]
    original = served["library"].files["chord"].read_bytes()
    params = {**token_params(ADMIN, ADMIN_PW), "id": song, "maxBitRate": "128"}
    whole = c.get("/rest/stream", params=params)
    assert whole.status_code == 200 and whole.content == original
    assert whole.headers["content-type"] == "audio/flac"
    part = c.get("/rest/stream", params=params, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == original[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(original)}"
    down = c.get("/rest/download.view", params=params)
    assert down.content == original and "attachment" in down.headers["content-disposition"]


def test_cover_art_from_folder_and_embedded(served, call):
    c = served["client"]
    alpha = call("getSong", id=served["id"]["sine"])["song"]["coverArt"]
    image = c.get("/rest/getCoverArt", params={**token_params(ADMIN, ADMIN_PW), "id": alpha})
    assert image.headers["content-type"] == "image/jpeg"
    assert image.content == (served["library"].root / "alpha" / "cover.jpg").read_bytes()
    small = c.get("/rest/getCoverArt",
                  params={**token_params(ADMIN, ADMIN_PW), "id": alpha, "size": 64})  # fmt: skip
    assert Image.open(__import__("io").BytesIO(small.content)).size == (64, 64)
    beta = call("getSong", id=served["id"]["hiss"])["song"]["coverArt"]
    embedded = c.get("/rest/getCoverArt", params={**token_params(ADMIN, ADMIN_PW), "id": beta})
    pixel = Image.open(__import__("io").BytesIO(embedded.content)).convert("RGB").getpixel((5, 5))
    assert pixel[2] > 150 and pixel[0] < 80  # the blue picture embedded in hiss.flac
    gamma = call("getSong", id=served["id"]["pulse"])["song"]["coverArt"]
    assert error_code(call("getCoverArt", expect_ok=False, id=gamma)) == 70


# -- similarity ---------------------------------------------------------------------------


def test_similar_songs_and_sonic_matches(served, call, sonic):
    seed = served["id"]["sine"]
    similar = sonic.getSimilarSongs2(seed, count=3)["similarSongs2"]["song"]
    assert len(similar) == 3 and seed not in {s["id"] for s in similar}
    assert len(call("getSimilarSongs", id=seed, count=10)["similarSongs"]["song"]) == 4
    matches = call("getSonicSimilarTracks", id=seed, count=10)["sonicMatch"]
    assert len(matches) == 4 and seed not in {m["entry"]["id"] for m in matches}
    scores = [m["similarity"] for m in matches]
    assert all(0.0 <= s <= 1.0 for s in scores) and scores == sorted(scores, reverse=True)
    assert [m["entry"]["id"] for m in matches][:3] == [s["id"] for s in similar]
    assert len(call("getSonicSimilarTracks", id=seed, count=2)["sonicMatch"]) == 2
    clamped = call("getSonicSimilarTracks", id=seed, count=10**12)["sonicMatch"]
    assert len(clamped) == 4  # a count over the bound is clamped, not refused
    album = call("getSong", id=seed)["song"]["albumId"]
    from_album = call("getSimilarSongs2", id=album)["similarSongs2"]["song"]
    assert {s["albumId"] for s in from_album} != {album} and len(from_album) == 3
    assert call("getTopSongs", artist="Alpha")["topSongs"] == {"song": []}


def test_sonic_path(served, call):
    start, end = served["id"]["sine"], served["id"]["hiss"]
    path = [
        m["entry"]["id"]
        for m in call("findSonicPath", startSongId=start, endSongId=end, count=4)["sonicMatch"]
    ]
    assert path[0] == start and path[-1] == end and len(path) == 4
    assert len(set(path)) == len(path)
    full = call("findSonicPath", startSongId=start, endSongId=end, count=500)["sonicMatch"]
    ids = [m["entry"]["id"] for m in full]
    assert len(ids) == 5 and len(set(ids)) == 5 and ids[0] == start and ids[-1] == end
    assert all(0 <= m["similarity"] <= 1 for m in full)
    assert error_code(call("findSonicPath", expect_ok=False, startSongId=start)) == 10


# -- what clients write -------------------------------------------------------------------


def test_playlists_crud(served, call, sonic):
    a, b, c = served["id"]["sine"], served["id"]["chord"], served["id"]["pulse"]
    created = sonic.createPlaylist(name="Radio", songIds=[a, b])["playlist"]
    pid = created["id"]
    assert [e["id"] for e in created["entry"]] == [a, b]
    call("updatePlaylist", playlistId=pid, songIdToAdd=c, songIndexToRemove=0, name="R2")
    got = call("getPlaylist", id=pid)["playlist"]
    assert got["name"] == "R2" and [e["id"] for e in got["entry"]] == [b, c]
    assert got["owner"] == ADMIN and got["songCount"] == 2
    assert [p["id"] for p in call("getPlaylists")["playlists"]["playlist"]] == [pid]
    plain = {"u": PLAIN, "p": PLAIN_PW, "f": "json", "id": pid}
    theirs = served["client"].get("/rest/deletePlaylist", params=plain)
    assert error_code(theirs.json()["subsonic-response"]) == 50  # not bob's to delete
    peek = served["client"].get("/rest/getPlaylist", params=plain)
    assert error_code(peek.json()["subsonic-response"]) == 70  # private: not found to bob
    assert error_code(call("createPlaylist", expect_ok=False, name="x", songId="tr-99999")) == 70
    sonic.deletePlaylist(pid)
    assert error_code(call("getPlaylist", expect_ok=False, id=pid)) == 70


def test_scrobble_and_stars(served, call, sonic):
    song = served["id"]["clicks"]
    call("scrobble", id=song)
    call("scrobble", id=song, submission="false")
    assert call("getSong", id=song)["song"]["playCount"] == 1
    frequent = call("getAlbumList2", type="frequent")["albumList2"]["album"]
    assert [a["name"] for a in frequent] == ["Second"]
    album = call("getSong", id=song)["song"]["albumId"]
    call("star", id=song, albumId=album)
    starred = call("getStarred2")["starred2"]
    assert [s["id"] for s in starred["song"]] == [song] and starred["song"][0]["starred"]
    assert [a["id"] for a in starred["album"]] == [album]
    call("unstar", id=song)
    assert call("getStarred2")["starred2"]["song"] == []
    assert error_code(call("star", expect_ok=False, id="tr-99999")) == 70
    assert error_code(call("scrobble", expect_ok=False)) == 10
    sonic.scrobble(served["id"]["hiss"])  # py-sonic's form POST
    assert call("getSong", id=served["id"]["hiss"])["song"]["playCount"] == 1


# -- the media-server route ---------------------------------------------------------------


def test_media_server_route(served):
    c = served["client"]
    auth = {"Authorization": "Bearer rest-token"}
    by_mbid = c.post("/media-server/similar", json={"mbid": MBID, "count": 2}, headers=auth)
    body = by_mbid.json()
    assert body["song"]["id"] == served["id"]["pulse"] and body["song"]["confidence"] == 1.0
    assert len(body["similar"]) == 2 and all(0 <= s["similarity"] <= 1 for s in body["similar"])
    assert body["song"]["id"] not in {s["id"] for s in body["similar"]}
    by_isrc = c.post("/media-server/similar", json={"isrc": ISRC}, headers=auth).json()
    assert by_isrc["song"]["matched_on"] == "isrc" and by_isrc["song"]["confidence"] == 0.95
    spelt = c.post("/media-server/similar", json={"isrc": "gb-aye-06-01498"}, headers=auth)
    assert spelt.json()["song"]["id"] == served["id"]["pulse"]
    tags = {"artist": "alpha", "title": "CHORD", "album": "First", "duration": 4.0}
    by_tags = c.post("/media-server/similar", json=tags, headers=auth).json()["song"]
    assert by_tags["id"] == served["id"]["chord"] and by_tags["confidence"] >= 0.9
    weak = c.post("/media-server/similar", json={"title": "Chord", "artist": "Nobody"},
                  headers=auth).json()["song"]  # fmt: skip
    assert weak["id"] == served["id"]["chord"] and weak["confidence"] < by_tags["confidence"]
    path = c.post(
        "/media-server/path",
        headers=auth,
        json={"start": {"id": served["id"]["sine"]}, "end": {"mbid": MBID}, "count": 3},
    ).json()
    ids = [p["id"] for p in path["path"]]
    assert ids[0] == served["id"]["sine"] and ids[-1] == served["id"]["pulse"] and len(ids) == 3
    nothing = c.post("/media-server/similar", json={"title": "nothing"}, headers=auth)
    assert nothing.status_code == 404
    assert c.post("/media-server/similar", json={"count": "x"}, headers=auth).status_code == 422
    assert c.post("/media-server/similar", json={"mbid": MBID}).status_code == 401


# -- scanning (last: it moves a file and adds one) ----------------------------------------


def test_start_scan_ingests_moves_and_new_files(served, call):
    status = call("getScanStatus")["scanStatus"]
    assert status["scanning"] is False and status["count"] == 5
    pulse = served["id"]["pulse"]
    before = call("getSong", id=pulse)["song"]
    moved = served["library"].root / "gamma" / "moved" / "pulse.flac"
    moved.parent.mkdir()
    served["library"].files["pulse"].rename(moved)
    write(served["library"].root / "delta" / "untagged.wav", tone(660, 4.0) + noise(4.0), 22050)
    started = call("startScan")["scanStatus"]
    assert "scanning" in started
    deadline = time.monotonic() + 300
    while call("getScanStatus")["scanStatus"]["scanning"]:
        assert time.monotonic() < deadline, "the scan did not finish"
        time.sleep(0.5)
    after = call("getSong", id=pulse)["song"]  # the same ids after a move and a re-scan
    assert after["path"] == "gamma/moved/pulse.flac" and after["albumId"] == before["albumId"]
    streamed = served["client"].get("/rest/stream", params={**token_params(ADMIN, ADMIN_PW),
                                                            "id": pulse})  # fmt: skip
    assert streamed.content == moved.read_bytes()
    assert call("getScanStatus")["scanStatus"]["count"] == 6
    song = call("search3", query="untagged")["searchResult3"]["song"][0]
    assert song["title"] == "untagged" and song["artist"] == "Unknown Artist"
    album = call("getAlbum", id=song["albumId"])["album"]
    assert album["name"] == "delta"  # an untagged folder is an album named after it
