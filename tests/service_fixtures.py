"""A small served catalog for the service and browser tests: synthesised, tagged, ingested.

Five short tracks by three artists on three albums (OGG, FLAC, MP3), one file that
is not audio (a failed track), then a real uvicorn server on a free port in a
thread of the test process.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn

from audio_fixtures import chord, clicks, noise, tag, tone, write

SECONDS = 4.0
SR = 22050


@dataclass
class SmallLibrary:
    root: Path
    files: dict[str, Path]  # name -> file
    tags: dict[str, tuple[str, str, str, int]]  # name -> (title, artist, album, number)
    bad: Path


def build_small_library(root: Path) -> SmallLibrary:
    s = SECONDS
    files = {
        "sine": write(root / "alpha" / "sine.ogg", tone(440, s), SR),
        "chord": write(root / "alpha" / "chord.flac", chord([261.6, 329.6, 392.0], s), SR),
        "clicks": write(root / "beta" / "clicks.mp3", clicks(s), SR),
        "hiss": write(root / "beta" / "hiss.flac", noise(s, seed=3), SR),
        "pulse": write(root / "gamma" / "pulse.flac", tone(220, s) + clicks(s, bpm=90), SR),
    }
    tags = {
        "sine": ("Sine", "Alpha", "First", 1),
        "chord": ("Chord", "Alpha", "First", 2),
        "clicks": ("Clicks", "Beta", "Second", 1),
        "hiss": ("Hiss", "Beta", "Second", 2),
        "pulse": ("Pulse", "Gamma", "Third", 1),
    }
    for name, (title, artist, album, number) in tags.items():
        tag(files[name], title, artist, album, number)
    bad = root / "broken" / "notes.flac"
    bad.parent.mkdir(parents=True)
    bad.write_text("not audio at all\n" * 20)
    return SmallLibrary(root, files, tags, bad)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(app, ready_path: str = "/health", headers=None) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free port in a thread; yields the base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(base + ready_path, headers=headers, timeout=5).status_code < 500:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.1)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)
