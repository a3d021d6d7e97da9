"""Inference paths side by side: one-thread speed, and agreement with PyTorch fp32.

Ingest runs several inference threads, each limited to one core, so what counts is
segments per second of one call on one thread. For each path (PyTorch fp32
channels-last, PyTorch bf16 where the CPU has it natively, ONNX Runtime fp32, ONNX
Runtime static int8 as shipped, PyTorch x86 int8 if it quantizes) this measures that
at batch sizes 8, 16 and 32, every path in turn, several rounds (the median is
reported: the machine may be shared), and the agreement of each path's track answers
with PyTorch fp32 (``embeddings/agreement.py``: top genre, embedding cosine, top-5
lists in order) on the 100 GTZAN mini clips and on 40 ``bench/corpus.py`` tracks.

    python bench/inference.py --gtzan /path/to/gtzan/genres
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python bench/inference.py --gtzan ...

The second line runs PyTorch (and its oneDNN) as on an AVX2-only CPU. ONNX Runtime's
kernels (MLAS) pick their instruction set from CPUID with no switch to cap it, so its
numbers are always this CPU's: ``--emulate-avx2 EPYC-Rome`` instead reruns the ONNX
paths on a few segments under ``qemu-x86_64 -cpu EPYC-Rome`` (an AVX2-only CPU,
emulated: correct results, meaningless timings) and compares them with this CPU's.
Writes ``bench/out/inference-<isa>.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from embeddings.agreement import agreement  # noqa: E402
from embeddings.audio import decode_all  # noqa: E402
from embeddings.checkpoint import load_default_model  # noqa: E402
from embeddings.frontend import batch_features, split_segments  # noqa: E402
from embeddings.inference import Predictor, cpu_has_native_bf16  # noqa: E402
from embeddings.inference_paths import cpu_flags, cpu_isa  # noqa: E402
from embeddings.model import inference_copy  # noqa: E402
from embeddings.onnx_runtime import export_onnx, int8_model_path  # noqa: E402

Run = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
FLAGS_OF_INTEREST = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx")


def cpu_report() -> dict:
    model = ""
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model = platform.processor()
    flags = sorted(f for f in cpu_flags() if f.startswith(FLAGS_OF_INTEREST))
    import onnxruntime
    from ort_avx2 import is_capped as ort_capped

    return {
        "model": model,
        "flags": flags,
        "isa": cpu_isa(cpu_flags()),
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onnxruntime": onnxruntime.__version__,
        "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY"),
        "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "onnxruntime_mlas_capped_to_avx2": ort_capped(),
        "onnxruntime_path": str(Path(onnxruntime.__file__).parent),
    }


def capped() -> bool:
    """True when PyTorch was told to run as on an AVX2-only CPU."""
    return os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() == "AVX2"


def features_of(paths: list[Path], model) -> tuple[np.ndarray, np.ndarray]:
    """Every segment of every file, decoded as ingest decodes, and its file's index."""
    parts, owners = [], []
    for i, path in enumerate(paths):
        audio = decode_all(path, model.frontend.sample_rate)
        feats = batch_features(split_segments(audio, model.frontend), model.frontend)
        parts.append(feats)
        owners += [i] * len(feats)
    return np.concatenate(parts), np.array(owners)


def corpus_files(folder: Path) -> list[Path]:
    if not folder.is_dir() or len(list(folder.rglob("*.mp3"))) < 40:
        subprocess.run(
            [sys.executable, str(ROOT / "bench" / "corpus.py"), str(folder), "--tracks", "40",
             "--seconds", "60", "--format", "mp3"],
            check=True,
        )  # fmt: skip
    return sorted(folder.rglob("*.mp3"))[:40]


def predictor_run(model, precision: str) -> Run:
    predictor = Predictor(model, "cpu", precision)

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = predictor.predict(x)
        return out.probabilities, out.embeddings

    return run


def torch_nchw(model) -> Run:
    """PyTorch fp32 as the Predictor runs it but in the default (NCHW) memory format."""
    network = inference_copy(model.network).eval()

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).unsqueeze(1)
            embedding = network.embed(t)
            probs = torch.softmax(network.classify(embedding), dim=1)
        return probs.numpy(), embedding.numpy()

    return run


