"""Which inference path ``--precision`` names, and which one ``auto`` picks on this CPU.

A path is one way of running the genre network forward: PyTorch in fp32 or bf16,
ONNX Runtime in fp32, or ONNX Runtime on a static int8 model calibrated on real
clips. ``auto`` must pick the fastest path that *agrees* with the fp32 reference on
the CPU it runs on, by the rules of issue 22: the same top genre for at least 99 % of
tracks, track-embedding cosine at least 0.99, and sound-alike top-5 lists unchanged
in order for at least 95 % of tracks. ``bench/inference.py`` measures speed and
agreement (the table is in ``docs/benchmarks.md``); on one thread it found:

- ``fp32`` (PyTorch, batch norm folded, channels-last) is the reference.
- ``onnx-fp32`` agrees to rounding (cosine 1 - 1e-14, every list unchanged) but was
  no faster than PyTorch fp32 on AVX-512 (medians 63-69 against 67-72 segments/s,
  inside the runs' spread).
- ``bf16`` is twice as fast where the CPU has it natively and keeps every genre
  (cosine 0.99999), but reorders the top-5 lists of 6 of the 100 GTZAN clips (94 %
  unchanged): about a quarter of those lists hold a near-tie (scores within 0.001)
  that any rounding can flip.
- ``int8`` is about 2.2 times faster and keeps every genre (cosine 0.99997), but keeps
  only 93 % (GTZAN) and 90 % (corpus) of the lists in order.

So on a CPU ``auto`` picks PyTorch fp32, on AVX2 and AVX-512 alike, and says why;
``bf16``, ``int8`` and ``onnx-fp32`` run only when asked for by name. For AVX2-only
CPUs every runtime was measured capped to AVX2 in one run: PyTorch and oneDNN by
``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``, ONNX Runtime by a copy whose
MLAS takes its AVX2 branch (``bench/ort_avx2.py``, bit-identical to an emulated
AVX2-only CPU), OpenVINO fp32 (not a dependency) by the same oneDNN cap. Of the
exact paths there, ONNX Runtime fp32 was slower than PyTorch fp32 channels-last
(0.86-0.94x, medians of paired rounds) and OpenVINO fp32 not shown faster (0.9-1.2x in a
spread of +-50 % on a loaded machine); ONNX Runtime int8 was 1.6-1.9x faster but
still reorders near-tied neighbours (93 % / 90 %), as on AVX-512. Its int8 model
was run on an emulated AVX2-only CPU and agreed with this CPU's answers to cosine
0.99998 (:mod:`embeddings.training.quantization` says what it avoids).

This module imports nothing heavy: the CLI reads :data:`PRECISIONS` at start-up.
"""

from __future__ import annotations

import importlib.util
import platform
from dataclasses import dataclass
from functools import lru_cache

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "onnx-fp32", "int8")

# The paths whose agreement with fp32 passed every rule of issue 22 (bench/inference.py).
AGREEING_PATHS: frozenset[str] = frozenset({"fp32", "onnx-fp32"})


@dataclass(frozen=True)
class PathChoice:
    """The path a Predictor runs, and in words why it was chosen."""

    path: str
    reason: str


def read_cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux names them (``avx2``, ``avx512_vnni``, ...).

    Empty where ``/proc/cpuinfo`` cannot be read (macOS, Windows): messages then say
    "unknown CPU" rather than guess.
    """
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """:func:`read_cpu_flags`, read once per process."""
    return read_cpu_flags()


def cpu_isa(flags: frozenset[str]) -> str:
    """The widest vector extension of interest among ``flags``, for messages."""
    if "avx512f" in flags:
        return "AVX-512"
    if "avx2" in flags:
        return "AVX2"
    return "no AVX2" if flags else "unknown CPU"


def kernel_flags(flags: frozenset[str], capability: str) -> frozenset[str]:
    """``flags`` less what PyTorch's kernels are not allowed to use on this process.

    ``capability`` is ``torch.backends.cpu.get_cpu_capability()`` ("AVX512", "AVX2",
    "DEFAULT", ...). Under ``ATEN_CPU_CAPABILITY=avx2`` on a CPU whose flags say
    AVX-512, PyTorch runs its AVX2 kernels: messages must name those, not the flags,
    or a run held to AVX2 says "on AVX-512" (as the ingest summary did). Pure, so it
    can be tested with any CPU's flags and any capability.
    """
    capability = capability.upper()
    if capability.startswith("AVX512"):
        return flags
    kept = frozenset(f for f in flags if not f.startswith(("avx512", "amx")))
    if capability.startswith("AVX2"):
        return kept
    return frozenset(f for f in kept if f != "avx2")  # DEFAULT: no vector kernels


def onnx_available() -> bool:
    """True when ONNX Runtime can run a model and ``onnx`` can export one from torch."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def choose_path(
    requested: str,
    device_type: str,
    flags: frozenset[str],
    onnx_ok: bool,
    machine: str | None = None,
) -> PathChoice:
    """The path for ``requested`` on a device of ``device_type`` with CPU ``flags``.

    Pure, so the decision can be tested with any CPU's flags. ``onnx_ok`` says whether
    ONNX Runtime and the exporter are installed. Raises ``ValueError`` for an unknown
    name and for a CPU-only path asked for on a GPU.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}; choose one of {', '.join(PRECISIONS)}")
    machine = (machine or platform.machine()).lower()
    if device_type != "cpu":
        if requested in ("onnx-fp32", "int8"):
            raise ValueError(f"--precision {requested} runs on the CPU only; use --device cpu")
        return PathChoice(requested, f"{device_type} autocast")
    if requested != "auto":
        if requested in ("onnx-fp32", "int8") and not onnx_ok:
            raise ValueError(
                f"--precision {requested} needs onnxruntime and onnx: pip install onnxruntime onnx"
            )
        return PathChoice(requested, "asked for")
    if machine not in ("x86_64", "amd64", "i686", "x86"):
        return PathChoice(
            "fp32", f"auto: PyTorch fp32, the reference (nothing measured on {machine})"
        )
    # Measured (bench/inference.py, all runtimes capped to AVX2 for the AVX2 figures):
    # of the paths that agree with fp32, none beat PyTorch fp32 on one thread, with or
    # without AVX-512; so flags change only the words.
    return PathChoice("fp32", f"auto: the fastest path that agrees with fp32 on {cpu_isa(flags)}")
