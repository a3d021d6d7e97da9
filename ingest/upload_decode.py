"""Decoding an uploaded clip in a child process with memory and CPU limits.

Why: an upload is a file a stranger chose, decoded by C libraries (libsndfile,
FFmpeg) inside the service. Header checks refuse what is known to be absurd
(``embeddings.audio.check_header``) and decoding streams, but a decoder bug or a
case nobody thought of must not take the service with it: a 1 Hz WAV header once
drove ``sonic serve`` to 9 GB and killed it with one request. So the service
never decodes an upload itself. A fresh ``python -m ingest.upload_decode`` does,
under ``RLIMIT_AS`` (its address space may grow by ``memory_bytes`` past what its
imports took) and ``RLIMIT_CPU``, dies with the service (``PR_SET_PDEATHSIG``),
and hands back float32 samples on its stdout. Whatever goes wrong in it, a
refused allocation, a crash, a timeout, becomes a :class:`ClipError` that says
so; the service's memory never sees more than the decoded samples (at most
``MAX_CLIP_SECONDS`` of mono audio, 80 MB).

The price is a process start per upload (about 0.3 s: Python, NumPy and the
decoders), small beside analysing the clip.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

MAX_CLIP_SECONDS = 15 * 60  # an upload longer than this is analysed over its start only
MEMORY_BYTES = 1 << 30  # address space a decode may add to the child's
CPU_SECONDS = 60  # CPU time a decode may use
WALL_SECONDS = 180  # and wall time, however it spends it
REPO = Path(__file__).resolve().parents[1]


class ClipError(ValueError):
    """The clip cannot be analysed; the message says why, for the user."""


def decode_here(path: Path, sample_rate: int, max_seconds: float) -> tuple[np.ndarray, bool]:
    """Mono audio at ``sample_rate`` (at most ``max_seconds``), decoded in this process."""
    from embeddings.audio import DecodeError, decode_all

    try:
        audio = decode_all(Path(path), sample_rate, max_seconds=max_seconds + 1 / sample_rate)
    except DecodeError as exc:
        raise ClipError(str(exc)) from None
    except OSError as exc:
        raise ClipError(f"cannot read file: {exc}") from None
    limit = int(max_seconds * sample_rate)
    return audio[:limit], len(audio) > limit


def decode_isolated(
    path: Path,
    sample_rate: int,
    max_seconds: float = MAX_CLIP_SECONDS,
    memory_bytes: int | None = None,
    cpu_seconds: int | None = None,
    wall_seconds: float | None = None,
) -> tuple[np.ndarray, bool]:
    """:func:`decode_here` in a limited child process; raises :class:`ClipError`.

    The limits default to this module's ``MEMORY_BYTES``, ``CPU_SECONDS`` and
    ``WALL_SECONDS``, read at each call.
    """
    memory_bytes = MEMORY_BYTES if memory_bytes is None else memory_bytes
    cpu_seconds = CPU_SECONDS if cpu_seconds is None else cpu_seconds
    wall_seconds = WALL_SECONDS if wall_seconds is None else wall_seconds
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    args = [sys.executable, "-m", "ingest.upload_decode", os.fsdecode(path), str(sample_rate),
            repr(float(max_seconds)), str(int(memory_bytes)), str(int(cpu_seconds)),
            str(os.getpid())]  # fmt: skip
    proc = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    try:
        out, err = proc.communicate(timeout=wall_seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise ClipError(f"decoding took longer than {wall_seconds:g} s and was stopped") from None
    header, _, body = out.partition(b"\n")
    try:
        answer = json.loads(header) if header else {}
    except ValueError:
        answer = {}
    if proc.returncode == 0 and "samples" in answer:
        audio = np.frombuffer(body, dtype=np.float32)
        if len(audio) != answer["samples"]:
            raise ClipError("the decoder's output was cut short")
        return audio, bool(answer["truncated"])
    if "error" in answer:
        raise ClipError(answer["error"])
    raise ClipError(_why_it_died(proc.returncode, memory_bytes, cpu_seconds, err))


def _why_it_died(code: int, memory_bytes: int, cpu_seconds: int, err: bytes) -> str:
    if code in (-signal.SIGXCPU, -signal.SIGKILL):
        return f"decoding used more than {cpu_seconds} s of CPU and was stopped"
    if b"MemoryError" in err or b"std::bad_alloc" in err or b"Cannot allocate" in err:
        return f"decoding needs more than the {memory_bytes >> 20} MB an upload may use"
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        return (
            f"the decoder crashed ({name}) on this file: damaged, or not what its "
            f"name says, or it needed more than the {memory_bytes >> 20} MB an upload may use"
        )
    last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit code {code}"]
    return f"the decoder failed: {last[0][:200]}"


def _limit_self(memory_bytes: int, cpu_seconds: int, parent_pid: int) -> None:
    """Address space and CPU limits on this process; die when the service does."""
    import resource

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
        if os.getppid() != parent_pid:  # the service is gone already
            os._exit(1)
        with open("/proc/self/statm") as fh:
            current = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (current + memory_bytes, current + memory_bytes))
    else:  # no address-space accounting to start from: limit the data segment
        resource.setrlimit(resource.RLIMIT_DATA, (memory_bytes, memory_bytes))
    used = int(resource.getrusage(resource.RUSAGE_SELF).ru_utime) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (used + cpu_seconds, used + cpu_seconds + 1))


def _main(argv: list[str]) -> int:
    path, rate, max_seconds, memory_bytes, cpu_seconds, parent = argv
    import embeddings.audio  # noqa: F401  (imports first: the limits are for the decode)

    _limit_self(int(memory_bytes), int(cpu_seconds), int(parent))
    out = sys.stdout.buffer
    try:
        audio, truncated = decode_here(Path(path), int(rate), float(max_seconds))
    except ClipError as exc:
        out.write(json.dumps({"error": str(exc)}).encode() + b"\n")
        return 0
    except MemoryError:
        why = f"decoding needs more than the {int(memory_bytes) >> 20} MB an upload may use"
        out.write(json.dumps({"error": why}).encode() + b"\n")
        return 0
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    out.write(json.dumps({"samples": len(audio), "truncated": truncated}).encode() + b"\n")
    out.write(memoryview(audio).cast("B"))
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
