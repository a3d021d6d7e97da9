"""Per-stage CPU counters for bench/ingest_stages.py, in every process of an ingest.

Loaded by Python at start-up (``site`` imports ``sitecustomize`` from the path) when
bench/ingest_stages.py puts this folder first on PYTHONPATH, in the main process
and in each spawned decode worker alike. With ``SONIC_STAGE_CPU_DIR`` set, it wraps
the functions named in :data:`TARGETS` as their modules load and counts the CPU
time of the calling thread (``time.thread_time``) spent in each stage, exclusive
of nested stages; at exit each process writes its counters, its own CPU total and
the CPU spent before its work began (interpreter start and imports) as JSON.
Without the variable it does nothing.
"""

from __future__ import annotations

import functools
import importlib.abc
import inspect
import json
import os
import resource
import sys
import threading
import time

OUT = os.environ.get("SONIC_STAGE_CPU_DIR")

# module -> (attribute path, stage)
TARGETS: dict[str, list[tuple[str, str]]] = {
    "ingest.hashing": [("content_hash", "hashing")],
    "ingest.tags": [("read_tags", "tags")],
    "embeddings.audio.stream": [("open_audio", "decode: open + first block")],
    "ingest.windowed": [("read_windows", "decode: analysis windows")],
    "embeddings.audio.resample": [("Resampler.__call__", "resample (soxr)")],
    "embeddings.frontend": [("batch_features", "features (log-mel)")],
    "ingest.overview": [("overview_of_windows", "overview"), ("OverviewBuilder.push", "overview")],
    "multiprocessing.reduction": [("ForkingPickler.dumps", "IPC: pickling"),
                                  ("ForkingPickler.loads", "IPC: unpickling")],  # fmt: skip
    "embeddings.model_handle": [("loaded", "model load")],
    "embeddings.inference": [("Predictor.__init__", "model setup (fold, copy)"),
                             ("Predictor.predict", "network forward")],  # fmt: skip
    "embeddings.gradcam": [("grad_cam", "heatmap map (Grad-CAM/CAM)"),
                           ("class_activation_map", "heatmap map (Grad-CAM/CAM)")],  # fmt: skip
    "embeddings.heatmap_image": [("render_heatmap_png", "heatmap PNG")],
    "embeddings.atomic": [("atomic_write", "PNG file write")],
    "catalog.store": [("Catalog.record_analysis", "catalog writes"),
                      ("Catalog.save_index", "FAISS index save")],  # fmt: skip
    "ingest.scan": [("make_plan", "planning")],
    "embeddings.projection": [("project_segments", "apply results (projection)")],
    "ingest.pipeline": [("IngestRun.run", "@start")],
    "ingest.worker": [("worker_main", "@start")],
}

_stages: dict[str, float] = {}
_local = threading.local()
_lock = threading.Lock()
_started: list[float] = []


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _wrap(function, stage: str):
    if stage == "@start":

        @functools.wraps(function)
        def started(*args, **kwargs):
            if not _started:
                _started.append(_cpu())
            return function(*args, **kwargs)

        return started

    @functools.wraps(function)
    def counted(*args, **kwargs):
        stack = getattr(_local, "stack", None)
        if stack is None:
            stack = _local.stack = []
        t0 = time.thread_time()
        stack.append(0.0)  # CPU of nested stages, taken out of this one
        try:
            return function(*args, **kwargs)
        finally:
            spent = time.thread_time() - t0
            nested = stack.pop()
            if stack:
                stack[-1] += spent
            with _lock:
                _stages[stage] = _stages.get(stage, 0.0) + spent - nested

    return counted


def _patch(module) -> None:
    for path, stage in TARGETS.get(module.__name__, []):
        owner, _, name = path.rpartition(".")
        holder = getattr(module, owner, None) if owner else module
        if holder is None:
            continue
        try:  # a method may live on a base class (a mixin): wrap it where it is looked up
            raw = inspect.getattr_static(holder, name)
        except AttributeError:
            continue
        if isinstance(raw, classmethod):
            setattr(holder, name, classmethod(_wrap(raw.__func__, stage)))
        else:
            setattr(holder, name, _wrap(raw, stage))


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in TARGETS:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            spec = getattr(finder, "find_spec", lambda *a: None)(fullname, path, target)
            if spec is not None and spec.loader is not None:
                exec_module = spec.loader.exec_module

                def patched_exec(module, _exec=exec_module):
                    _exec(module)
                    _patch(module)

                spec.loader.exec_module = patched_exec
                return spec
        return None


def _dump() -> None:
    import multiprocessing

    # spawned workers inherit the parent's sys.argv, so they are told apart by parent
    if multiprocessing.parent_process() is not None:
        role = "worker"
    elif any("ui.cli" in a or a.endswith(("ui/cli.py", "ui\\cli.py")) for a in sys.argv):
        role = "main"
    else:
        role = "other"
    record = {"pid": os.getpid(), "role": role, "argv": sys.argv[:3], "cpu_s": _cpu(),
              "startup_cpu_s": _started[0] if _started else None,
              "stages": dict(_stages)}  # fmt: skip
    with open(os.path.join(OUT, f"{os.getpid()}.json"), "w") as fh:
        json.dump(record, fh)


if OUT:
    sys.meta_path.insert(0, _Finder())
    for _name in list(TARGETS):
        if _name in sys.modules:
            _patch(sys.modules[_name])
    import atexit

    atexit.register(_dump)
    import multiprocessing.util

    multiprocessing.util.Finalize(None, _dump, exitpriority=0)
