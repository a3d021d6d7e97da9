"""The web UI in a real browser: Debian's chromium driven by Playwright.

The catalog is ingested, its data directory copied with ``cp -a`` and the original
removed, and the copy is served: heatmaps must still show. Then, as a listener
would: browse and page to the end and back, open a track, follow a sound-alike and
a map point to their tracks, reload and go Back, play radio and hear the queue move
on when a (4-second) track ends, see the stems button disabled with the fix, read
/docs with every non-local request blocked, and fit a phone's 390 px. With Demucs
weights (a tiny random HTDemucs), separate stems, watch "chunk N / M", cancel, and
separate again to the four stem players.
Screenshots go to test-artifacts/browser/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from demucs_fixtures import write_tiny_weights
from service_fixtures import build_small_library, running_server

import ui.web.library
from audio_fixtures import chord, clicks, tag, write
from embeddings import heatmap_image
from helpers import run_ingest
from ui.service import create_app
from ui.state import ServiceState, Settings

CHROMIUM = Path("/usr/bin/chromium")
ARTEFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "browser"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required",
    "--mute-audio",
]  # fmt: skip
TIMEOUT_MS = 90_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian chromium is not installed (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def site(tmp_path_factory, model):
    tmp = tmp_path_factory.mktemp("browser")
    library = build_small_library(tmp / "music")
    original = tmp / "data"
    run_ingest([library.root], original, model)
    # The data directory moves: everything must still show from the copy.
    data_dir = tmp / "moved" / "data"
    data_dir.parent.mkdir()
    subprocess.run(["cp", "-a", str(original), str(data_dir)], check=True)
    shutil.rmtree(original)
    no_weights = tmp / "no-demucs-weights"
    no_weights.mkdir()
    settings = Settings(data_dir=data_dir, models_dir=no_weights)
    state = ServiceState(settings, model=model)
    page_size = ui.web.library.PAGE
    ui.web.library.PAGE = 2  # five tracks make three pages
    try:
        with running_server(create_app(data_dir, state=state)) as base:
            yield {"base": base, "library": library, "tmp": tmp}
    finally:
        ui.web.library.PAGE = page_size


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import expect, sync_playwright

    # expect() has its own 5-second default, separate from the context's: on a
    # busy machine opening a track can take longer than that, which is no failure
    expect.set_options(timeout=TIMEOUT_MS)
    shutil.rmtree(ARTEFACTS, ignore_errors=True)
    ARTEFACTS.mkdir(parents=True)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page(site, browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.goto(site["base"] + "/ui/")
    tab.locator("#listing a.sonic-open").first.wait_for()  # the page's load events ran
    yield tab
    context.close()
    assert errors == [], errors


def shot(page, name: str, full_page: bool = True) -> None:
    page.screenshot(path=str(ARTEFACTS / f"{name}.png"), full_page=full_page)


def current_track(page) -> str | None:
    return dict(re.findall(r"(\w+)=(\w+)", urlparse(page.url).query)).get("track")


def test_browse_page_to_the_end_and_back(page):
    from playwright.sync_api import expect

    header = page.locator("#sonic-header")
    expect(header).to_contain_text("device cpu")
    expect(header).to_contain_text("5 tracks analysed, 1 failed")
    note = page.locator("#listing-note")
    expect(note).to_contain_text("all analysed tracks: 1–2 of 5 · page 1 of 3")
    expect(page.get_by_label("All (5)")).to_be_checked()
    expect(page.locator("#listing .sonic-tracks")).to_contain_text("conf.")
    page.locator("#next-page").click()
    expect(note).to_contain_text("3–4 of 5 · page 2 of 3")
    page.locator("#next-page").click()
    expect(note).to_contain_text("5–5 of 5 · page 3 of 3")
    expect(page.locator("#next-page")).to_be_disabled()  # the last page stops there
    page.locator("#prev-page").click()
    expect(note).to_contain_text("page 2 of 3")
    # a genre, then All again
    genres = page.locator("#genres label")
    genres.nth(1).click()
    expect(note).to_contain_text("genre ")
    page.get_by_label("All (5)").check()
    expect(note).to_contain_text("all analysed tracks: 1–2 of 5")
    # search matches folder names too: "gamma" holds only Pulse
    page.locator("#query textarea, #query input").first.fill("gamma")
    page.locator("#search").click()
    expect(note).to_contain_text("“gamma”: 1–1 of 1")
    expect(page.locator("#listing")).to_contain_text("Pulse")
    shot(page, "1-library")


def test_open_a_track_artist_view_and_sound_alike(page, site):
    from playwright.sync_api import expect

    page.locator("#query textarea, #query input").first.fill("Chord")
    page.locator("#search").click()
    page.locator("#listing a.sonic-open", has_text="Chord").click()
    summary = page.locator("#track-summary")
    expect(summary).to_contain_text("Alpha - Chord")
    expect(summary).to_contain_text("album First")
    chord_id = current_track(page)
    assert chord_id and chord_id.isdigit()
    # first paint from the catalog: waveform overview, bars, timeline, heatmap (from the
    # copied data directory), band focus, sound-alikes
    expect(page.locator("#track-wave svg.sonic-wave")).to_be_visible()
    expect(page.locator("#track-bars .bar")).to_have_count(5)
    expect(page.locator("#track-timeline svg")).to_be_visible()
    heat = page.locator("#track-heatmap img.sonic-heatmap")
    expect(heat).to_be_visible()
    assert heat.evaluate("img => img.complete && img.naturalWidth > 200")
    expect(page.locator("#track-heatmap .sonic-scale")).to_be_visible()
    expect(page.locator("#track-heatmap .sonic-bands")).to_contain_text("low / bass")
    expect(page.locator("#band-focus")).to_contain_text("The model listened")
    expect(page.locator("#similar li")).to_have_count(4)
    scores = [float(s) for s in page.locator("#similar .score").all_inner_texts()]
    assert scores == sorted(scores, reverse=True)
    # aggregation and top-K redraw from the stored segments
    page.locator("#aggregation").get_by_label("max").check()
    expect(page.locator("#track-bars .bar")).to_have_count(5)
    # the per-segment table fills when opened (not with the first paint)
    page.get_by_text("Per-segment predictions").click()
    expect(page.locator("#segments")).to_contain_text("end s")
    # stems: no Demucs weights here, so the button is disabled with the fix
    expect(page.locator("#separate")).to_be_disabled()
    expect(page.locator("#stems-note")).to_contain_text("--models-dir")
    # why similar: the entry links to the other track
    page.locator("#why-pick label").first.click()
    expect(page.locator("#why")).to_contain_text("closest moments")
    expect(page.locator("#why a.sonic-open")).to_have_count(1)
    shot(page, "2-track")

    # follow a sound-alike: its page and URL
    first = page.locator("#similar li a.sonic-open").first
    other_name = first.inner_text()
    first.click()
    expect(summary).to_contain_text(other_name)
    other_id = current_track(page)
    assert other_id != chord_id
    # reload keeps the track; Back returns to the Chord
    page.reload()
    expect(page.locator("#track-summary")).to_contain_text(other_name)
    assert current_track(page) == other_id
    page.go_back()
    expect(page.locator("#track-summary")).to_contain_text("Alpha - Chord")
    assert current_track(page) == chord_id

    # the artist view: click the artist, get their tracks
    page.locator("#track-summary a.sonic-filter", has_text="Alpha").click()
    expect(page.locator("#listing-note")).to_contain_text("artist Alpha: 1–2 of 2")
    expect(page.locator("#listing")).to_contain_text("Sine")


def test_radio_queue_advances_when_a_track_ends(page, site):
    from playwright.sync_api import expect

    page.locator("#listing a.sonic-open", has_text="Sine").click()
    expect(page.locator("#track-summary")).to_contain_text("Alpha - Sine")
    page.locator("#track-player button.sonic-radio").click()
    queue = page.locator("#sonic-queue li")
    expect(queue).to_have_count(5)
    expect(queue.nth(0)).to_have_class("current")
    expect(page.locator("#sonic-now")).to_contain_text("Sine")
    # the 4-second track plays to its end and the next one starts
    expect(queue.nth(1)).to_have_class("current", timeout=30_000)
    playing = page.locator("#sonic-audio").evaluate(
        "a => ({src: a.getAttribute('src'), paused: a.paused})"
    )
    assert playing["src"].endswith("/audio") and not playing["paused"]
    # one thing at a time: of every <audio> on the page, only the dock's plays
    playing_count = "[...document.querySelectorAll('audio')].filter(a => !a.paused).length"
    assert page.evaluate(playing_count) == 1
    m3u = page.locator("#track-player a[download]")
    assert httpx.get(site["base"] + m3u.get_attribute("href")).text.startswith("#EXTM3U")
    shot(page, "3-radio")


def test_a_map_point_opens_its_track(page):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Map").click()
    page.locator("#draw-map").click()
    expect(page.locator("#map-note")).to_contain_text("5 of 5 indexed tracks")
    dots = page.locator("#map-plot svg a.sonic-open")
    expect(dots).to_have_count(5)
    assert "null" not in page.locator("#map-plot svg").inner_html()
    target = dots.nth(2).get_attribute("data-track")
    shot(page, "4-map")
    dots.nth(2).locator("circle").click()
    expect(page.get_by_role("tab", name="Track")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#track-summary")).to_contain_text(f"#{target} ")
    assert current_track(page) == target


def test_upload_a_file_and_see_predictions(page, site):
    from playwright.sync_api import expect

    clip = write(site["tmp"] / "upload" / "my clip.wav", chord([196, 247, 294], 7.0), 22050)
    page.get_by_role("tab", name="Analyse a file").click()
    expect(page.get_by_text("MP3, WAV, FLAC, OGG or Opus")).to_be_visible()
    page.locator("#upload input[type=file]").set_input_files(str(clip))
    page.locator("#analysis-aggregation label", has_text="max").click()
    page.locator("#analyse").click()
    summary = page.locator("#analysis-summary")
    expect(summary).to_contain_text("my clip.wav")
    expect(summary).to_contain_text("max of segment probabilities")
    expect(summary).to_contain_text("3 segments")
    expect(page.locator("#analysis-bars .bar").first).to_be_visible()
    expect(page.locator("#analysis-nearest li")).to_have_count(5)
    shot(page, "5-analyse-upload")


def test_docs_render_with_the_network_blocked(site, browser):
    from playwright.sync_api import expect

    context = browser.new_context()
    blocked: list[str] = []

    def only_local(route):
        host = urlparse(route.request.url).hostname
        if host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", only_local)
    tab = context.new_page()
    tab.goto(site["base"] + "/docs")
    expect(tab.locator(".swagger-ui .info .title")).to_contain_text("Sonic Catalog")
    expect(tab.locator(".opblock-summary-path").first).to_be_visible()
    shot(tab, "6-docs-offline", full_page=False)
    tab.goto(site["base"] + "/redoc")
    expect(tab.locator("h1", has_text="Sonic Catalog")).to_be_visible()
    context.close()
    assert blocked == []  # nothing even tried to leave the machine


@pytest.fixture(scope="module")
def stems_site(tmp_path_factory, model):
    """One 16-s track, served with a tiny HTDemucs as its Demucs weights (``--models-dir``)."""
    tmp = tmp_path_factory.mktemp("browser_stems")
    seconds = 16.0  # 22 chunks
    song = write(tmp / "music" / "long.flac", chord([220, 277, 330], seconds) + clicks(seconds),
                 22050)  # fmt: skip
    tag(song, "Long", "Stems", "Weights", 1)
    data_dir = tmp / "data"
    assert run_ingest([tmp / "music"], data_dir, model).analysed == 1
    settings = Settings(data_dir=data_dir, models_dir=write_tiny_weights(tmp / "weights"))
    state = ServiceState(settings, model=model)
    with running_server(create_app(data_dir, state=state)) as base:
        yield {"base": base, "id": httpx.get(base + "/tracks").json()["tracks"][0]["id"]}


def test_separate_stems_shows_chunks_cancels_and_plays_the_stems(stems_site, browser):
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    tab.goto(f"{stems_site['base']}/ui/?track={stems_site['id']}")
    expect(tab.locator("#track-summary")).to_contain_text("Stems - Long")
    note, separate, cancel = (
        tab.locator("#stems-note"), tab.locator("#separate"), tab.locator("#cancel-stems")
    )  # fmt: skip
    expect(separate).to_be_enabled()  # weights are there: no fix to tell
    expect(note).to_contain_text("no stems yet")
    # separate, watch the chunks, cancel part-way
    separate.click()
    expect(note).to_contain_text(re.compile(r"chunk \d+ / 2[23]"))
    tab.locator("#stems-note").scroll_into_view_if_needed()
    shot(tab, "8-stems-progress", full_page=False)
    cancel.click()
    expect(note).to_contain_text("separation cancelled")
    expect(note).to_contain_text("no stems were kept")
    expect(tab.locator("#stem-players audio")).to_have_count(0)
    expect(separate).to_be_enabled()
    # again, to the end: the four stems play from the cache
    separate.click()
    expect(note).to_contain_text(re.compile(r"chunk \d+ / 2[23]"))
    players = tab.locator("#stem-players audio")
    expect(players).to_have_count(4)
    expect(note).to_contain_text("cached stems: bass, drums, other, vocals")
    expect(separate).to_be_disabled()
    expect(cancel).to_be_disabled()
    src = players.first.get_attribute("src")
    assert httpx.get(stems_site["base"] + src).content[:4] == b"fLaC"
    tab.locator("#stem-players").scroll_into_view_if_needed()
    shot(tab, "9-stems-done", full_page=False)
    context.close()


def test_phone_width(site, browser):
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    tab = context.new_page()
    track_id = httpx.get(site["base"] + "/tracks", params={"text": "Chord"}).json()["tracks"][0]
    tab.goto(f"{site['base']}/ui/?track={track_id['id']}")
    expect(tab.locator("#track-summary")).to_contain_text("Alpha - Chord")
    items = tab.locator("#similar li")
    expect(items).to_have_count(4)
    for i in range(items.count()):
        box = items.nth(i).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    for selector in ("#track-wave svg", "#sonic-audio", "#track-bars", "#track-heatmap img"):
        box = tab.locator(selector).first.bounding_box()
        assert box["x"] + box["width"] <= 390, (selector, box)
    assert tab.evaluate("document.documentElement.scrollWidth") <= 390
    tab.locator("#similar").scroll_into_view_if_needed()
    shot(tab, "7-phone-390", full_page=False)
    # the heatmap fills the column: its type is 1/28 of the image's, so ~11.5 px here
    heat = tab.locator("#track-heatmap img.sonic-heatmap")
    expect(heat).to_be_visible()
    natural = heatmap_image.LEFT + heatmap_image.PLOT_W + heatmap_image.RIGHT
    assert heat.evaluate("img => img.complete && img.naturalWidth") == natural
    assert heat.bounding_box()["width"] >= 320  # the column's whole width
    heat.evaluate("img => img.scrollIntoView({block: 'start'})")  # with its scale and bands
    shot(tab, "7b-phone-390-heatmap", full_page=False)
    context.close()
