"""The service's hot reads: quick SQL on the event loop, a scan stopped and redone in a thread.

``ui.service.quick_read`` runs a catalog read on the event loop under SQLite's
progress handler (``catalog.queries.time_limit``); a read that passes
``QUICK_READ_S`` is interrupted and run again in a worker thread. Checked here on
a real catalog large enough that a text filter scans for a long time (100,000
rows written straight into SQLite, no monkeypatched limits): where each attempt
ran, that the answer is the plain read's, and that the loop kept turning while
the scan ran. Remove the limit and the scan holds the loop for its whole length;
remove the fallback and the request fails.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import pytest

from catalog import queries
from catalog.store import Catalog
from ui.service import QUICK_READ_S, quick_read

ROWS = 100_000


@pytest.fixture(scope="module")
def big_catalog(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("big") / "data"
    Catalog(data_dir).close()  # the schema, by the migrations
    rows = (
        (f"/music/artist {i % 997}/album {i % 4999}/track {i}.flac", 1000 + i, i, "ok",
         f"a fairly long title for track number {i}", f"artist {i % 997}",
         f"album {i % 4999}", "rock" if i % 3 else "jazz", 0.5 + (i % 50) / 100)
        for i in range(ROWS)
    )  # fmt: skip
    with sqlite3.connect(data_dir / "catalog.db") as conn:
        conn.executemany(
            "INSERT INTO tracks (path, size, mtime_ns, status, title, artist, album, genre, "
            "confidence, added_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, datetime('now'), datetime('now'))",
            rows,
        )
    catalog = Catalog(data_dir)
    yield catalog
    catalog.close()


def _recording(fn, threads: list[int]):
    def run(*args):
        threads.append(threading.get_ident())
        return fn(*args)

    run.__name__ = fn.__name__
    return run


async def _with_ticks(call):
    """Await ``call``, recording when the loop got to run a 1 ms ticker meanwhile."""
    ticks: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    started = time.perf_counter()
    result = await call
    ended = time.perf_counter()
    stop.set()
    await task
    during = [started] + [t for t in ticks if started <= t <= ended] + [ended]
    return result, ended - started, max(b - a for a, b in zip(during, during[1:], strict=False))


def test_a_scan_is_stopped_on_the_loop_and_answered_from_a_thread(big_catalog):
    args = (big_catalog, None, None, None, None, "no such words", 50, 0)
    started = time.perf_counter()
    expected = queries.browse(*args)
    plain_s = time.perf_counter() - started
    assert expected["total"] == 0
    assert plain_s > 10 * QUICK_READ_S, "the catalog is too small to make a scan here"

    threads: list[int] = []

    async def scenario():
        loop_thread = threading.get_ident()
        result = await _with_ticks(quick_read(_recording(queries.browse, threads), *args))
        return loop_thread, result

    loop_thread, (answer, took_s, longest_stall_s) = asyncio.run(scenario())
    assert answer == expected
    # tried on the loop, stopped there, then redone once in a worker thread
    assert len(threads) == 2 and threads[0] == loop_thread and threads[1] != loop_thread
    # the loop kept turning while the scan ran: it held it only for the first try
    assert longest_stall_s < max(0.25 * took_s, 0.05), (longest_stall_s, took_s)


def test_a_quick_read_stays_on_the_loop(big_catalog):
    threads: list[int] = []

    async def scenario():
        read = _recording(queries.track_details, threads)
        answers = [await quick_read(read, big_catalog, track_id) for track_id in range(1, 6)]
        return threading.get_ident(), answers

    loop_thread, answers = asyncio.run(scenario())
    assert answers == [queries.track_details(big_catalog, i) for i in range(1, 6)]
    # a read of one row never needs the thread hop (allowing for a preempted one or two
    # on a busy machine: each of those runs twice, once on the loop, once in a thread)
    assert threads.count(loop_thread) == 5 and len(threads) <= 7


def test_the_connection_is_clean_after_an_interrupted_read(big_catalog):
    """The progress handler is removed and the pooled connection reads fully afterwards."""
    args = (big_catalog, None, None, None, None, "track number 7", 10, 0)
    with queries.time_limit(QUICK_READ_S), pytest.raises(queries.ReadTooSlow):
        queries.browse(*args)
    full = queries.browse(*args)  # no deadline: the same connection runs to the end
    assert full["total"] == sum("track number 7" in f"track number {i}" for i in range(ROWS))
