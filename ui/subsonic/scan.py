"""``startScan``: an ingest of the library roots in the background, and its progress.

It runs as a job of the service (``ui.jobs``: one worker, so never two at once,
and a second ``startScan`` while one runs gets the running one), under the
catalog's write lock like ``sonic ingest``, with the service's genre model. The
index is reloaded by the service as soon as the ingest saves it.
"""

from __future__ import annotations

import threading

from ui.state import ServiceState

SCAN_KEY = "subsonic-scan"
_scans: dict[int, dict] = {}  # id(state) -> {"job": Job, "seen": int, "total": int}
_lock = threading.Lock()


class _Progress:
    """An ingest progress sink that counts files for ``getScanStatus``."""

    def __init__(self, record: dict, set_progress) -> None:
        self.record, self.set_progress = record, set_progress

    def start(self, total_files: int) -> None:
        self.record["total"] = total_files

    def advance(self, audio_seconds: float) -> None:
        self.record["seen"] += 1
        total = self.record.get("total") or 0
        self.set_progress(self.record["seen"] / total if total else None)

    def note(self, message: str) -> None: ...

    def close(self) -> None: ...


def start(state: ServiceState) -> None:
    """Queue a scan of every library root (the one already running, if any)."""
    from catalog.store import Catalog
    from ingest.lock import catalog_lock
    from ingest.pipeline import IngestOptions, ingest

    with _lock:
        record = _scans.get(id(state))
        if record is not None and record["job"].status in ("queued", "running"):
            return
        record = {"seen": 0, "total": 0}

        def work(set_progress) -> dict:
            roots = [r for r in state.roots() if r.exists()]
            with Catalog(state.settings.data_dir) as catalog:
                with catalog_lock(catalog.paths.root, wait=True) as held:
                    summary = ingest(roots, catalog, state.model, IngestOptions(workers=1),
                                     _Progress(record, set_progress), held)  # fmt: skip
            state.fresh()
            return summary.to_dict()

        record["job"] = state.jobs.submit("scan", SCAN_KEY, work)
        _scans[id(state)] = record


def status(state: ServiceState, songs: int) -> dict:
    """``scanStatus``: whether a scan runs, files done so far, songs in the library."""
    record = _scans.get(id(state))
    scanning = record is not None and record["job"].status in ("queued", "running")
    data = {"scanning": scanning, "count": record["seen"] if scanning else songs}
    if record is not None:
        data["folderCount"] = len(state.roots())
        if record["job"].status == "failed":
            data["error"] = record["job"].error
    return data
