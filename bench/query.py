"""Query benchmark: similar-track latency in process and through the HTTP API.

For each size (default 10k, 100k and 1M tracks) it builds a catalog of synthetic
512-dim embeddings (SQLite rows with tags and embedding blobs, and the FAISS file,
exactly as an ingest leaves them), then measures, in one run:

  1. raw single-query search, exact (``IndexFlatIP``) and with the structure the
     catalog picks for the size (``catalog.ann.choose_kind``), with recall@10 of
     the approximate search against exact search on the same queries;
  2. the exact search under different faiss settings for single queries (OpenMP
     threads, and the BLAS threshold that decides between faiss' own SIMD loop and
     a BLAS call);
  3. ``catalog.queries.similar`` in process (search + SQLite lookups), p50/p99;
  4. ``GET /tracks/{id}/similar?k=10`` against ``sonic serve`` running in its own
     process (uvicorn, Gradio mounted), one keep-alive client, p50/p99 per request;
  5. the OpenSubsonic ``sonicSimilarity`` calls beside it: ``getSonicSimilarTracks``
     (count 10) and ``findSonicPath`` (a 25-song path between two random songs),
     in process (``catalog.sonic_path``) and over HTTP (``/rest/``, token auth, JSON).

Synthetic vectors: a mixture of 256 clusters in a 48-dim latent space, projected
to 512 dims with a little isotropic noise and L2-normalised. Real embedding spaces
are low-rank and clustered like this; uniformly random 512-dim vectors would be the
worst case for any approximate index and are not what a music library looks like.

    python bench/query.py                                  # 10k, 100k, 1M
    python bench/query.py --sizes 10000 --queries 300      # quick look
    python bench/query.py --sizes 10000 --against /tmp/old  # old code vs this, in turns
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import faiss  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from catalog.ann import choose_kind  # noqa: E402
from catalog.index import VectorIndex  # noqa: E402
from catalog.queries import similar  # noqa: E402
from catalog.schema import Track, TrackStatus  # noqa: E402
from catalog.sonic_path import sonic_path, sonic_similar  # noqa: E402
from catalog.store import Catalog  # noqa: E402

DIM = 512
K = 10
GENRES = ["blues", "classical", "country", "disco", "hiphop",
          "jazz", "metal", "pop", "reggae", "rock"]  # fmt: skip
MODEL_ID = "bench-synthetic"


def synthetic(n: int, seed: int = 0, latent: int = 48, clusters: int = 256) -> tuple:
    """(vectors, cluster labels): the clustered low-rank mixture described above."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((latent, DIM), dtype=np.float32) / np.sqrt(latent)
    centres = rng.standard_normal((clusters, latent), dtype=np.float32)
    out = np.empty((n, DIM), dtype=np.float32)
    labels = rng.integers(0, clusters, n)
    for s in range(0, n, 100_000):
        lab = labels[s : s + 100_000]
        z = centres[lab] + 0.6 * rng.standard_normal((len(lab), latent), dtype=np.float32)
        out[s : s + len(lab)] = z @ w + 0.05 * rng.standard_normal((len(lab), DIM), np.float32)
    faiss.normalize_L2(out)
    return out, labels


def build_catalog(data_dir: Path, vectors: np.ndarray, labels: np.ndarray) -> float:
    """SQLite rows and the FAISS file for ``vectors``, as an ingest would leave them."""
    started = time.perf_counter()
    n = len(vectors)
    now = datetime(2024, 1, 1)
    with Catalog(data_dir) as catalog:
        catalog.activate_model(MODEL_ID, GENRES, DIM)
        version = catalog.index_version()
        with catalog.sessions.begin() as s:
            for start in range(0, n, 20_000):
                rows = []
                for i in range(start, min(n, start + 20_000)):
                    c = int(labels[i])
                    rows.append(
                        {
                            "id": i + 1, "path": f"/music/{c:03d}/{i:07d}.flac",
                            "size": 5_000_000, "mtime_ns": 0, "format": "flac",
                            "title": f"Track {i}", "artist": f"Artist {c}-{i % 7}",
                            "album": f"Album {c}-{i % 23}", "duration_s": 200.0,
                            "status": TrackStatus.OK, "model_id": MODEL_ID,
                            "genre": GENRES[c % len(GENRES)], "confidence": 0.8,
                            "n_segments": 66, "embedding": vectors[i].tobytes(),
                            "embedding_version": version, "analysed_at": now,
                            "added_at": now, "updated_at": now,
                        }
                    )  # fmt: skip
                s.execute(insert(Track), rows)
        index = VectorIndex(DIM, MODEL_ID, version)
        index.upsert(np.arange(1, n + 1), vectors)
        index.save(catalog.paths.index)
    return time.perf_counter() - started