def openvino_fp32(model) -> tuple[Run, list[str]]:
    """OpenVINO's CPU plugin on the exported fp32 graph, one thread, f32 kept.

    Returns the runner and the kernel names its runtime model reports per layer type
    (``Convolution: brgconv_avx2_f32``, ...): the evidence of which instruction set
    it runs. One compiled model per batch shape (static shapes
    are what its CPU plugin runs fastest).
    """
    import openvino as ov

    core = ov.Core()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fp32.onnx"
        path.write_bytes(export_onnx(inference_copy(model.network), model.frontend.shape))
        graph = core.read_model(str(path))
    config = {
        "INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": "f32",
        "PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False,
    }  # fmt: skip
    compiled: dict[tuple[int, ...], object] = {}
    lock = threading.Lock()

    def request(shape: tuple[int, ...]):
        with lock:
            if shape not in compiled:
                g = graph.clone()
                g.reshape({"features": list(shape)})
                compiled[shape] = core.compile_model(g, "CPU", config)
            return compiled[shape].create_infer_request()

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batch = np.ascontiguousarray(x, dtype=np.float32)[:, None]
        out = request(batch.shape).infer({"features": batch})
        values = {port.get_any_name(): value for port, value in out.items()}
        return values["probabilities"], values["embeddings"]

    n_mels, frames = model.frontend.shape
    request((8, 1, n_mels, frames))
    runtime = next(iter(compiled.values())).get_runtime_model()
    info = [op.get_rt_info() for op in runtime.get_ordered_ops()]
    kernels = sorted({
        f"{i['layerType'].astype(str)}: {i['primitiveType'].astype(str)}" for i in info
        if "primitiveType" in i and i["layerType"].astype(str) not in ("Const", "Input", "Output")
    })  # fmt: skip
    return run, kernels


def concurrent_speed(run: Run, x: np.ndarray, threads: int, seconds: float) -> float:
    """Aggregate segments/s of ``threads`` one-thread calls side by side, as ingest runs."""
    done = [0] * threads
    run(x)  # warm up first: the window starts after it
    stop = time.perf_counter() + seconds

    def work(i: int) -> None:
        torch.set_num_threads(1)
        while time.perf_counter() < stop:
            run(x)
            done[i] += len(x)

    start = time.perf_counter()
    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(done) / (time.perf_counter() - start)


def torch_x86_int8(model, calibration: np.ndarray) -> Run:
    """PyTorch's FX post-training int8 (x86 backend), calibrated like the ONNX model."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    from embeddings.onnx_runtime import _ProbabilitiesAndEmbeddings

    torch.backends.quantized.engine = "x86"
    module = _ProbabilitiesAndEmbeddings(inference_copy(model.network)).eval()
    example = (torch.from_numpy(calibration[:2, None]),)
    prepared = prepare_fx(module, get_default_qconfig_mapping("x86"), example)
    with torch.inference_mode():
        for i in range(0, len(calibration), 16):
            prepared(torch.from_numpy(calibration[i : i + 16, None]))
    quantized = convert_fx(prepared)

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            probs, emb = quantized(torch.from_numpy(np.ascontiguousarray(x[:, None])))
        return probs.numpy(), emb.numpy()

    return run


def onnx_file_run(path: Path) -> Run:
    """Any ONNX model of the network (same inputs and outputs as the shipped ones)."""
    from embeddings.onnx_runtime import OnnxNetwork

    network = OnnxNetwork(path, path.stem)
    return lambda x: network.run(x, 1)


def outputs(run: Run, x: np.ndarray, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    parts = [run(x[i : i + batch]) for i in range(0, len(x), batch)]
    return np.concatenate([p for p, _ in parts]), np.concatenate([e for _, e in parts])


def speeds(runs: dict[str, Run], x: np.ndarray, batches, rounds: int, seconds: float) -> dict:
    """Median one-thread segments/s per path and batch, paths measured in turn."""
    rates: dict[str, dict[int, list[float]]] = {n: {b: [] for b in batches} for n in runs}
    for r in range(rounds):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))  # alternate
        for name in order:
            for b in batches:
                batch = x[:b]
                runs[name](batch)
                done, start = 0, time.perf_counter()
                while time.perf_counter() - start < seconds:
                    runs[name](batch)
                    done += b
                rates[name][b].append(done / (time.perf_counter() - start))
        print(f"round {r + 1}/{rounds} done", flush=True)
    return {
        n: {str(b): {"median": float(np.median(v)), "all": [round(s, 1) for s in v]}
            for b, v in per.items()}
        for n, per in rates.items()
    }  # fmt: skip


EMULATED = """
import sys, numpy as np, onnxruntime as ort
options = ort.SessionOptions(); options.intra_op_num_threads = 1
x = np.load(sys.argv[1]); out = {}
for name, path in zip(sys.argv[3::2], sys.argv[4::2]):
    s = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    out[name] = s.run(["embeddings"], {"features": x[:, None]})[0]
