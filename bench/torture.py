"""Torture benchmark: the long versions of the hostile-input tests (issue 28).

Sections (run all, or pick with ``--sections``):

  fuzz   ``sonic ingest`` over a fuzzed folder (``tests/fuzz_files.py``, 300+ files):
         runs ended by one file, good files indexed, failures without a reason,
         hangs, peak RSS of the process tree, and a re-run that retries nothing.
  kills  SIGKILL ``sonic ingest`` at random moments (the whole group, or the main
         process alone as the OOM killer does), then resume: inconsistent
         catalogs, decode workers left running, and the final run complete.
  probes every route of a running ``sonic serve`` with bad ids, traversal strings and
         bad values; Gradio calls naming files outside the library (an audio
         file, /etc/passwd, /etc/shadow); every route without the token when one
         is set: answers of 500, files opened or leaked, routes left open.
  serve  50 clients for 60 s against ``sonic serve`` while an ingest writes to the
         same catalog, beside the same clients without the ingest, in one run:
         requests, errors, p50/p99/max on catalog reads and ``similar``, and
         whether the ingest still finished.

Every figure is printed with the CPU it ran on (model and AVX2/AVX-512/bf16 flags)
and written as JSON under ``bench/out/``.

    python bench/torture.py                       # everything, full size
    python bench/torture.py --sections serve --clients 50 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.append(str(REPO / "bench"))  # after the repo: bench/ingest.py is not the package
sys.path.append(str(REPO / "tests"))

from corpus import generate  # noqa: E402
from fuzz_files import build_fuzz_folder  # noqa: E402  (tests/fuzz_files.py)
from procs import PeakRss, descendants  # noqa: E402
from web_probes import leaks, route_probes  # noqa: E402  (tests/web_probes.py)


def cpu_description() -> dict:
    """The CPU's model name and the SIMD flags that decide which kernels run."""
    model, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
    return {"model": model, "cores": os.cpu_count(), "flags": [f for f in wanted if f in flags]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sonic(*args: str, env: dict | None = None, repo: Path = REPO, **kwargs) -> subprocess.Popen:
    """``sonic ARGS`` from ``repo`` (another checkout: the code a variant is compared with)."""
    env = dict(env or os.environ)
    if repo != REPO:
        env["PYTHONPATH"] = os.pathsep.join(
            [str(repo), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                          if p and Path(p).resolve() != REPO]]
        )  # fmt: skip
    return subprocess.Popen([sys.executable, "-m", "ui.cli", *args], cwd=repo, env=env, **kwargs)


def percentiles(samples: list[float]) -> dict:
    if not samples:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    ms = np.asarray(samples) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "max_ms": round(float(ms.max()), 1),
    }


# -- fuzz: one run over hundreds of hostile files ---------------------------------------


def _catalog_facts(data_dir: Path, fuzz) -> dict:
    """What the catalog says of the fuzzed folder, and whether it is consistent."""
    import sqlite3

    from catalog.store import Catalog

    with sqlite3.connect(data_dir / "catalog.db") as conn:
        rows = {
            os.fsdecode(p) if isinstance(p, bytes) else p: (status, error)
            for p, status, error in conn.execute("SELECT path, status, error FROM tracks")
        }
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        dupes = conn.execute("SELECT count(*) - count(DISTINCT path) FROM tracks").fetchone()[0]
    with Catalog(data_dir) as catalog:
        health = catalog.index_health()
    good_ok = sum(rows.get(p, ("absent",))[0] == "ok" for p in fuzz.good)
    return {
        "rows": len(rows),
        "ok": sum(status == "ok" for status, _ in rows.values()),
        "failed": sum(status == "failed" for status, _ in rows.values()),
        "failed_without_reason": sum(
            status == "failed" and not error for status, error in rows.values()
        ),
        "good_indexed": f"{good_ok}/{len(fuzz.good)}",
        "specials_recorded": sum(p in rows for p in fuzz.specials),
        "consistent": integrity == "ok" and dupes == 0 and bool(health["consistent"]),
    }


