"""Catalog reads on the event loop while they are quick, in a worker thread once they are not."""

from __future__ import annotations

from collections.abc import Callable

import anyio

from catalog import queries

# A catalog read runs on the event loop while it takes less than this; past it, SQLite
# stops it and it runs again in a worker thread (``queries.time_limit``).
QUICK_READ_S = 0.005


async def quick_read(fn: Callable[..., object], *args: object) -> object:
    """``fn(*args)`` on the event loop when its SQL is quick, else in a worker thread.

    A read of a few rows costs less than the hop to a worker thread, and in a
    thread, under load, it waits for the GIL after every SQLite step (up to the 5 ms
    switch interval each time): that, not the work, made the tail latency. But a scan
    (a genre or text filter, genre counts over 100k tracks: 0.1-0.6 s) must not stall
    every other request, so SQLite interrupts a read that passes ``QUICK_READ_S`` and
    it is redone in a thread. At most that much loop time is spent on a slow one.
    """
    try:
        with queries.time_limit(QUICK_READ_S):
            return fn(*args)
    except queries.ReadTooSlow:
        return await anyio.to_thread.run_sync(fn, *args)
