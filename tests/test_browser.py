"""The web UI in a real browser: Debian's chromium driven by Playwright.

Opens /ui, browses a genre, opens a track (player, heatmap panel, sound-alikes,
"why similar"), uploads a file and sees its predictions, draws the library map.
Screenshots go to test-artifacts/browser/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx
import pytest
from service_fixtures import build_small_library, running_server

from audio_fixtures import chord, write
from helpers import run_ingest
from ui.service import create_app
from ui.state import ServiceState, Settings

CHROMIUM = Path("/usr/bin/chromium")
ARTEFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "browser"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
TIMEOUT_MS = 90_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian chromium is not installed (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def site(tmp_path_factory, model):
    tmp = tmp_path_factory.mktemp("browser")
    library = build_small_library(tmp / "music")
    data_dir = tmp / "data"
    run_ingest([library.root], data_dir, model)
    state = ServiceState(Settings(data_dir=data_dir), model=model)
    with running_server(create_app(data_dir, state=state)) as base:
        yield {"base": base, "library": library, "tmp": tmp}


@pytest.fixture(scope="module")
def page(site):
    from playwright.sync_api import expect, sync_playwright

    # expect() has its own 5-second default, separate from the context's: on a
    # busy machine opening a track can take longer than that, which is no failure
    expect.set_options(timeout=TIMEOUT_MS)
    shutil.rmtree(ARTEFACTS, ignore_errors=True)
    ARTEFACTS.mkdir(parents=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(TIMEOUT_MS)
        tab = context.new_page()
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        tab.goto(site["base"] + "/ui/")
        yield tab
        context.close()
        browser.close()
        assert errors == [], errors


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTEFACTS / f"{name}.png"), full_page=True)


def test_browse_a_genre_and_open_a_track(page, site):
    from playwright.sync_api import expect

    header = page.locator("#sonic-header")
    expect(header).to_contain_text("device cpu")
    expect(header).to_contain_text("5 tracks analysed, 1 failed")
    genres = page.locator("#genres label")
    expect(genres.first).to_be_visible()
    for i in range(genres.count()):  # browse genre by genre until the Chord track shows up
        label = genres.nth(i).inner_text()
        genre, count = re.match(r"(\S+) \((\d+)\)", label).groups()
        genres.nth(i).click()
        note = f"genre {genre}: 1–{count} of {count}"
        expect(page.locator("#listing-note")).to_contain_text(note)
        if "Chord" in page.locator("#listing").inner_text():
            break
    expect(page.locator("#listing")).to_contain_text("Chord")
    shot(page, "1-library-genre")

    page.locator("#listing").get_by_text("Chord", exact=True).filter(visible=True).first.click()
    summary = page.locator("#track-summary")
    expect(summary).to_contain_text("Alpha - Chord")
    expect(summary).to_contain_text("album First")
    player = page.locator("#track-player audio")
    expect(player).to_have_attribute("src", re.compile(r"^/tracks/\d+/audio$"))
    # The player's source streams (range requests) from the service.
    src = player.get_attribute("src")
    ranged = httpx.get(site["base"] + src, headers={"Range": "bytes=0-3"})
    assert ranged.status_code == 206 and ranged.content == b"fLaC"
    for plot in ("#track-wave", "#track-bars", "#track-timeline"):
        expect(page.locator(f"{plot} img").first).to_be_visible()
    expect(page.locator("#track-heatmap img").first).to_be_visible()
    expect(page.locator("#band-focus")).to_contain_text("The model listened")
    rows = page.locator("#similar table.sonic-similar tr")
    expect(rows).to_have_count(5)  # header + the 4 other analysed tracks
    expect(page.locator("#similar audio")).to_have_count(4)
    scores = [float(s) for s in page.locator("#similar td:first-child").all_inner_texts()]
    assert scores == sorted(scores, reverse=True)
    expect(page.locator("#separate")).to_be_enabled()  # Demucs is wired; no stems cached yet
    page.locator("#why-pick label").first.click()
    expect(page.locator("#why")).to_contain_text("cosine similarity")
    expect(page.locator("#why")).to_contain_text("closest moments")
    shot(page, "2-track")


def test_upload_a_file_and_see_predictions(page, site):
    from playwright.sync_api import expect

    clip = write(site["tmp"] / "upload" / "my clip.wav", chord([196, 247, 294], 7.0), 22050)
    page.get_by_role("tab", name="Analyse a file").click()
    page.locator("#upload input[type=file]").set_input_files(str(clip))
    page.get_by_label("max").check()
    page.locator("#analyse").click()
    summary = page.locator("#analysis-summary")
    expect(summary).to_contain_text("my clip.wav")
    expect(summary).to_contain_text("predicted")
    expect(summary).to_contain_text("max of segment probabilities")
    expect(summary).to_contain_text("3 segments")
    expect(page.locator("#analysis-bars img").first).to_be_visible()
    expect(page.locator("#analysis-nearest audio")).to_have_count(5)
    shot(page, "3-analyse-upload")


def test_library_map(page):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Map").click()
    page.locator("#draw-map").click()
    expect(page.get_by_text("5 of 5 indexed tracks")).to_be_visible()
    expect(page.locator("#map-plot canvas, #map-plot svg").first).to_be_visible()
    page.wait_for_timeout(1000)  # let the chart finish its legend before the screenshot
    shot(page, "4-map")
