"""Two versions of ``sonic serve`` on one catalog, measured in turns: is the new one slower?

Run through ``bench/query.py --against OLD_TREE``. One synthetic catalog (as
``bench/query.py`` builds it) is served by the code in ``OLD_TREE`` (for example
``git archive 1287d8f | tar -x -C /tmp/sonic-old``) and by this checkout, each
``sonic serve`` in its own process. Then, in each of ``--rounds`` rounds and for
each route, both servers answer the same ``--per-round`` requests one after the
other, the order swapped every round, so that a machine shared with other work
slows both alike. Per round and server: the median latency of a keep-alive client,
and the server's CPU time per request (``/proc/PID/stat``: user + system, all of
its threads), which load on the machine disturbs far less than wall time. The
ratios new/old are taken within a round; the result is their median over rounds.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np
from query import REPO, K, start_serve, wait_until_ready

TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S  # utime, stime (fields 14, 15)


def routes(query_ids: np.ndarray) -> dict[str, list[str]]:
    """The measured routes, each as the URLs one round asks."""
    ids = [int(i) for i in query_ids]
    return {
        "GET /tracks/{id}/similar": [f"/tracks/{i}/similar?k={K}" for i in ids],
        "GET /tracks/{id}": [f"/tracks/{i}" for i in ids],
    }


def same_answers(clients: list, query_ids: np.ndarray) -> list[str]:
    """URLs of the REST API (answers and refusals) whose status or body differ between servers."""
    a, b = (int(i) for i in query_ids[:2])
    urls = [
        "/health", "/stats", "/genres", "/genres/disagree", "/tracks", "/tracks?limit=7&offset=3",
        "/tracks?q=Track%201", "/tracks?status=failed", f"/tracks/{a}", f"/tracks/{a}/similar",
        f"/tracks/{a}/similar?k=3&exclude_same_album=true", f"/tracks/{a}/explain-similar/{b}",
        f"/playlists/radio?seed={a}&n=5", f"/playlists/radio.m3u?seed={a}&n=5", "/map",
        "/tracks/0", "/tracks/01", "/tracks/99999999", "/tracks/99999999/similar",
        "/tracks?limit=0", f"/jobs/{'0' * 32}", "/jobs/xyz", "/map?method=tsne",
    ]  # fmt: skip
    differ = []
    for url in urls:
        answers = [c.get(url) for c in clients]
        # The M3U's links name the server they came from (its port): compare without it.
        bodies = {
            (r.status_code, r.content.replace(str(c.base_url).rstrip("/").encode(), b"BASE"))
            for r, c in zip(answers, clients, strict=True)
        }
        if len(bodies) != 1:
            differ.append(url)
    return differ


def one_turn(client, pid: int, urls: list[str]) -> tuple[float, float]:
    """(median latency s, server CPU s per request) of ``urls`` asked in order."""
    times = []
    cpu = cpu_seconds(pid)
    for url in urls:
        t = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - t)
        assert response.status_code == 200, (url, response.text[:200])
    return statistics.median(times), (cpu_seconds(pid) - cpu) / len(urls)


def compare(
    data_dir: Path, old_tree: Path, query_ids: np.ndarray, rounds: int, per_round: int
) -> dict:
    """Old and new ``sonic serve`` on ``data_dir``, alternating; ratios new/old per route."""
    import httpx

    servers = {}
    try:
        for name, tree in (("old", old_tree), ("new", REPO)):
            started = time.perf_counter()
            proc, base = start_serve(data_dir, tree)
            client = httpx.Client(base_url=base, timeout=60)
            servers[name] = (proc, client)
            wait_until_ready(client, proc, started, timeout_s=1800)
        asked = routes(query_ids[:per_round])
        differ = same_answers([client for _, client in servers.values()], query_ids)
        for proc, client in servers.values():  # warm: imports, caches, the index's pages
            for urls in asked.values():
                one_turn(client, proc.pid, urls)
        turns = {route: {"old": [], "new": []} for route in asked}
        for r in range(rounds):
            order = ("old", "new") if r % 2 == 0 else ("new", "old")
            for route, urls in asked.items():
                for name in order:
                    proc, client = servers[name]
                    turns[route][name].append(one_turn(client, proc.pid, urls))
        return {"answers_that_differ": differ, **{route: summary(t) for route, t in turns.items()}}
    finally:
        for proc, client in servers.values():
            client.close()
            proc.terminate()
            proc.wait(timeout=60)


def summary(turns: dict[str, list[tuple[float, float]]]) -> dict:
    """Medians over rounds of each server's numbers and of the per-round ratios."""
    old, new = turns["old"], turns["new"]
    return {
        "rounds": len(old),
        "old_p50_ms": round(statistics.median(t[0] for t in old) * 1e3, 3),
        "new_p50_ms": round(statistics.median(t[0] for t in new) * 1e3, 3),
        "old_cpu_ms_per_request": round(statistics.median(t[1] for t in old) * 1e3, 3),
        "new_cpu_ms_per_request": round(statistics.median(t[1] for t in new) * 1e3, 3),
        "p50_ratio_new_over_old": round(
            statistics.median(n[0] / o[0] for o, n in zip(old, new, strict=True)), 3
        ),
        "cpu_ratio_new_over_old": round(
            statistics.median(n[1] / o[1] for o, n in zip(old, new, strict=True) if o[1]), 3
        ),
    }