def percentiles(samples_s: list[float]) -> dict:
    ms = np.asarray(samples_s) * 1e3
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(ms.mean()), 3),
    }


def timed_search(index: faiss.Index, queries: np.ndarray, k: int, threads: int | None = None):
    """Single-query latencies and the ids found (one query per call, as the service does)."""
    before = faiss.omp_get_max_threads()
    if threads:
        faiss.omp_set_num_threads(threads)
    try:
        times, found = [], []
        for q in queries:
            t = time.perf_counter()
            _, ids = index.search(q[None, :], k)
            times.append(time.perf_counter() - t)
            found.append(ids[0])
    finally:
        faiss.omp_set_num_threads(before)
    return times, np.array(found)


def recall_at_k(approx: np.ndarray, exact: np.ndarray, self_ids: np.ndarray, k: int) -> float:
    hits = 0
    for a, e, me in zip(approx, exact, self_ids, strict=True):
        want = [i for i in e if i != me][:k]
        got = [i for i in a if i != me][:k]
        hits += len(set(want) & set(got))
    return hits / (k * len(self_ids))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_serve(data_dir: Path, repo: Path = REPO) -> tuple[subprocess.Popen, str]:
    """``sonic serve`` of the code in ``repo`` on ``data_dir`` (its own process), and its URL."""
    port = free_port()
    path = os.pathsep.join(p for p in (str(repo), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "SONIC_DATA_DIR": str(data_dir), "PYTHONPATH": path}
    env.pop("SONIC_API_TOKEN", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ui.cli", "serve", "--port", str(port)],
        cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    return proc, f"http://127.0.0.1:{port}"


def wait_until_ready(client, proc: subprocess.Popen, started: float, timeout_s: float) -> dict:
    """``/health`` once the server is up and searching with the structure it wants."""
    import httpx

    while True:
        try:
            health = client.get("/health").json()
            if health["search"]["searching_with"] == health["search"]["wanted"]:
                return health
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"sonic serve exited: {proc.stderr.read()[-2000:]}")
        if time.perf_counter() - started > timeout_s:
            raise RuntimeError("sonic serve did not get ready in time")
        time.sleep(0.5)


def http_latency(data_dir: Path, query_ids: np.ndarray, warmup: int, timeout_s: float) -> dict:
    """Latency of GET /tracks/{id}/similar against ``sonic serve`` in its own process."""
    import httpx

    started = time.perf_counter()
    proc, base = start_serve(data_dir)
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            health = wait_until_ready(client, proc, started, timeout_s)
            ready_s = time.perf_counter() - started
            for track_id in query_ids[:warmup]:
                client.get(f"/tracks/{int(track_id)}/similar", params={"k": K})
            times, floor = [], []
            for track_id in query_ids:
                t = time.perf_counter()
                response = client.get(f"/tracks/{int(track_id)}/similar", params={"k": K})
                times.append(time.perf_counter() - t)
                assert response.status_code == 200 and len(response.json()["neighbours"]) == K
                # The transport alone: a route that answers 404 without touching anything.
                t = time.perf_counter()
                client.get(f"/jobs/{'0' * 32}")
                floor.append(time.perf_counter() - t)
            sonic = subsonic_latency(client, query_ids)
        return {**percentiles(times), "requests": len(times), "server_ready_s": round(ready_s, 1),
                "search": health["search"], "http_floor": percentiles(floor),
                **sonic}  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(timeout=60)


BENCH_USER, BENCH_PASSWORD = "bench", "bench-password"
SONIC_QUERIES = 200  # paths are 23 searches each: fewer of them keep a 1M run in reason
PATH_SONGS = 25


def subsonic_latency(client, query_ids: np.ndarray) -> dict:
    """p50/p99 of getSonicSimilarTracks and findSonicPath over /rest/ (JSON, token auth)."""
    import hashlib

    salt = "b3nch"
    auth = {"u": BENCH_USER, "s": salt, "f": "json", "v": "1.16.1", "c": "bench",
            "t": hashlib.md5((BENCH_PASSWORD + salt).encode()).hexdigest()}  # fmt: skip
    ids = [int(i) for i in query_ids[:SONIC_QUERIES]]
    client.get("/rest/getSonicSimilarTracks", params={**auth, "id": f"tr-{ids[0]}"})  # view
    similar_t, path_t = [], []
    for n, track_id in enumerate(ids):
        t = time.perf_counter()
        r = client.get("/rest/getSonicSimilarTracks", params={**auth, "id": f"tr-{track_id}"})
        similar_t.append(time.perf_counter() - t)
        assert len(r.json()["subsonic-response"]["sonicMatch"]) == K, r.text[:300]
        end = ids[-1 - n]
        if end == track_id:
            continue
        t = time.perf_counter()
        r = client.get("/rest/findSonicPath", params={
            **auth, "startSongId": f"tr-{track_id}", "endSongId": f"tr-{end}",
            "count": PATH_SONGS})  # fmt: skip
        path_t.append(time.perf_counter() - t)
        path = r.json()["subsonic-response"]["sonicMatch"]
        assert path[0]["entry"]["id"] == f"tr-{track_id}" and path[-1]["entry"]["id"] == f"tr-{end}"
    return {"http_getSonicSimilarTracks": percentiles(similar_t),
            "http_findSonicPath": {**percentiles(path_t), "songs": PATH_SONGS}}  # fmt: skip


def in_process_sonic(index, query_ids: np.ndarray) -> dict:
    ids = [int(i) for i in query_ids[:SONIC_QUERIES]]
    similar_t, path_t, lengths = [], [], []
    for n, track_id in enumerate(ids):
        t = time.perf_counter()
        sonic_similar(index, track_id, K)
        similar_t.append(time.perf_counter() - t)
        end = ids[-1 - n]
        if end == track_id:
            continue
        t = time.perf_counter()
        path = sonic_path(index, track_id, end, PATH_SONGS)
        path_t.append(time.perf_counter() - t)
        lengths.append(len(path))
    return {"in_process_sonic_similar": percentiles(similar_t),
            "in_process_sonic_path": {**percentiles(path_t), "songs": PATH_SONGS,
                                      "min_length": min(lengths)}}  # fmt: skip


def run_size(n: int, n_queries: int, work: Path, http: bool) -> dict:
    print(f"\n== {n:,} tracks", flush=True)
    result: dict = {"tracks": n, "kind": choose_kind(n)}
    t = time.perf_counter()
    vectors, labels = synthetic(n)
    result["generate_s"] = round(time.perf_counter() - t, 1)
    data_dir = work / f"n{n}"
    shutil.rmtree(data_dir, ignore_errors=True)
    result["catalog_build_s"] = round(build_catalog(data_dir, vectors, labels), 1)
    print(f"catalog built in {result['catalog_build_s']} s", flush=True)

    rng = np.random.default_rng(1)
    query_ids = rng.choice(np.arange(1, n + 1), size=min(n_queries, n), replace=False)
    queries = vectors[query_ids - 1]
    del vectors
    gc.collect()

    catalog = Catalog(data_dir)
    catalog.compact_ivf = False  # keep the exact index beside IVF: it is the ground truth here
    index = catalog.index()
    assert len(index) == n and not catalog.index_repaired
    t = time.perf_counter()
    index.ensure_ann(background=False)
    result["ann_build_s"] = round(time.perf_counter() - t, 1)

    # Ground truth: exact top-(k+1) for every query in one batched (BLAS) call.
    _, exact_ids = index.index.search(queries, K + 1)
    # 1. raw single-query search
    exact_q = queries[: min(len(queries), 300 if n >= 1_000_000 else len(queries))]
    exact_times, _ = timed_search(index.index, exact_q, K + 1, threads=1)
    result["exact_search"] = {**percentiles(exact_times), "queries": len(exact_q)}
    if result["kind"] != "flat":
        ann = index._ann
        ann_times, ann_ids = timed_search(ann, queries, K + 1, threads=1)
        result["ann_search"] = {
            **percentiles(ann_times),
            "recall_at_10": round(recall_at_k(ann_ids, exact_ids, query_ids, K), 4),
            "params": {
                **index.ann_status()["params"],
                **({"nlist": int(ann.nlist)} if result["kind"] == "ivf" else {}),
            },
        }
        sweep = {}
        for p in (16, 32, 64, 128) if result["kind"] == "hnsw" else (4, 8, 16, 32):
            if result["kind"] == "hnsw":
                faiss.downcast_index(ann.index).hnsw.efSearch = p
            else:
                ann.nprobe = p
            t_p, ids_p = timed_search(ann, queries, K + 1, threads=1)
            sweep[p] = {**percentiles(t_p), "recall_at_10": round(
                recall_at_k(ids_p, exact_ids, query_ids, K), 4)}  # fmt: skip
        tuned = index.ann_status()["params"]
        if result["kind"] == "hnsw":
            faiss.downcast_index(ann.index).hnsw.efSearch = tuned["efSearch"]
        else:
            ann.nprobe = tuned["nprobe"]
        result["ann_sweep"] = sweep
    # 2. faiss settings for single exact queries
    settings = {}
    few = exact_q[: min(len(exact_q), 100 if n >= 1_000_000 else 300)]
    default_threshold = faiss.cvar.distance_compute_blas_threshold
    for label, threads, threshold in (
        ("1 thread, default BLAS threshold", 1, default_threshold),
        (f"{faiss.omp_get_max_threads()} threads (OpenMP default)", None, default_threshold),
        ("1 thread, BLAS forced (threshold 0)", 1, 0),
    ):
        faiss.cvar.distance_compute_blas_threshold = threshold
        try:
            times, _ = timed_search(index.index, few, K + 1, threads=threads)
        finally:
            faiss.cvar.distance_compute_blas_threshold = default_threshold
        settings[label] = percentiles(times)
    result["exact_single_query_settings"] = settings
    result["blas_threshold_default"] = default_threshold
    # 3. in process, through the query layer
    times = []
    for track_id in query_ids:
        t = time.perf_counter()
        rows = similar(catalog, int(track_id), K)
        times.append(time.perf_counter() - t)
        assert len(rows) == K
    result["in_process_similar"] = {
        **percentiles(times),
        "queries": len(times),
        "searching_with": index.ann_status()["searching_with"],
    }
    result.update(in_process_sonic(index, query_ids))
    print(json.dumps({k: result[k] for k in result if k != "ann_sweep"}, indent=1), flush=True)
    if http:
        from catalog.subsonic_users import add_user

        add_user(catalog, BENCH_USER, BENCH_PASSWORD)
    catalog.close()
    del catalog, index
    gc.collect()
    # 4. over HTTP
    if http:
        result["http_similar"] = http_latency(
            data_dir, query_ids, warmup=min(100, len(query_ids)), timeout_s=1800
        )
        print("http", json.dumps(result["http_similar"]), flush=True)
    shutil.rmtree(data_dir, ignore_errors=True)
    return result


def run_against(n: int, old_tree: Path, work: Path, rounds: int, per_round: int) -> dict:
    """The old code in ``old_tree`` and this checkout, side by side on one catalog of ``n``."""
    from side_by_side import compare

    print(f"\n== {n:,} tracks: {old_tree} (old) against {REPO} (new)", flush=True)
    vectors, labels = synthetic(n)
    data_dir = work / f"n{n}"
    shutil.rmtree(data_dir, ignore_errors=True)
    build_catalog(data_dir, vectors, labels)  # each server builds its approximate index
    del vectors
    gc.collect()
    rng = np.random.default_rng(1)
    query_ids = rng.choice(np.arange(1, n + 1), size=min(per_round, n), replace=False)
    result = {"tracks": n, "old": str(old_tree), "new": str(REPO), "per_round": len(query_ids),
              **compare(data_dir, old_tree, query_ids, rounds, len(query_ids))}  # fmt: skip
    print(json.dumps(result, indent=1), flush=True)
    shutil.rmtree(data_dir, ignore_errors=True)
    return result


def markdown(results: dict) -> str:
    """The tables docs/benchmarks.md shows, from a results file."""
    runs = results["runs"]

    def ms(d: dict | None) -> str:
        return f"{d['p50_ms']:.2f} / {d['p99_ms']:.2f}" if d else "-"

    lines = [
        "| tracks | search | recall@10 | search only | `similar()` in process "
        "| HTTP `GET /tracks/{id}/similar` | HTTP floor |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        ann = r.get("ann_search")
        kind = r["kind"] if r["kind"] == "flat" else f"{r['kind']} ({_params(ann['params'])})"
        http = r.get("http_similar")
        lines.append(
            f"| {r['tracks']:,} | {kind} | {ann['recall_at_10']:.3f} | {ms(ann)} "
            if ann
            else f"| {r['tracks']:,} | exact (flat) | 1 | {ms(r['exact_search'])} "
        )
        lines[-1] += (
            f"| {ms(r['in_process_similar'])} | {ms(http)} "
            f"| {ms(http.get('http_floor') if http else None)} |"
        )
    lines += [
        "",
        "| tracks | exact, 1 thread | exact, OpenMP default threads | exact, BLAS forced "
        "| approximate build (s) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        cfg = list(r["exact_single_query_settings"].values())
        lines.append(
            f"| {r['tracks']:,} | {ms(cfg[0])} | {ms(cfg[1])} | {ms(cfg[2])} "
            f"| {r['ann_build_s'] if r['kind'] != 'flat' else '-'} |"
        )
    lines += [
        "",
        "| tracks | `getSonicSimilarTracks` in process | over HTTP `/rest/` "
        f"| `findSonicPath` ({PATH_SONGS} songs) in process | over HTTP `/rest/` |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        http = r.get("http_similar") or {}
        lines.append(
            f"| {r['tracks']:,} | {ms(r.get('in_process_sonic_similar'))} "
            f"| {ms(http.get('http_getSonicSimilarTracks'))} "
            f"| {ms(r.get('in_process_sonic_path'))} | {ms(http.get('http_findSonicPath'))} |"
        )
    sweeps = [r for r in runs if r.get("ann_sweep")]
    if sweeps:
        lines += ["", "| tracks | structure | parameter | p50 / p99 ms | recall@10 |",
                  "|---:|---|---:|---:|---:|"]  # fmt: skip
        for r in sweeps:
            name = "efSearch" if r["kind"] == "hnsw" else "nprobe"
            for p, d in r["ann_sweep"].items():
                lines.append(
                    f"| {r['tracks']:,} | {r['kind']} | {name} {p} | {ms(d)} "
                    f"| {d['recall_at_10']:.3f} |"
                )
    return "\n".join(lines)


def _params(params: dict) -> str:
    shown = ("nlist", "nprobe", "efSearch")
    return ", ".join(f"{k} {params[k]}" for k in shown if k in params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--work", type=Path, default=None, help="Scratch folder for catalogs.")
    parser.add_argument("--no-http", action="store_true", help="Skip the HTTP measurements.")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "query.json")
    parser.add_argument(
        "--markdown", type=Path, help="Only print the tables for a results file and exit."
    )
    parser.add_argument(
        "--against", type=Path, metavar="OLD_TREE",
        help="Only compare HTTP routes of this checkout with the code in OLD_TREE, in turns "
             "(bench/side_by_side.py), e.g. a `git archive COMMIT | tar -x -C OLD_TREE`.",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=15, help="With --against: turns each.")
    parser.add_argument("--per-round", type=int, default=200, help="With --against: requests.")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="sonic-query-bench-"))
    machine = {
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "faiss": faiss.__version__,
        "omp_threads": faiss.omp_get_max_threads(),
        "python": sys.version.split()[0],
    }
    results = {"machine": machine, "k": K, "runs": []}
    if args.against:
        for n in args.sizes:
            results["runs"].append(run_against(n, args.against, work, args.rounds, args.per_round))
            results["runs"][-1]["load_average_after"] = os.getloadavg()
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2))
        shutil.rmtree(work, ignore_errors=True)
        return
    for n in args.sizes:
        results["runs"].append(run_size(n, args.queries, work, not args.no_http))
        results["runs"][-1]["load_average_after"] = os.getloadavg()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    print(f"\nwrote {args.out}\n\n{markdown(results)}")


if __name__ == "__main__":
    main()