def _ingest(root: Path, data_dir: Path, timeout_s: float, new_session: bool = True) -> dict:
    """``sonic ingest`` in its own process group; exit code, wall time, peak RSS, output."""
    started = time.monotonic()
    proc = sonic("ingest", str(root), "--data-dir", str(data_dir), "--no-progress", "--json",
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                 start_new_session=new_session)  # fmt: skip
    monitor = PeakRss(proc.pid)
    monitor.start()
    try:
        out, err = proc.communicate(timeout=timeout_s)
        hung = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, err = proc.communicate()
        hung = True
    peak = monitor.stop()
    summary = json.loads(out) if out.strip().startswith(b"{") else None
    return {
        "exit_code": proc.returncode, "hung": hung, "wall_s": round(time.monotonic() - started, 1),
        "peak_rss_gb": round(peak / 1e9, 2), "summary": summary,
        "traceback": b"Traceback" in err,
    }  # fmt: skip


def section_fuzz(work: Path, count: int, seed: int, timeout_s: float) -> dict:
    print(f"fuzz: generating {count} fuzzed files (seed {seed}) plus the fixed hostile set")
    fuzz = build_fuzz_folder(work / "music", count, seed)
    total = len(fuzz.good) + len(fuzz.hostile) + len(fuzz.specials)
    data_dir = work / "data"
    first = _ingest(fuzz.root, data_dir, timeout_s)
    second = _ingest(fuzz.root, data_dir, timeout_s)
    result = {
        "files": total,
        "runs_ended_by_one_file": int(first["exit_code"] != 0 or first["traceback"]),
        "hangs": int(first["hung"]) + int(second["hung"]),
        "wall_s": first["wall_s"],
        "peak_rss_gb": first["peak_rss_gb"],
        **_catalog_facts(data_dir, fuzz),
        "rerun_analysed": (second["summary"] or {}).get("analysed"),
        "rerun_failed": len((second["summary"] or {}).get("failed", [])),
        "rerun_wall_s": second["wall_s"],
    }
    print(f"  {result}", flush=True)
    return result


# -- kills: SIGKILL and resume --------------------------------------------------------------


def section_kills(work: Path, kills: int, count: int, seed: int) -> dict:
    """Kill an ingest ``kills`` times at random moments, then let a last run finish it.

    The files are a minute long, so a run lasts long enough for kills to land in
    start-up, planning and analysis alike.
    """
    rng = random.Random(seed)
    fuzz = build_fuzz_folder(work / "music", count, seed, seconds=60.0)
    data_dir = work / "data"
    inconsistent, orphans, committed = 0, 0, []
    for i in range(kills):
        main_only = i % 3 == 2  # as the OOM killer does: the main process, not its group
        proc = sonic("ingest", str(fuzz.root), "--data-dir", str(data_dir), "--no-progress",
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)  # fmt: skip
        time.sleep(rng.uniform(1.0, 40.0))  # start-up takes ~10 s on a busy 2-core box
        if proc.poll() is None:
            workers = descendants(proc.pid)
            if main_only:
                os.kill(proc.pid, 9)
            else:
                os.killpg(proc.pid, 9)
            proc.wait()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(_alive(p) for p in workers):
                time.sleep(0.2)
            left = [p for p in workers if _alive(p)]
            orphans += len(left)
            for pid in left:  # clean up so the next round starts clean
                os.kill(pid, 9)
        if (data_dir / "catalog.db").exists():
            facts = _catalog_facts(data_dir, fuzz)
            inconsistent += int(not _consistent_after_kill(data_dir))
            committed.append(facts["rows"])
        print(
            f"  kill {i + 1}/{kills} ({'main only' if main_only else 'group'}): "
            f"{committed[-1] if committed else 0} rows, orphans so far {orphans}",
            flush=True,
        )
    final = _ingest(fuzz.root, data_dir, 1800)
    facts = _catalog_facts(data_dir, fuzz)
    result = {
        "kills": kills, "inconsistent_catalogs": inconsistent, "orphaned_workers": orphans,
        "final_exit_code": final["exit_code"], "final": facts,
        "rows_after_each_kill": committed,
    }  # fmt: skip
    print(f"  {result}", flush=True)
    return result


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False


def _consistent_after_kill(data_dir: Path) -> bool:
    """SQLite intact and without duplicate paths; FAISS may lag (the next run repairs it)."""
    import sqlite3

    with sqlite3.connect(data_dir / "catalog.db") as conn:
        try:
            integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
            dupes = conn.execute("SELECT count(*) - count(DISTINCT path) FROM tracks").fetchone()[0]
        except sqlite3.OperationalError:  # killed before the first migration committed
            return True
    return integrity == "ok" and dupes == 0


# -- probes: traversal, arbitrary paths and the token -------------------------------------


