"""``sonic serve --http/--loop``: which HTTP parser and event loop answer (issue 28).

The service's CPU per request sets its latency under load (50 closed-loop clients
wait on one event-loop thread), and the C parser and libuv loop cost less than h11
and asyncio. The switch lets the benchmark serve the same catalog both ways in one
run. Checked on a real ``sonic serve`` process: the libraries it has mapped after
answering say which implementation ran.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from service_fixtures import free_port

REPO = Path(__file__).resolve().parents[1]
FAST = importlib.util.find_spec("httptools") and importlib.util.find_spec("uvloop")


def _serve(data_dir: Path, *flags: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "SONIC_DATA_DIR": str(data_dir)}
    env.pop("SONIC_API_TOKEN", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ui.cli", "serve", "--port", str(port), "--json", *flags],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    return proc, f"http://127.0.0.1:{port}"


def _mapped_after_a_request(data_dir: Path, *flags: str) -> str:
    """``/proc/PID/maps`` of a ``sonic serve`` that has answered ``/health``."""
    proc, base = _serve(data_dir, *flags)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                assert httpx.get(f"{base}/health", timeout=5).status_code == 200
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "sonic serve did not get ready"
                time.sleep(0.3)
        return Path(f"/proc/{proc.pid}/maps").read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/maps")
def test_h11_and_asyncio_are_what_they_say(tmp_path):
    maps = _mapped_after_a_request(tmp_path / "data", "--http", "h11", "--loop", "asyncio")
    assert "httptools" not in maps and "uvloop" not in maps


@pytest.mark.skipif(not FAST, reason="httptools and uvloop are not installed")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/maps")
def test_httptools_and_uvloop_answer_when_asked_for(tmp_path):
    maps = _mapped_after_a_request(tmp_path / "data", "--http", "httptools", "--loop", "uvloop")
    assert "httptools" in maps and "uvloop" in maps


def test_an_unknown_or_missing_implementation_is_a_clear_error(tmp_path):
    proc, _ = _serve(tmp_path / "data", "--http", "nghttp9")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "nghttp9" in err and "Traceback" not in err
    if not FAST:
        proc, _ = _serve(tmp_path / "data", "--http", "httptools", "--loop", "uvloop")
        _, err = proc.communicate(timeout=120)
        assert proc.returncode != 0 and "not installed" in err and "Traceback" not in err