np.savez(sys.argv[2], **out)
"""


def emulated_check(model, cpu_model: str, x: np.ndarray) -> dict:
    """The ONNX paths' embeddings on an emulated AVX2-only CPU against this CPU's."""
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        return {"error": "qemu-x86_64 not installed (Debian: apt-get install qemu-user)"}
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        fp32.write_bytes(export_onnx(inference_copy(model.network), model.frontend.shape))
        models = {"onnx-fp32": fp32, "int8": int8_model_path(model.model_id)}
        np.save(Path(tmp) / "x.npy", x)
        script = Path(tmp) / "emulated.py"
        script.write_text(EMULATED)
        args = [str(a) for pair in models.items() for a in pair]
        started = time.monotonic()
        subprocess.run(
            [qemu, "-cpu", cpu_model, sys.executable, str(script), str(Path(tmp) / "x.npy"),
             str(Path(tmp) / "out.npz"), *args],
            check=True, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        emulated = dict(np.load(Path(tmp) / "out.npz"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        result = {"cpu": cpu_model, "segments": len(x), "seconds": time.monotonic() - started}
        for name, path in models.items():
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            here = session.run(["embeddings"], {"features": x[:, None]})[0]
            there = emulated[name]
            norms = np.linalg.norm(here, axis=1) * np.linalg.norm(there, axis=1)
            cos = (here * there).sum(1) / norms
            result[name] = {
                "max_abs_diff": float(np.abs(here - there).max()),
                "cosine_min": float(cos.min()),
            }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gtzan", type=Path, default=Path("/work/data/gtzan/genres"))
    parser.add_argument("--corpus", type=Path, default=ROOT / "bench" / "out" / "corpus-40x60")
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.5, help="per measurement")
    parser.add_argument("--emulate-avx2", metavar="QEMU_CPU", help="e.g. EPYC-Rome or Haswell")
    parser.add_argument("--paths", nargs="+", help="measure only these rows (torch-fp32 always)")
    parser.add_argument(
        "--onnx-model", nargs="+", default=[], metavar="NAME=FILE",
        help="extra ONNX models to measure as rows (e.g. int8 variants)",
    )  # fmt: skip
    parser.add_argument(
        "--concurrent",
        type=int,
        default=0,
        metavar="N",
        help="also time N one-thread calls side by side (ingest: N = cores)",
    )
    parser.add_argument("--no-agreement", action="store_true", help="speed only")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    torch.set_num_threads(1)  # one inference call per core, as ingest runs them
    cpu = cpu_report()
    print(f"CPU: {cpu['model']}\nflags: {' '.join(cpu['flags'])}")
    mlas = "capped to AVX2" if cpu["onnxruntime_mlas_capped_to_avx2"] else "this CPU's own ISA"
    print(f"torch {cpu['torch']} capability {cpu['torch_cpu_capability']}, "
          f"onnxruntime {cpu['onnxruntime']} (MLAS: {mlas})")  # fmt: skip
    model = load_default_model()
    gtzan_files = sorted(args.gtzan.glob("*/*.wav"))
    gtzan, gtzan_owner = features_of(gtzan_files, model)
    corpus, corpus_owner = features_of(corpus_files(args.corpus), model)
    per_genre_index = np.array([int(p.stem.rsplit(".", 1)[1]) for p in gtzan_files])
    calibration = gtzan[per_genre_index[gtzan_owner] < 5]  # as embeddings/training/quantization.py
    print(f"{len(gtzan_files)} GTZAN clips ({len(gtzan)} segments), "
          f"{corpus_owner.max() + 1} corpus tracks ({len(corpus)} segments)")  # fmt: skip

    wanted = set(args.paths or []) | {"torch-fp32"}
    builders: dict[str, Callable[[], Run]] = {
        "torch-fp32": lambda: predictor_run(model, "fp32"),
        "torch-fp32-nchw": lambda: torch_nchw(model),
        "onnx-fp32": lambda: predictor_run(model, "onnx-fp32"),
        "onnx-int8": lambda: predictor_run(model, "int8"),
        "torch-int8-x86": lambda: torch_x86_int8(model, calibration),
    }
    if cpu_has_native_bf16() and not capped():
        builders["torch-bf16"] = lambda: predictor_run(model, "bf16")
    kernels: dict[str, list[str]] = {}
    if importlib.util.find_spec("openvino") is not None:

        def build_openvino() -> Run:
            run, kernels["openvino-fp32"] = openvino_fp32(model)
            print(f"openvino-fp32 convolution kernels: {kernels['openvino-fp32']}")
            return run

        builders["openvino-fp32"] = build_openvino
    for spec in args.onnx_model:
        name, file = spec.split("=", 1)
        builders[name] = lambda file=file: onnx_file_run(Path(file))
        wanted.add(name)  # asked for by name: always measured
    runs: dict[str, Run] = {}
    failed = {}
    for name, build in builders.items():
        if args.paths and name not in wanted:
            continue
        try:
            runs[name] = build()
        except Exception as exc:  # report, do not stop the benchmark
            failed[name] = repr(exc)[:300]

    agree = {}
    if not args.no_agreement:
        reference = {
            "gtzan": outputs(runs["torch-fp32"], gtzan),
            "corpus": outputs(runs["torch-fp32"], corpus),
        }
        for name, run in runs.items():
            agree[name] = {
                "gtzan": agreement(reference["gtzan"], outputs(run, gtzan), gtzan_owner),
                "corpus": agreement(reference["corpus"], outputs(run, corpus), corpus_owner),
            }
            print(name, json.dumps(agree[name]), flush=True)
    speed = speeds(runs, gtzan, args.batches, args.rounds, args.seconds)
    together: dict[str, list[float]] = {}
    if args.concurrent > 1:
        batch = gtzan[: max(args.batches)]
        for r in range(args.rounds):
            for name in runs if r % 2 == 0 else reversed(runs):
                rate = concurrent_speed(runs[name], batch, args.concurrent, args.seconds * 2)
                together.setdefault(name, []).append(round(rate, 1))
        print("side by side:", json.dumps(together))
    auto = Predictor(model, "cpu", "auto").describe()
    result = {
        "cpu": cpu, "auto": auto, "speed_segments_per_s_one_thread": speed,
        "concurrent": {"calls": args.concurrent, "batch": max(args.batches),
                       "segments_per_s": together},
        "agreement_with_torch_fp32": agree, "failed": failed, "kernels": kernels,
        "calibration": "MinMax over the segments of GTZAN clips 00000-00004 of each genre",
    }  # fmt: skip
    if args.emulate_avx2:
        result["emulated_avx2"] = emulated_check(model, args.emulate_avx2, gtzan[::100][:10])
        print("emulated:", json.dumps(result["emulated_avx2"]))

    tag = "avx2-capped" if capped() else cpu["isa"].lower().replace("-", "")
    if capped() and not cpu["onnxruntime_mlas_capped_to_avx2"]:
        tag += "-ort-uncapped"
    out = args.out or ROOT / "bench" / "out" / f"inference-{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nauto: {auto}\n")
    print(
        "| path | "
        + " | ".join(f"batch {b}" for b in args.batches)
        + " | GTZAN genre / cos min / top-5 in order | corpus genre / cos min / top-5 in order |"
    )
    print("|---" * (len(args.batches) + 3) + "|")  # fmt: skip
    for name in runs:
        cells = [f"{speed[name][str(b)]['median']:.1f}" for b in args.batches]
        figs = [
            f"{a['top_genre']:.2f} / {a['cosine_min']:.5f} / {a['neighbours_in_order']:.3f}"
            for a in ((agree[name]["gtzan"], agree[name]["corpus"]) if agree else ())
        ] or ["–", "–"]
        print(f"| {name} | " + " | ".join(cells + figs) + " |")
    for name, why in failed.items():
        print(f"{name}: failed: {why}")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
