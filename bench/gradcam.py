"""Grad-CAM cost per track at ingest: fp32 against the inference precision.

Ingest draws one heatmap per track: Grad-CAM for the predicted genre over a
window of ``--segments`` 3-second segments, in the main process, on one core.
This times that call on the default model in fp32 and under bf16 autocast (what
``Predictor.grad_cam`` uses where the CPU runs bf16 natively), on the same
synthetic corpus track, and reports how closely the two maps agree.

    python bench/gradcam.py            # about 10 s
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import soxr
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.corpus import SR as CORPUS_RATE  # noqa: E402
from bench.corpus import synth_track  # noqa: E402
from embeddings.audio import downmix  # noqa: E402
from embeddings.checkpoint import load_default_model  # noqa: E402
from embeddings.frontend import FrontendConfig, batch_features, split_segments  # noqa: E402
from embeddings.gradcam import grad_cam  # noqa: E402
from embeddings.inference import Predictor  # noqa: E402


def corpus_features(config: FrontendConfig, segments: int, seed: int = 0) -> np.ndarray:
    """Features of a ``bench/corpus.py`` track, the audio ``bench/ingest.py`` times."""
    stereo = synth_track(segments * config.segment_seconds, seed)
    audio = soxr.resample(downmix(stereo), CORPUS_RATE, config.sample_rate)
    return batch_features(split_segments(audio, config), config)


def time_call(call, repeats: int) -> float:
    """Median milliseconds per call, after one warm-up call."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=4, help="window length, as at ingest")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(1)  # ingest's main thread shares the cores with the workers
    model = load_default_model()
    features = corpus_features(model.frontend, args.segments)
    fp32 = Predictor(model, precision="fp32")
    bf16 = Predictor(model, precision="bf16")
    target = int(fp32.predict(features).probabilities.mean(axis=0).argmax())

    reference = grad_cam(model.network, features, target)
    low = bf16.grad_cam(features, target)
    result = {
        "model_id": model.model_id,
        "segments": args.segments,
        "fp32_ms": time_call(lambda: fp32.grad_cam(features, target), args.repeats),
        "bf16_ms": time_call(lambda: bf16.grad_cam(features, target), args.repeats),
        "map_correlation": float(np.corrcoef(low.ravel(), reference.ravel())[0, 1]),
        "max_abs_difference_over_peak": float(np.abs(low - reference).max() / reference.max()),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"model {result['model_id']}, {args.segments} segments, one thread")
    print(f"Grad-CAM fp32  {result['fp32_ms']:6.1f} ms")
    print(f"Grad-CAM bf16  {result['bf16_ms']:6.1f} ms")
    print(f"bf16 vs fp32 maps: correlation {result['map_correlation']:.5f}, "
          f"max |difference| {result['max_abs_difference_over_peak']:.4f} of the peak")  # fmt: skip


if __name__ == "__main__":
    main()