def _gradio_call(client, api_name: str, data: list) -> str:
    posted = client.post(f"/ui/gradio_api/call/{api_name}", json={"data": data})
    if posted.status_code != 200:
        return f"HTTP {posted.status_code}"
    return client.get(f"/ui/gradio_api/call/{api_name}/{posted.json()['event_id']}").text


def section_probes(work: Path) -> dict:
    import httpx

    from ui.service import create_app

    music, outside = work / "music", work / "outside"
    generate(music, 4, 10.0, "flac")
    generate(outside, 1, 10.0, "flac")
    secret = next(outside.iterdir())
    data_dir = work / "data"
    env = {**os.environ, "SONIC_DATA_DIR": str(data_dir)}
    env.pop("SONIC_API_TOKEN", None)
    if sonic("ingest", str(music), "--no-progress", env=env, stdout=subprocess.DEVNULL).wait():
        raise RuntimeError("ingesting the probe library failed")
    routes_app = create_app(data_dir)  # the same routes the server has, listed in process
    result: dict = {}
    for token in (None, "torture-token"):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        run_env = dict(env, SONIC_API_TOKEN=token) if token else env
        server = sonic("serve", "--port", str(port), env=run_env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            _wait_ready(base, server, token=token)
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            with httpx.Client(base_url=base, timeout=60, headers=headers) as client:
                ids = [t["id"] for t in client.get("/tracks").json()["tracks"]]
                valid = {"track_id": str(ids[0]), "other_id": str(ids[1]),
                         "job_id": "0" * 32, "stem": "vocals", "name": "getSong"}  # fmt: skip
                probes = route_probes(routes_app, valid)
                answers = [client.request(method, url) for method, url in probes]
                paths = (secret, "/etc/passwd", "/etc/shadow", "/etc", "../../../../etc/passwd")
                gradio = [_gradio_call(client, "analyse", [
                    {"path": str(p), "meta": {"_type": "gradio.FileData"}}, "mean", 3, 5])
                    for p in paths]  # fmt: skip
            with httpx.Client(base_url=base, timeout=60) as bare:
                unauthenticated = [bare.request(m, u) for m, u in probes] if token else []
        finally:
            server.terminate()
            server.wait(timeout=60)
        label = "with_token" if token else "open"
        result[label] = {
            "requests": len(answers),
            "answers_500": sum(r.status_code >= 500 for r in answers),
            "leaks": sum(leaks(r.content) for r in answers),
            "gradio_arbitrary_paths": len(gradio),
            "gradio_files_analysed": sum("predicted" in a for a in gradio),
            "gradio_distinct_answers": len(set(gradio)),
        }
        if token:
            result[label]["routes_open_without_token"] = sum(
                r.status_code != 401 for r in unauthenticated
            )
        print(f"  probes ({label}): {result[label]}", flush=True)
    return result


# -- serve: clients during an ingest ---------------------------------------------------------

ROUTES = ("track", "similar", "listing", "genres")


def _url(route: str, track: int, offset: int) -> str:
    return {
        "track": f"/tracks/{track}",
        "similar": f"/tracks/{track}/similar?k=10",
        "listing": f"/tracks?limit=50&offset={offset}",
        "genres": "/genres",
    }[route]


class _RawConnection:
    """One keep-alive HTTP/1.1 connection that sends GETs and reads whole answers.

    The load generator shares the two cores with the service it measures: httpx
    spends about as much CPU on a request as the service does, so it takes a core
    from the server and its own queueing shows up as latency. This reads the
    status line and Content-Length and nothing else (every route asked here answers
    with a length), which costs a few per cent of that.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def get(self, path: str) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        at = lower.find(b"content-length:")
        if at < 0:
            raise ConnectionError(f"no Content-Length in the answer to {path}")
        length = int(lower[at + 15 : lower.index(b"\r\n", at)])
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def _client_load(base: str, ids: list[int], clients: int, seconds: float) -> dict:
    """``clients`` keep-alive clients, each asking in a loop for ``seconds``."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    times: dict[str, list[float]] = {r: [] for r in ROUTES}
    errors: list[str] = []
    deadline = time.monotonic() + seconds

    async def one(seed: int) -> None:
        rng = random.Random(seed)
        conn = _RawConnection(host, int(port))
        try:
            while time.monotonic() < deadline:
                route = rng.choice(ROUTES)
                url = _url(route, rng.choice(ids), rng.randrange(0, max(1, len(ids))))
                started = time.perf_counter()
                try:
                    status = await asyncio.wait_for(conn.get(url), 30)
                except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
                    errors.append(f"{url}: {type(exc).__name__}")
                    conn.close()
                    conn = _RawConnection(host, int(port))
                    continue
                if status != 200:
                    errors.append(f"{url}: HTTP {status}")
                times[route].append(time.perf_counter() - started)
        finally:
            conn.close()

    cpu = time.process_time()
    await asyncio.gather(*(one(i) for i in range(clients)))
    every = [t for samples in times.values() for t in samples]
    return {
        "requests": len(every),
        "requests_per_s": round(len(every) / seconds, 1),
        "errors": len(errors),
        "error_examples": errors[:5],
        **percentiles(every),
        "by_route": {r: percentiles(s) for r, s in times.items()},
        "client_cpu_s": round(time.process_time() - cpu, 1),
    }


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return total / tick


def _measured_load(base: str, ids: list[int], clients: int, seconds: float, server: int,
                   ingest: int | None = None) -> dict:  # fmt: skip
    """Client load, with the CPU the server (and the ingest's tree) used meanwhile."""
    ingest_pids = (lambda: [ingest, *descendants(ingest)]) if ingest else (lambda: [])
    server_before, ingest_before = cpu_seconds([server]), cpu_seconds(ingest_pids())
    load = asyncio.run(_client_load(base, ids, clients, seconds))
    load["server_cpu_s"] = round(cpu_seconds([server]) - server_before, 1)
    load["server_cpu_ms_per_request"] = round(
        1000 * load["server_cpu_s"] / max(1, load["requests"]), 2
    )
    if ingest:
        load["ingest_cpu_s_during_load"] = round(cpu_seconds(ingest_pids()) - ingest_before, 1)
    load["load_average_1min"] = os.getloadavg()[0]
    return load


def _wait_ready(
    base: str, proc: subprocess.Popen, timeout_s: float = 180, token: str | None = None
) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError("sonic serve exited before it was ready")
        try:
            if httpx.get(f"{base}/health", timeout=5, headers=headers).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("sonic serve did not get ready in time")


def _start_ingest(folder: Path, label: str, env: dict, nice: int, yielding: bool,
                  repo: Path = REPO):  # fmt: skip
    """``sonic ingest`` of a fresh copy of ``folder`` (files already catalogued are skipped)."""
    copy = folder.with_name(f"{folder.name}-{label}")
    shutil.copytree(folder, copy)
    flag = "--yield-to-service" if yielding else "--no-yield-to-service"
    return sonic("ingest", str(copy), "--no-progress", "--json", "--nice", str(nice), flag,
                 env=env, repo=repo, stdout=subprocess.PIPE,
                 stderr=subprocess.DEVNULL)  # fmt: skip


def _ingest_result(ingest: subprocess.Popen, started: float) -> dict:
    out, _ = ingest.communicate(timeout=3600)
    summary = json.loads(out)
    return {
        "exit_code": ingest.returncode,
        "analysed": summary["analysed"],
        "failed": len(summary["failed"]),
        "wall_s": round(time.monotonic() - started, 1),
    }


def _during_ingest(base: str, ids: list[int], clients: int, seconds: float, folder: Path,
                   env: dict, nice: int, yielding: bool, server: int,
                   label: str, repo: Path = REPO) -> dict:  # fmt: skip
    """Client load while ``sonic ingest --nice NICE`` analyses ``folder`` into the catalog."""
    started = time.monotonic()
    ingest = _start_ingest(folder, label, env, nice, yielding, repo)
    # Into the analysis: its decode workers (and multiprocessing's resource tracker)
    # start once the model is loaded, which takes a while on a busy machine.
    deadline = time.monotonic() + 300
    while len(descendants(ingest.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(3)
    load = _measured_load(base, ids, clients, seconds, server, ingest.pid)
    load["ingest_running_at_end"] = ingest.poll() is None
    load["ingest"] = _ingest_result(ingest, started)
    return load


def _start_server(env: dict, variant: str) -> tuple[subprocess.Popen, str]:
    """``sonic serve`` with the HTTP parser and event loop ``variant`` names (HTTP:LOOP)."""
    http, _, loop = variant.partition(":")
    port = free_port()
    server = sonic("serve", "--port", str(port), "--http", http, "--loop", loop or "auto",
                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    return server, f"http://127.0.0.1:{port}"


def section_serve(work: Path, clients: int, seconds: float, ingest_tracks: int,
                  nices: list[int], yields: list[bool], alone: bool,
                  rounds: int = 1, servers: tuple[str, ...] = ("auto:auto",),
                  codes: tuple[tuple[str, Path], ...] = (("this", REPO),),
                  ingest_servers: tuple[str, ...] | None = None) -> dict:  # fmt: skip
    """Serve a catalog to ``clients`` with and without an ingest writing to it.

    Each ingest analyses the same files into its own copy; with ``alone``, one more
    runs without any clients first, the reference for how much the load slows it.
    ``rounds`` repeats the phases in turn (idle, then each ingest), so a change in
    the machine's other load falls on every phase alike. ``servers`` are ``sonic
    serve`` variants (``--http HTTP --loop LOOP``), all serving the same catalog
    from the start, one under load at a time; ``codes`` are checkouts the ingest
    runs from (label, repository), to compare this code's yield with another's in
    one run; ingest phases run against each of ``ingest_servers`` (default: all).
    """
    import httpx

    data_dir, seed_dir, new_dir = work / "data", work / "seed", work / "incoming"
    print("serve: building the served catalog (40 tracks of 30 s)", flush=True)
    generate(seed_dir, 40, 30.0, "mp3", jobs=os.cpu_count() or 1)
    generate(new_dir, ingest_tracks, 180.0, "mp3", jobs=os.cpu_count() or 1)
    env = {**os.environ, "SONIC_DATA_DIR": str(data_dir)}
    env.pop("SONIC_API_TOKEN", None)
    seed = sonic("ingest", str(seed_dir), "--no-progress", env=env, stdout=subprocess.DEVNULL)
    if seed.wait() != 0:
        raise RuntimeError("seeding the catalog failed")
    running = {variant: _start_server(env, variant) for variant in servers}
    result: dict = {"clients": clients, "seconds": seconds, "ingest_tracks": ingest_tracks,
                    "ingest_audio_minutes": ingest_tracks * 3, "servers": list(servers),
                    "codes": {label: str(repo) for label, repo in codes},
                    "phases": []}  # fmt: skip
    try:
        for server, base in running.values():
            _wait_ready(base, server)
        first_server, first_base = next(iter(running.values()))
        ids = [t["id"] for t in httpx.get(f"{first_base}/tracks?limit=500").json()["tracks"]]
        if alone:
            print("serve: the ingest alone, no clients", flush=True)
            started = time.monotonic()
            result["ingest_alone"] = _ingest_result(
                _start_ingest(new_dir, "alone", env, nices[0], True, codes[0][1]), started
            )
            print(f"  {result['ingest_alone']}", flush=True)
        for round_ in range(rounds):
            for variant, (server, base) in running.items():
                key = f"idle|{variant}|round {round_ + 1}"
                print(f"serve: {clients} clients for {seconds:.0f} s, {key}", flush=True)
                phase = _measured_load(base, ids, clients, seconds, server.pid)
                result["phases"].append({"phase": "no ingest", "server": variant,
                                         "round": round_ + 1, **phase})  # fmt: skip
                print(f"  {phase}", flush=True)
            for variant in ingest_servers or servers:
                server, base = running[variant]
                for label, repo in codes:
                    for nice in nices:
                        for yielding in yields:
                            mode = "yield" if yielding else "no yield"
                            name = f"ingest {label} nice {nice} {mode}"
                            key = f"{name}|{variant}|round {round_ + 1}"
                            print(f"serve: {clients} clients, {seconds:.0f} s, {key}", flush=True)
                            folder_label = "-".join(
                                "".join(c if c.isalnum() else "_" for c in part)
                                for part in key.split("|")
                            )  # fmt: skip
                            phase = _during_ingest(
                                base, ids, clients, seconds, new_dir, env, nice, yielding,
                                server.pid, folder_label, repo,
                            )  # fmt: skip
                            result["phases"].append({"phase": name, "server": variant,
                                                     "round": round_ + 1, **phase})  # fmt: skip
                            print(f"  {phase}", flush=True)
    finally:
        for server, _ in running.values():
            server.terminate()
        for server, _ in running.values():
            server.wait(timeout=60)
    result["medians"] = serve_medians(result["phases"])
    print(serve_table(result["medians"]), flush=True)
    return result


MEDIAN_KEYS = ("requests_per_s", "errors", "p50_ms", "p99_ms", "max_ms",
               "server_cpu_ms_per_request", "ingest_cpu_s_during_load")  # fmt: skip


def serve_medians(phases: list[dict]) -> list[dict]:
    """Per (phase, server): the median over rounds of each figure, and every round's p99."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for phase in phases:
        groups.setdefault((phase["phase"], phase["server"]), []).append(phase)
    rows = []
    for (name, server), runs in groups.items():
        row: dict = {"phase": name, "server": server, "rounds": len(runs)}
        for key in MEDIAN_KEYS:
            values = [r[key] for r in runs if r.get(key) is not None]
            row[key] = round(float(np.median(values)), 2) if values else None
        row["p99_each_ms"] = [r["p99_ms"] for r in runs]
        walls = [r["ingest"]["wall_s"] for r in runs if "ingest" in r]
        row["ingest_wall_s"] = round(float(np.median(walls)), 1) if walls else None
        row["ingest_all_finished"] = all(
            r["ingest"]["exit_code"] == 0 for r in runs if "ingest" in r
        )
        rows.append(row)
    return rows


def serve_table(rows: list[dict]) -> str:
    """The medians as a Markdown table, for docs/benchmarks.md."""
    lines = [
        "| phase | server (http:loop) | rounds | req/s | errors | p50 | p99 (median) | p99 each "
        "round | max | server CPU / request | ingest CPU during load | ingest wall |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]

    def fmt(value, unit=""):
        return "" if value is None else f"{value:g}{unit}"

    for r in rows:
        each = " / ".join(f"{p:g}" for p in r["p99_each_ms"] if p is not None)
        lines.append(
            f"| {r['phase']} | {r['server']} | {r['rounds']} | {fmt(r['requests_per_s'])} | "
            f"{fmt(r['errors'])} | {fmt(r['p50_ms'], ' ms')} | {fmt(r['p99_ms'], ' ms')} | "
            f"{each} | {fmt(r['max_ms'], ' ms')} | {fmt(r['server_cpu_ms_per_request'], ' ms')} | "
            f"{fmt(r['ingest_cpu_s_during_load'], ' s')} | {fmt(r['ingest_wall_s'], ' s')} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sections",
        default="fuzz,kills,probes,serve",
        help="comma-separated: fuzz, kills, probes, serve",
    )
    parser.add_argument("--fuzz-files", type=int, default=300)
    parser.add_argument("--kills", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--ingest-tracks", type=int, default=10)
    parser.add_argument(
        "--nice", default="10", help="ingest priorities to compare (0: as before --nice)"
    )
    parser.add_argument(
        "--yield-modes",
        default="off,on",
        help="ingests with --no-yield-to-service (off) and --yield-to-service (on)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="repeat the phases in turn")
    parser.add_argument(
        "--servers",
        default="auto:auto",
        help="comma-separated `sonic serve` variants HTTP:LOOP (--http, --loop), e.g. "
        "h11:asyncio,httptools:uvloop; each serves the catalog, one under load at a time",
    )
    parser.add_argument(
        "--ingest-servers",
        default=None,
        help="the server variants the ingest phases run against (default: all of --servers)",
    )
    parser.add_argument(
        "--ingest-code",
        default=f"this={REPO}",
        help="comma-separated LABEL=CHECKOUT the ingest runs from, e.g. "
        "this=.,base=/tmp/base (a `git archive` of the commit to compare with)",
    )
    parser.add_argument(
        "--ingest-alone",
        action="store_true",
        help="also time the ingest with no clients (the reference for its slowdown)",
    )
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: temp)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "torture.json")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="sonic-torture-"))
    results: dict = {"cpu": cpu_description(), "command": " ".join(sys.argv)}
    print(f"CPU: {results['cpu']}", flush=True)
    try:
        for section in args.sections.split(","):
            if section == "fuzz":
                results["fuzz"] = section_fuzz(work / "fuzz", args.fuzz_files, args.seed, 1800)
            elif section == "kills":
                results["kills"] = section_kills(work / "kills", args.kills, 150, args.seed)
            elif section == "probes":
                results["probes"] = section_probes(work / "probes")
            elif section == "serve":
                results["serve"] = section_serve(
                    work / "serve",
                    args.clients,
                    args.seconds,
                    args.ingest_tracks,
                    [int(n) for n in args.nice.split(",")],
                    [{"on": True, "off": False}[m] for m in args.yield_modes.split(",")],
                    args.ingest_alone,
                    args.rounds,
                    tuple(args.servers.split(",")),
                    tuple(
                        (label, Path(path).resolve())
                        for label, _, path in (
                            c.partition("=") for c in args.ingest_code.split(",")
                        )
                    ),  # fmt: skip
                    tuple(args.ingest_servers.split(",")) if args.ingest_servers else None,
                )
            else:
                parser.error(f"unknown section {section!r}")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
