"""The catalog at scale: PostgreSQL against SQLite, and the index built from the database.

For each backend, on one machine (a PostgreSQL 15 server started here from the
machine's ``initdb``/``pg_ctl``, as the tests do, unless ``--database-url`` names
one; fsync and synchronous commit on, as the SQLite catalog's WAL commits), in one run:

  1. write throughput of the ingest's own write path: ``Catalog.record_analysis``,
     one transaction per track with its 10 genre rows and 66 segment rows, as the
     pipeline commits a finished four-minute track (``--record`` tracks);
  2. bulk-load throughput of synthetic catalogue rows (the embedding blob and tags,
     20k rows per transaction) up to ``--size`` tracks (default 100k);
  3. the exact index rebuilt from the database (server-side cursor on PostgreSQL);
  4. ``catalog.queries.similar`` (index search + row lookups), p50/p99, with the
     structure the catalog picks for the size (HNSW at 100k);
  5. with ``--ivf``: the IVF build in a child process each, from the database in
     batches (``catalog.index_builds``) and from a copy in memory (the SQLite path),
     with the child's peak RSS, which is what the 1M arithmetic in docs/scaling.md
     scales from;
  6. with ``--build-memory N,N,...`` (alone): the whole index build from a PostgreSQL
     catalog of N synthetic tracks as a server does it (``Catalog.index()``, the
     approximate index, the save) and the reload of what it saved, each in a fresh
     process whose peak RSS is its ``VmHWM`` (``/proc/self/status``), the old code
     (``--old-ref``, a ``git archive`` of it: the exact index first, then IVF beside
     it) and this tree's (IVF straight from the database) alternating.

Vectors: the clustered low-rank mixture of ``bench/query.py``. ``--storage N``
only records N tracks into PostgreSQL and prints each table's bytes per track
(``pg_total_relation_size``: heap, TOAST and indexes), what 1M tracks need on disk.

    python bench/scale_catalog.py                       # 100k tracks, both backends
    python bench/scale_catalog.py --size 20000 --record 300   # quick look
    python bench/scale_catalog.py --storage 400               # disk per track on PostgreSQL
    python bench/scale_catalog.py --build-memory 100000,200000 --rounds 2  # old vs new peak

``catalog_section()`` returns the figures as a dict, for ``bench/scale.py`` to print
beside the Ray figures.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # postgres_server: the tests' own server starter

from sqlalchemy import insert  # noqa: E402

from bench.query import DIM, GENRES, MODEL_ID, percentiles, synthetic  # noqa: E402
from catalog.queries import similar  # noqa: E402
from catalog.records import Analysis, AudioFacts, FileFacts, Tags  # noqa: E402
from catalog.schema import Track, TrackStatus  # noqa: E402
from catalog.store import Catalog  # noqa: E402

SEGMENTS = 66  # a four-minute track in 3-second segments
LOAD_BATCH = 20_000


@contextmanager
def postgres(url: str | None):
    """A database URL: the one given, else a fresh database on a server started here."""
    if url:
        yield url
        return
    from postgres_server import PostgresServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("no PostgreSQL binaries found; pass --database-url")
    server = PostgresServer(bindir).start(durable=True)  # fsync on, as SQLite's WAL commits
    try:
        yield server.new_database("bench")
    finally:
        server.stop()


def _analysis(vector: np.ndarray, rng: np.random.Generator) -> Analysis:
    probs = rng.dirichlet(np.ones(len(GENRES))).astype(np.float32)
    segs = rng.dirichlet(np.ones(len(GENRES)), SEGMENTS).astype(np.float32)
    seg_emb = rng.standard_normal((SEGMENTS, 128)).astype(np.float16)
    return Analysis(MODEL_ID, GENRES, probs, vector, segs, 3.0, seg_emb)


def record_throughput(catalog: Catalog, vectors: np.ndarray) -> dict:
    """Tracks per second through ``record_analysis`` (the ingest's commit per track)."""
    rng = np.random.default_rng(1)
    audio = AudioFacts(240.0, 44100, 2)
    started = time.perf_counter()
    for i, vector in enumerate(vectors):
        facts = FileFacts(f"/music/rec/{i:07d}.flac", 30_000_000, 1_700_000_000 * 10**9 + i,
                          f"{i:064x}", "flac")  # fmt: skip
        tags = Tags(f"Track {i}", f"Artist {i % 50}", f"Album {i % 200}", i % 12 + 1, 240.0)
        catalog.record_analysis(facts, tags, audio, _analysis(vector, rng))
    seconds = time.perf_counter() - started
    return {"tracks": len(vectors), "seconds": round(seconds, 2),
            "tracks_per_s": round(len(vectors) / seconds, 1)}  # fmt: skip


def bulk_load(catalog: Catalog, vectors: np.ndarray, labels: np.ndarray, first_id: int) -> dict:
    """Rows per second for plain catalogue rows, ``LOAD_BATCH`` per transaction."""
    now = datetime(2024, 1, 1)
    version = catalog.index_version()
    started = time.perf_counter()
    for start in range(0, len(vectors), LOAD_BATCH):
        rows = []
        for i in range(start, min(len(vectors), start + LOAD_BATCH)):
            c = int(labels[i])
            rows.append({
                "id": first_id + i, "path": f"/music/{c:03d}/{i:07d}.flac",
                "size": 5_000_000, "mtime_ns": 0, "format": "flac",
                "title": f"Track {i}", "artist": f"Artist {c}-{i % 7}",
                "album": f"Album {c}-{i % 23}", "duration_s": 200.0,
                "status": TrackStatus.OK, "model_id": MODEL_ID,
                "genre": GENRES[c % len(GENRES)], "confidence": 0.8, "n_segments": SEGMENTS,
                "embedding": vectors[i].tobytes(), "embedding_version": version,
                "analysed_at": now, "added_at": now, "updated_at": now,
            })  # fmt: skip
        with catalog.sessions.begin() as s:
            s.execute(insert(Track), rows)
            catalog._bump_version(s)
    seconds = time.perf_counter() - started
    return {"rows": len(vectors), "seconds": round(seconds, 2),
            "rows_per_s": round(len(vectors) / seconds)}  # fmt: skip


def similar_latency(catalog: Catalog, n_queries: int) -> dict:
    index = catalog.index()
    started = time.perf_counter()
    index.ensure_ann(background=False)
    build = time.perf_counter() - started
    ids = index.ids()
    rng = np.random.default_rng(2)
    picks = rng.choice(ids, n_queries, replace=False)
    times = []
    for track_id in picks:
        t = time.perf_counter()
        similar(catalog, int(track_id), k=10)
        times.append(time.perf_counter() - t)
    status = index.ann_status()
    return {"structure": status["searching_with"], "params": status["params"],
            "ann_build_s": round(build, 1), **percentiles(times)}  # fmt: skip


def similar_side_by_side(size: int, n_queries: int, rounds: int,
                         database_url: str | None = None) -> dict:  # fmt: skip
    """``similar`` on SQLite and on PostgreSQL, and on PostgreSQL with its reads in a
    transaction (the old way) and in autocommit (``catalog.read_deadline.READ_AUTOCOMMIT``),
    the three alternating in one run, ``rounds`` times ``n_queries`` calls each.

    Each call is timed whole and split: the index part (the query's vector and the
    FAISS search, timed on their own just before) and the rest (the row lookup of the
    neighbours: pool checkout, the SQL, returning the connection). The statements
    each call sends are counted (SQLAlchemy's ``before_cursor_execute``), to show
    whether the neighbours' rows come in one query or one per neighbour.
    """
    from sqlalchemy import event

    import catalog.read_deadline as read_deadline

    vectors, labels = synthetic(size, seed=0)
    times: dict[str, dict[str, list[float]]] = {}
    statements: dict[str, list[int]] = {}
    with postgres(database_url) as url, tempfile.TemporaryDirectory() as tmp:
        catalogs = {}
        for name, backend_url in (("sqlite", None), ("postgresql", url)):
            catalog = Catalog(Path(tmp) / name, backend_url)
            catalog.activate_model(MODEL_ID, GENRES, DIM)
            bulk_load(catalog, vectors, labels, 1)
            catalog.index().ensure_ann(background=False)
            catalogs[name] = catalog
        count = {"n": 0}

        def counted(*_args) -> None:
            count["n"] += 1

        for catalog in catalogs.values():
            event.listen(catalog.engine, "before_cursor_execute", counted)
        runs = (("sqlite", "sqlite", True), ("postgresql, transaction", "postgresql", False),
                ("postgresql, autocommit", "postgresql", True))  # fmt: skip
        rng = np.random.default_rng(4)
        try:
            for _ in range(rounds):
                for label, name, autocommit in runs:
                    catalog = catalogs[name]
                    read_deadline.READ_AUTOCOMMIT = autocommit
                    index = catalog.index()
                    bucket = times.setdefault(label, {"total": [], "index": [], "rows": []})
                    for track_id in rng.choice(index.ids(), n_queries, replace=False):
                        t = time.perf_counter()
                        vector = index.vector(int(track_id))
                        index.search(vector, 11)
                        t_index = time.perf_counter() - t
                        before = count["n"]
                        t = time.perf_counter()
                        similar(catalog, int(track_id), k=10)
                        total = time.perf_counter() - t
                        statements.setdefault(label, []).append(count["n"] - before)
                        bucket["total"].append(total)
                        bucket["index"].append(t_index)
                        bucket["rows"].append(max(0.0, total - t_index))
        finally:
            read_deadline.READ_AUTOCOMMIT = True
            for catalog in catalogs.values():
                catalog.close()
    return {
        "size": size, "queries_per_round": n_queries, "rounds": rounds, "cpu": _cpu(),
        "load_average": os.getloadavg(),
        "structure": "flat" if size <= 25_000 else "hnsw",
        "results": {
            label: {part: percentiles(v) for part, v in parts.items()}
            | {"statements_per_call": sorted(set(statements[label]))}
            for label, parts in times.items()
        },
    }  # fmt: skip


def _rss_mib() -> float:
    """This process's resident set now (``/proc/self/statm``), in MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


class _PeakRss:
    """The highest resident set seen while the block runs (sampled every 5 ms)."""

    def __enter__(self) -> _PeakRss:
        self.peak = _rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_mib())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mib())


def _ivf_child(data_dir: str, url: str | None, source: str, out) -> None:
    if url:
        os.environ["SONIC_DATABASE_URL"] = url
    else:
        os.environ.pop("SONIC_DATABASE_URL", None)
    with Catalog(Path(data_dir)) as catalog:
        assert catalog.active_model_id  # connect and read meta before the baseline
        # "... exact kept": the catalog before the IVF was kept alone (both indexes held)
        catalog.compact_ivf = not source.endswith("exact kept")
        base = _rss_mib()
        index = catalog.index()
        loaded = _rss_mib()
        if source.startswith("memory"):
            index.ann_builder = None  # the copy-in-memory build, as on SQLite
        started = time.perf_counter()
        with _PeakRss() as peak:
            index.build_ann("ivf")
        seconds = time.perf_counter() - started
        after = _rss_mib()
        out.send({
            "source": source, "vectors": len(index), "build_s": round(seconds, 1),
            "exact_index_mib": round(loaded - base),
            "build_peak_over_exact_mib": round(peak.peak - loaded),
            "ivf_kept_mib": round(after - loaded),
            "held_after_build_mib": round(after - base),
            "exact_index_kept": index.ann_status()["exact_index_kept"],
            "params": index.ann_status()["params"],
        })  # fmt: skip


def ivf_memory(data_dir: Path, url: str | None, source: str) -> dict:
    """Peak RSS of a fresh process that loads the index and builds IVF from ``source``."""
    ctx = mp.get_context("spawn")
    mine, theirs = ctx.Pipe()
    proc = ctx.Process(target=_ivf_child, args=(str(data_dir), url, source, theirs))
    proc.start()
    result = mine.recv()
    proc.join()
    return result


def ivf_only(size: int, database_url: str | None = None) -> dict:
    """Only the IVF build's memory, from the database and from memory, on PostgreSQL."""
    vectors, labels = synthetic(size, seed=0)
    with postgres(database_url) as url, tempfile.TemporaryDirectory() as tmp:
        with Catalog(Path(tmp), url) as catalog:
            catalog.activate_model(MODEL_ID, GENRES, DIM)
            bulk_load(catalog, vectors, labels, 1)
            catalog.index()
        del vectors
        sources = ("database", "memory", "database, exact kept")
        return {"size": size, "ivf": [ivf_memory(Path(tmp), url, source)
                                      for source in sources]}  # fmt: skip


# The child of --build-memory: a fresh interpreter per measurement, importing the
# catalog from REPO (this tree, or a `git archive` of the old commit), so VmHWM
# is that one build's peak. Prints one JSON line.
_BUILD_CHILD = r"""
import json, os, resource, sys, time
repo, data_dir, url, ivf_above, mode = sys.argv[1:6]
sys.path.insert(0, repo)
os.environ["SONIC_DATABASE_URL"] = url
from catalog import ann
ann.HNSW_MAX_VECTORS = min(ann.HNSW_MAX_VECTORS, int(ivf_above))  # IVF at this size
ann.EXACT_MAX_VECTORS = min(ann.EXACT_MAX_VECTORS, int(ivf_above) // 2)
from catalog.store import Catalog

def mem():
    f = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
    return {k: int(f[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

out = {"mode": mode, "catalog_from": os.path.dirname(os.path.dirname(ann.__file__))}
with Catalog(data_dir) as catalog:
    assert catalog.active_model_id
    out["base"] = mem()
    c0, t0 = cpu(), time.perf_counter()
    index = catalog.index()
    out["after_index"] = mem()
    if mode == "build":
        index.ensure_ann(background=False)  # main: the IVF is built here, after the exact index
        out["after_ann"] = mem()
        catalog.save_index()
        out["after_save"] = mem()
    out["cpu_s"] = round(cpu() - c0, 1)
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    status = index.ann_status()
    out.update(vectors=len(index), searching_with=status["searching_with"],
               exact_index_kept=status["exact_index_kept"], params=status["params"],
               repaired=catalog.index_repaired)
print(json.dumps(out))
"""


def _old_tree(ref: str, where: Path) -> Path:
    """The catalog as it was at ``ref`` (``git archive``), for the side-by-side."""
    import subprocess

    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], check=True,
                             capture_output=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return where


