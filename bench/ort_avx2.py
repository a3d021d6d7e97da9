"""A copy of the installed ONNX Runtime that runs its AVX2 kernels on an AVX-512 CPU.

PyTorch and oneDNN take an instruction-set cap from the environment
(``ATEN_CPU_CAPABILITY=avx2``, ``ONEDNN_MAX_CPU_ISA=AVX2``); ONNX Runtime has no
such switch: its kernels (MLAS) pick AVX-512 whenever CPUID says AVX512F and the
OS has enabled the AVX-512 register state (XCR0 bits 5-7). To time ONNX Runtime
as it runs on an AVX2-only CPU, this copies the installed package and patches the
two places that read XCR0 (MLAS's platform set-up and ``CPUIDInfo``) so that they
see those three bits clear. Everything else is untouched: MLAS then takes exactly
the branch it takes on an AVX2 CPU without AVX-VNNI (Zen 2/3, Haswell to Comet
Lake), the same kernels, at this CPU's clock.

The patches, for ONNX Runtime's x86-64 Linux builds (checked on 1.32.0):

- ``xgetbv; mov %eax,%eax`` (``0f 01 d0 89 c0``) becomes ``xgetbv; and $0x1f,%al``
  (``0f 01 d0 24 1f``): ``mov %eax,%eax`` only zero-extends, which writing EAX
  already did, so the one change is that bits 5-7 of XCR0 read as clear.
- ``and $0xe6,%r9d`` (``41 81 e1 e6 00 00 00``) in ``CPUIDInfo`` becomes
  ``and $0x06,%r9d``: its ``cmp $0xe6`` (AVX-512 state enabled) can then never hold.

``verify`` proves the copy runs the AVX2 kernels: an AVX2-only CPU emulated by
``qemu-x86_64 -cpu EPYC-Rome`` running the *unpatched* package must give
bit-identical outputs to the patched copy running natively, and outputs that differ
from the unpatched package's native ones (AVX-512 kernels sum in another order).

    python bench/ort_avx2.py make /tmp/ort-avx2
    python bench/ort_avx2.py verify /tmp/ort-avx2     # needs qemu-user
    PYTHONPATH=/tmp/ort-avx2:$PWD python bench/inference.py ...

This is a measuring instrument for ``bench/``; nothing in the product loads it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

XGETBV_MOV = bytes.fromhex("0f01d089c0")
XGETBV_MASKED = bytes.fromhex("0f01d0241f")
CPUIDINFO_AND = bytes.fromhex("4181e1e6000000")
CPUIDINFO_MASKED = bytes.fromhex("4181e106000000")
MARKER = "AVX2_CAPPED_BY_BENCH"


def patch_bytes(data: bytes) -> tuple[bytes, dict[str, int]]:
    """``data`` with the XCR0 reads masked, and how many sites of each kind changed."""
    counts = {"xgetbv": data.count(XGETBV_MOV), "cpuidinfo": data.count(CPUIDINFO_AND)}
    return data.replace(XGETBV_MOV, XGETBV_MASKED).replace(CPUIDINFO_AND, CPUIDINFO_MASKED), counts


def make(target: Path) -> dict[str, dict[str, int]]:
    """Copy the installed ``onnxruntime`` package under ``target`` and patch its libraries."""
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or spec.origin is None:
        raise SystemExit("onnxruntime is not installed")
    source = Path(spec.origin).parent
    dest = Path(target) / "onnxruntime"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest, symlinks=True)
    patched = {}
    for lib in sorted((dest / "capi").glob("*.so*")):
        if lib.is_symlink():
            continue
        data, counts = patch_bytes(lib.read_bytes())
        if counts["xgetbv"]:
            lib.write_bytes(data)
            patched[lib.name] = counts
    # MLAS must see both sites in each library that holds it, or the copy is not capped
    if not patched or any(c["xgetbv"] < 1 or c["cpuidinfo"] != 1 for c in patched.values()):
        shutil.rmtree(dest)
        raise SystemExit(f"unexpected code in this onnxruntime build, not patched: {patched}")
    (dest / f"{MARKER}.txt").write_text(f"patched from {source}: {patched}\n")
    return patched


def is_capped() -> bool:
    """True when the ``onnxruntime`` this process imports is a copy made by :func:`make`."""
    spec = importlib.util.find_spec("onnxruntime")
    return bool(spec and spec.origin and (Path(spec.origin).parent / f"{MARKER}.txt").exists())


PROBE = """
import sys
sys.path[:0] = sys.argv[3:]
import numpy as np, onnxruntime as ort
options = ort.SessionOptions(); options.intra_op_num_threads = 1
x = np.load(sys.argv[1])
out = {}
for name in ("fp32", "int8"):
    path = sys.argv[1].replace("x.npy", name + ".onnx")
    s = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    out[name] = s.run(["embeddings"], {"features": x[:, None]})[0]
np.savez(sys.argv[2], **out)
"""


def verify(target: Path, segments: int = 4, qemu_cpu: str = "EPYC-Rome") -> dict:
    """Patched-native against unpatched-emulated-AVX2 and unpatched-native outputs."""
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    import numpy as np

    from embeddings.agreement import probe_features
    from embeddings.checkpoint import load_default_model
    from embeddings.model import inference_copy
    from embeddings.onnx_runtime import export_onnx, int8_model_path

    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        raise SystemExit("qemu-x86_64 not installed (Debian: apt-get install qemu-user)")
    model = load_default_model()
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        np.save(tmp_path / "x.npy", probe_features(model.frontend, segments, seed=11))
        (tmp_path / "fp32.onnx").write_bytes(
            export_onnx(inference_copy(model.network), model.frontend.shape)
        )
        shutil.copy(int8_model_path(model.model_id), tmp_path / "int8.onnx")
        script = tmp_path / "probe.py"
        script.write_text(PROBE)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

        def run(name: str, prefix: list[str], paths: list[str]) -> dict:
            out = tmp_path / f"{name}.npz"
            cmd = [*prefix, sys.executable, str(script), str(tmp_path / "x.npy"), str(out), *paths]
            subprocess.run(cmd, check=True, env=env, stderr=subprocess.DEVNULL)
            return dict(np.load(out))

        native = run("native", [], [])
        patched = run("patched", [], [str(target)])
        emulated = run("emulated", [qemu, "-cpu", qemu_cpu], [])
    for name in ("fp32", "int8"):
        result[name] = {
            "patched_vs_emulated_avx2_max_abs_diff": float(
                abs(patched[name] - emulated[name]).max()
            ),
            "patched_vs_native_avx512_max_abs_diff": float(abs(patched[name] - native[name]).max()),
        }
    result["runs_avx2_kernels"] = all(
        r["patched_vs_emulated_avx2_max_abs_diff"] == 0.0
        and r["patched_vs_native_avx512_max_abs_diff"] > 0.0
        for r in (result["fp32"], result["int8"])
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("make", "verify"))
    parser.add_argument("target", type=Path, help="folder to hold the patched package")
    parser.add_argument("--qemu-cpu", default="EPYC-Rome")
    args = parser.parse_args()
    if args.action == "make":
        print(f"{args.target}/onnxruntime: patched {make(args.target)}")
    else:
        import json

        print(json.dumps(verify(args.target, qemu_cpu=args.qemu_cpu), indent=2))


if __name__ == "__main__":
    main()
