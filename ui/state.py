"""What the web service and the web UI share: one catalog, one model, the jobs.

Both faces run in one process (``sonic serve``); this holds the long-lived
objects and keeps the FAISS index fresh: before each question it checks (one
``stat``) whether an ingest saved a newer ``index.faiss``, and reloads it (in a
worker thread for the routes that run on the event loop, see :meth:`current`).
On PostgreSQL the check is the catalog's version (one small read) and the index
catches up from the database, so servers on other machines stay fresh too.
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from catalog.stats import stats
from catalog.store import Catalog
from embeddings.checkpoint import GenreModel, UntrainedModelWarning, load_model
from ingest.clip import ClipAnalyser
from ui.jobs import Jobs
from ui.optional import Features, inside

DEFAULT_MAX_UPLOAD_BYTES = 50 * 1024 * 1024
DEFAULT_UPLOAD_CACHE_BYTES = 500 * 1024 * 1024
DEFAULT_UPLOAD_MAX_AGE_S = 3600
TOKEN_ENV = "SONIC_API_TOKEN"
ALLOWED_HOSTS_ENV = "SONIC_ALLOWED_HOSTS"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def allowed_hosts_from_env() -> list[str]:
    """``$SONIC_ALLOWED_HOSTS``: comma-separated Host names the service answers to."""
    return [h.strip() for h in os.environ.get(ALLOWED_HOSTS_ENV, "").split(",") if h.strip()]


@dataclass
class Settings:
    data_dir: Path
    database_url: str | None = None  # PostgreSQL; None: $SONIC_DATABASE_URL, else SQLite
    model_path: Path | None = None
    device: str = "auto"
    library_roots: list[Path] = field(default_factory=list)  # besides those ingests recorded
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    token: str | None = None  # when set, every route requires it
    build_ann: bool = True  # build the approximate index in the background when large
    # Host header names answered besides the loopback ones (DNS rebinding); "*" is any.
    allowed_hosts: list[str] = field(default_factory=list)
    # The web UI's uploads: at most this many bytes kept (oldest removed first, plus the
    # upload arriving), none kept longer than this (Gradio's ``delete_cache``).
    upload_cache_bytes: int = DEFAULT_UPLOAD_CACHE_BYTES
    upload_max_age_s: int = DEFAULT_UPLOAD_MAX_AGE_S
    models_dir: Path | None = None  # Demucs weights folder (else $SONIC_DEMUCS_DIR, Demucs' cache)


class ServiceState:
    def __init__(
        self,
        settings: Settings,
        model: GenreModel | None = None,
        features: Features | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = Catalog(settings.data_dir, settings.database_url)
        self._lock = threading.RLock()
        self._model = model
        self._analyser: ClipAnalyser | None = None
        self._reloading: threading.Thread | None = None
        self.features = features or Features.detect(settings.device, settings.models_dir)
        self.jobs = Jobs()

    # -- the catalog, kept fresh ------------------------------------------------------------

    def fresh(self, block: bool = True) -> Catalog:
        """The catalog, with the index reloaded if an ingest saved a newer one.

        ``block=False`` (the latency-critical routes, which run on the event loop)
        never waits for a reload: it starts one in a thread and answers from the
        index already in memory meanwhile.
        """
        catalog = self.catalog
        if block or not catalog.index_loaded:
            with self._lock:
                catalog.refresh_index()
                index = catalog.index()
        else:
            if catalog.index_file_changed():
                self._reload_in_background()
            index = catalog.index()
        if self.settings.build_ann:
            index.ensure_ann(background=True)
        return catalog

    async def current(self) -> Catalog:
        """``fresh()`` for routes on the event loop, without blocking it.

        While the index in memory is the one on disk (one ``stat``), the catalog is
        returned at once. When an ingest saved a newer one, none is loaded yet, or a
        reload is under way (the lock is held), ``fresh()`` runs in a worker thread and
        the route waits for it, as a route in the thread pool did: the answer is never
        older than the index file the request found.
        """
        catalog = self.catalog
        if self._lock.acquire(blocking=False):
            try:
                current = catalog.index_loaded and not catalog.index_file_changed()
            finally:
                self._lock.release()
            if current:
                if self.settings.build_ann:
                    catalog.index().ensure_ann(background=True)
                return catalog
        return await anyio.to_thread.run_sync(self.fresh)

    def _reload_in_background(self) -> None:
        with self._lock:
            if self._reloading is not None and self._reloading.is_alive():
                return
            self._reloading = threading.Thread(
                target=self.fresh, name="sonic-index-reload", daemon=True
            )
            self._reloading.start()

    def roots(self) -> list[Path]:
        """Where audio may be served from: ingested roots plus any given to ``serve``."""
        return self.catalog.library_roots() + list(self.settings.library_roots)

    def may_serve_audio(self, path: Path) -> bool:
        return inside(path, self.roots())

    # -- the model ----------------------------------------------------------------------

    @property
    def model(self) -> GenreModel:
        with self._lock:
            if self._model is None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UntrainedModelWarning)
                    self._model = load_model(self.settings.model_path)
            return self._model

    @property
    def analyser(self) -> ClipAnalyser:
        with self._lock:
            if self._analyser is None:
                device = None if self.settings.device == "auto" else self.settings.device
                self._analyser = ClipAnalyser(self.model, device)
            return self._analyser

    def comparable(self) -> tuple[bool, str | None]:
        """Whether clip embeddings from this model can be searched in this catalog."""
        active = self.catalog.active_model_id
        if active is None:
            return False, "the catalog is empty: run `sonic ingest PATH` first"
        if active != self.model.model_id:
            return False, (
                f"the catalog was analysed with model {active}, this service runs "
                f"{self.model.model_id}: sound-alike search needs the same model "
                "(start `sonic serve --checkpoint` with the catalog's checkpoint)"
            )
        return True, None

    # -- what the UI's header and /health show --------------------------------------------

    def device(self) -> str:
        from embeddings.inference import pick_device

        requested = None if self.settings.device == "auto" else self.settings.device
        if self._analyser is not None:
            return self._analyser.device
        return str(pick_device(requested))

    def summary(self) -> dict:
        catalog = self.fresh()
        data = stats(catalog, check_index_file=False)
        model = self.model
        data.update(
            {
                "device": self.device(),
                "service_model_id": model.model_id,
                "service_model_trained": model.trained,
                "search": catalog.index().ann_status(),
                "features": {
                    "explanations": self.features.explanations.available,
                    "stems": self.features.stems.available,
                },
            }
        )
        return data

    def close(self) -> None:
        self.jobs.shutdown()
        self.catalog.close()