def _build_child(repo: Path, data_dir: Path, url: str, ivf_above: int, mode: str) -> dict:
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", _BUILD_CHILD, str(repo), str(data_dir), url, str(ivf_above), mode],
        capture_output=True, text=True, env=env, cwd=str(repo),
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} child in {repo} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    base = out["base"]["VmRSS"]
    peak = max(v["VmHWM"] for v in out.values() if isinstance(v, dict) and "VmHWM" in v)
    out["peak_over_base_mib"] = round(peak - base)
    last = out.get("after_save") or out["after_index"]
    out["held_over_base_mib"] = round(last["VmRSS"] - base)
    return out


def build_memory(sizes: list[int], rounds: int, old_ref: str,
                 database_url: str | None = None) -> dict:  # fmt: skip
    """Peak RSS (VmHWM) of building the index from a PostgreSQL catalog, old vs new.

    For each size: a PostgreSQL catalog of N synthetic tracks, then, alternating
    old and new ``rounds`` times, a fresh process on a fresh data directory (no
    index file) that builds the index as ``sonic serve`` would (``index()``, the
    approximate index, save) and a fresh process that reloads what it saved. "old"
    imports the catalog from a ``git archive`` of ``old_ref`` (the exact index
    first, then IVF from the database beside it); "new" from this tree. IVF is
    forced at these sizes (``catalog.ann.HNSW_MAX_VECTORS`` set to N/2 in the child).
    """
    import shutil
    import subprocess

    def commit(ref: str) -> str:
        git = ["git", "-C", str(REPO), "rev-parse", "--short", ref]
        return subprocess.run(git, check=True, capture_output=True, text=True).stdout.strip()

    results: dict = {
        "cpu": _cpu(),
        "old": f"{old_ref} ({commit(old_ref)})",
        "new": f"this tree (HEAD {commit('HEAD')}, plus any changes)",
        "sizes": [],
    }
    with tempfile.TemporaryDirectory(prefix="sonic-build-mem-") as tmp:
        (Path(tmp) / "old-tree").mkdir()
        trees = {"old": _old_tree(old_ref, Path(tmp) / "old-tree"), "new": REPO}
        for size in sizes:
            with postgres(database_url) as url:
                vectors, labels = synthetic(size, seed=0)
                with Catalog(Path(tmp) / "load", url) as catalog:
                    catalog.activate_model(MODEL_ID, GENRES, DIM)
                    load = bulk_load(catalog, vectors, labels, 1)
                del vectors, labels
                runs: list[dict] = []
                for r in range(rounds):
                    order = ("old", "new") if r % 2 == 0 else ("new", "old")
                    for which in order:
                        data_dir = Path(tmp) / f"{which}-{size}-{r}"
                        data_dir.mkdir()
                        built = _build_child(trees[which], data_dir, url, size // 2, "build")
                        loaded = _build_child(trees[which], data_dir, url, size // 2, "reload")
                        runs.append({"code": which, "round": r, "build": built, "reload": loaded})
                        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
                        shutil.rmtree(data_dir)
            results["sizes"].append({"size": size, "bulk_load": load,
                                     "load_average": os.getloadavg(), "runs": runs})  # fmt: skip
    return results


def run_backend(name: str, url: str | None, size: int, record: int, queries: int,
                ivf: bool) -> dict:  # fmt: skip
    vectors, labels = synthetic(size + record, seed=0)
    with tempfile.TemporaryDirectory(prefix=f"sonic-scale-{name}-") as tmp:
        data_dir = Path(tmp)
        with Catalog(data_dir, url) as catalog:
            catalog.activate_model(MODEL_ID, GENRES, DIM)
            catalog.index()
            out = {"backend": name, "record_analysis": record_throughput(catalog, vectors[:record])}
            out["bulk_load"] = bulk_load(catalog, vectors[record:], labels[record:], 10**7)
        with Catalog(data_dir, url) as catalog:
            (data_dir / "index.faiss").unlink(missing_ok=True)
            started = time.perf_counter()
            index = catalog.index()
            out["exact_index_from_db"] = {
                "vectors": len(index),
                "seconds": round(time.perf_counter() - started, 2),
            }
            out["similar"] = similar_latency(catalog, queries)
        if ivf:
            out["ivf"] = [ivf_memory(data_dir, url, "database" if url else "memory")]
            if url:
                out["ivf"].append(ivf_memory(data_dir, url, "memory"))
    return out


def catalog_section(size: int = 100_000, record: int = 2_000, queries: int = 300,
                    ivf: bool = True, database_url: str | None = None) -> dict:  # fmt: skip
    """PostgreSQL vs SQLite figures at ``size`` tracks (what bench/scale.py prints)."""
    results = {"size": size, "cpu": _cpu(), "backends": []}
    results["backends"].append(run_backend("sqlite", None, size, record, queries, ivf))
    with postgres(database_url) as url:
        results["backends"].append(run_backend("postgresql", url, size, record, queries, ivf))
    return results


def storage_per_track(n: int, database_url: str | None = None) -> dict:
    """Bytes per recorded track in each PostgreSQL table (66 segments per track)."""
    from sqlalchemy import text

    vectors, _ = synthetic(n, seed=3)
    with postgres(database_url) as url, tempfile.TemporaryDirectory() as tmp:
        with Catalog(Path(tmp), url) as catalog:
            catalog.activate_model(MODEL_ID, GENRES, DIM)
            catalog.index()
            record_throughput(catalog, vectors)
            out = {"tracks": n, "segments_per_track": SEGMENTS}
            with catalog.engine.connect() as conn:
                for table in ("tracks", "segments", "track_genres"):
                    size = conn.execute(text(f"SELECT pg_total_relation_size('{table}')"))
                    out[f"{table}_bytes_per_track"] = round(size.scalar() / n)
            sizes = [v for k, v in out.items() if k.endswith("_bytes_per_track")]
            out["total_bytes_per_track"] = sum(sizes)
    return out


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} x{os.cpu_count()}"
    except OSError:
        pass
    return f"unknown x{os.cpu_count()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--record", type=int, default=2_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--no-ivf", action="store_true")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--storage", type=int, default=0, metavar="N")
    parser.add_argument("--ivf-only", action="store_true",
                        help="only the IVF build's memory on PostgreSQL, at --size")  # fmt: skip
    parser.add_argument(
        "--similar-only",
        action="store_true",
        help="only `similar`, SQLite vs PostgreSQL side by side, at --size",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--build-memory",
        metavar="N,N,...",
        default=None,
        help="peak RSS of building the index from a PostgreSQL catalog of "
        "each size, old (--old-ref) vs this tree, alternating --rounds",
    )
    parser.add_argument("--old-ref", default="main",
                        help="the commit --build-memory compares against")  # fmt: skip
    args = parser.parse_args()
    if args.similar_only:
        print(json.dumps(similar_side_by_side(args.size, args.queries, args.rounds,
                                              args.database_url), indent=2))  # fmt: skip
        return
    if args.build_memory:
        sizes = [int(n) for n in args.build_memory.split(",")]
        print(json.dumps(build_memory(sizes, args.rounds, args.old_ref, args.database_url),
                         indent=2))  # fmt: skip
        return
    if args.ivf_only:
        print(json.dumps(ivf_only(args.size, args.database_url), indent=2))
        return
    if args.storage:
        print(json.dumps(storage_per_track(args.storage, args.database_url), indent=2))
        return
    results = catalog_section(args.size, args.record, args.queries, not args.no_ivf,
                              args.database_url)  # fmt: skip
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
