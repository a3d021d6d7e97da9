"""Web UI latency: from clicking a track to its details and to its waveform on screen.

Builds a library of synthetic tracks (a 3-minute and a 10-minute one, Opus and
FLAC, plus a few short ones so sound-alikes exist), ingests it with the shipped
model, serves it (uvicorn, Gradio mounted) and drives Debian's chromium with
Playwright: Library tab, search, click the title, and time

  - details: until the summary and the sound-alike list are visible;
  - waveform: until the waveform (drawn from the overview stored at ingest) is visible;

``--repeat`` clicks per track (median reported). For reference it also times what
the old first paint waited for: decoding the whole file for the waveform
(``ingest.clip.preview_file``).

    python bench/ui_latency.py                 # 3 and 10 minutes, 5 clicks each
    python bench/ui_latency.py --repeat 3 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

CHROMIUM = "/usr/bin/chromium"


def build(root: Path) -> dict[str, Path]:
    import numpy as np

    from audio_fixtures import chord, clicks, tag, tone, write

    files = {}
    for minutes, ext in ((3, "opus"), (10, "opus")):
        sr = 48000  # Opus' own rate
        seconds = minutes * 60.0
        t = np.arange(int(seconds * sr)) / sr
        audio = (0.2 * np.sin(2 * np.pi * (220 + 40 * np.sin(t / 7)) * t)).astype(np.float32)
        audio += clicks(seconds, sr, bpm=96)[: len(audio)]
        name = f"Long {minutes} min"
        fmt = {"format": "OGG", "subtype": "OPUS"} if ext == "opus" else {}
        path = write(root / f"long{minutes}.{ext}", audio, sr, **fmt)
        tag(path, name, "Bench", "Latency", minutes)
        files[name] = path
    for i, f in enumerate((262, 330, 392)):
        audio = chord([f, f * 1.25], 8.0) + tone(f / 2, 8.0)
        path = write(root / f"short{i}.flac", audio, 22050)
        tag(path, f"Short {i}", f"Artist {i}", f"Album {i}", 1)
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright
    from service_fixtures import running_server

    from catalog.store import Catalog
    from embeddings.checkpoint import load_model
    from ingest.clip import preview_file
    from ingest.pipeline import IngestOptions, ingest
    from ui.service import create_app
    from ui.state import ServiceState, Settings

    tmp = Path(tempfile.mkdtemp(prefix="sonic-ui-latency-"))
    files = build(tmp / "music")
    model = load_model()
    data_dir = tmp / "data"
    started = time.perf_counter()
    with Catalog(data_dir) as catalog:
        ingest([tmp / "music"], catalog, model, IngestOptions(workers=2))
    ingest_s = time.perf_counter() - started
    results = {"ingest_s": round(ingest_s, 1), "tracks": {}}
    state = ServiceState(Settings(data_dir=data_dir), model=model)
    with running_server(create_app(data_dir, state=state)) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        page.goto(base + "/ui/")
        page.locator("#listing a.sonic-open").first.wait_for()
        for title, path in files.items():
            details, waves = [], []
            for _ in range(args.repeat):
                page.get_by_role("tab", name="Library").click()
                page.locator("#query textarea, #query input").first.fill(title)
                page.locator("#search").click()
                link = page.locator("#listing a.sonic-open", has_text=title)
                link.wait_for()
                t0 = time.perf_counter()
                link.click()
                page.locator("#track-summary", has_text=title).wait_for()
                page.locator("#similar li").first.wait_for()
                details.append(time.perf_counter() - t0)
                page.locator("#track-wave svg.sonic-wave").wait_for()
                waves.append(time.perf_counter() - t0)
                page.evaluate("history.back()")  # leave the track, so the next click opens it
                page.wait_for_timeout(300)
            t0 = time.perf_counter()
            preview_file(path, model.frontend)
            decode_s = time.perf_counter() - t0
            results["tracks"][title] = {
                "format": path.suffix[1:],
                "click_to_details_s": round(statistics.median(details), 3),
                "click_to_waveform_s": round(statistics.median(waves), 3),
                "max_click_to_waveform_s": round(max(waves), 3),
                "full_decode_s": round(decode_s, 2),
            }
        browser.close()
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"ingest of the bench library: {results['ingest_s']} s")
    for title, r in results["tracks"].items():
        print(f"{title} ({r['format']}): details {r['click_to_details_s']} s, waveform "
              f"{r['click_to_waveform_s']} s (max {r['max_click_to_waveform_s']} s); a full "
              f"decode for the waveform took {r['full_decode_s']} s")  # fmt: skip


if __name__ == "__main__":
    main()
