"""Making the shipped int8 model: static quantization calibrated on real clips.

Run once per released checkpoint, by whoever ships it, never at ingest time: static
int8 needs the activation ranges of real music, which a user's machine cannot be
assumed to have in a usable form, and calibrating takes tens of seconds.

    python -m embeddings.training.quantization /path/to/gtzan/genres

writes ``embeddings/weights/<model_id>.int8.onnx`` (about 11 MB), which
``--precision int8`` loads for that checkpoint and no other.

The recipe, and why (``bench/inference.py`` measures the result):

- uint8 activations and **uint8** weights, per output channel. ONNX Runtime's
  faster uint8 x int8 kernel on AVX2 CPUs without VNNI (most home servers) sums
  pairs of products in 16 bits and saturates: run on an emulated AVX2-only CPU
  (``qemu-x86_64 -cpu EPYC-Rome``) that model's segment embeddings had cosine 0.93
  to what the same model gave on an AVX-512 VNNI CPU. uint8 x uint8 takes a kernel
  that cannot saturate: there the shipped model agrees with its AVX-512 answers to
  cosine 0.99998 (``bench/inference.py --emulate-avx2``; the fp32 stem rounds a little
  differently, which moves a few quantized values). ``reduce_range`` (7-bit weights)
  also avoids saturation, but reordered twice as many of the corpus's neighbour lists.
- The first convolution stays fp32: quantizing its one-channel log-mel input cost
  the most agreement for the least time. The pooling and the genre head stay fp32
  too, so the embedding is the exact mean of the last block's output.
- MinMax calibration on the 3-s segments of 5 clips per genre (half of GTZAN mini):
  entropy and percentile ranges agreed no better or worse.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from embeddings.checkpoint import GenreModel, load_checkpoint, load_default_model
from embeddings.model import inference_copy
from embeddings.onnx_runtime import INPUT, export_onnx, int8_model_path

CALIBRATION_BATCH = 16


def _fp32_node_names(model_path: Path, also: tuple[str, ...] = ()) -> list[str]:
    """Nodes kept in fp32: the stem convolution, the pooling and the head.

    ``also``: more nodes to keep, by a part of their names (``layer4`` keeps the
    last stage); ``bench/int8_variants.py`` measures what such mixes buy.
    """
    import onnx

    graph = onnx.load(str(model_path)).graph
    stem = next(n.name for n in graph.node if n.op_type == "Conv")
    tail = [n.name for n in graph.node if n.op_type in ("GlobalAveragePool", "Flatten", "Gemm")]
    extra = [n.name for n in graph.node if any(part in n.name for part in also)]
    return [stem, *tail, *(n.name for n in graph.node if n.op_type == "Softmax"), *extra]


def quantize_int8(
    model: GenreModel,
    calibration: np.ndarray,
    keep_fp32: tuple[str, ...] = (),
    method: str = "MinMax",
) -> bytes:
    """A static int8 ONNX model of ``model`` calibrated on (n, n_mels, frames) features.

    ``keep_fp32`` names more nodes to leave in fp32 (see :func:`_fp32_node_names`);
    ``method`` is ONNX Runtime's calibration method (MinMax, Entropy, Percentile).
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batches = [
        calibration[i : i + CALIBRATION_BATCH, None].astype(np.float32)
        for i in range(0, len(calibration) - CALIBRATION_BATCH + 1, CALIBRATION_BATCH)
    ]  # equal batches: the calibrator stacks them
    if not batches:
        raise ValueError(f"calibration needs at least {CALIBRATION_BATCH} segments")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(batches)

        def get_next(self) -> dict | None:
            batch = next(self._batches, None)
            return None if batch is None else {INPUT: batch}

    network = inference_copy(model.network).eval()
    with tempfile.TemporaryDirectory() as tmp:
        fp32, prepared, int8 = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        fp32.write_bytes(export_onnx(network, model.frontend.shape))
        quant_pre_process(str(fp32), str(prepared))
        quantize_static(
            str(prepared), str(int8), Reader(), quant_format=QuantFormat.QOperator,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8, per_channel=True,
            calibrate_method=CalibrationMethod[method],
            nodes_to_exclude=_fp32_node_names(prepared, keep_fp32),
        )  # fmt: skip
        quantized = onnx.load(str(int8))
    onnx.helper.set_model_props(
        quantized,
        {"sonic.model_id": model.model_id, "sonic.calibration_segments": str(len(calibration))},
    )
    return quantized.SerializeToString()


def calibration_features(dataset_dir: Path, model: GenreModel, per_genre: int) -> np.ndarray:
    """Features of every 3-s segment of the first ``per_genre`` clips of each genre."""
    from embeddings.frontend import batch_features, split_segments
    from embeddings.training.dataset import discover, load_audio

    dataset = discover(Path(dataset_dir))
    taken: dict[str, int] = {}
    parts = []
    for track in dataset.tracks:
        if taken.get(track.genre, 0) >= per_genre:
            continue
        taken[track.genre] = taken.get(track.genre, 0) + 1
        audio = load_audio(track.path, model.frontend.sample_rate)[0]
        parts.append(batch_features(split_segments(audio, model.frontend), model.frontend))
    return np.concatenate(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, help="folder-per-genre dataset of real clips")
    parser.add_argument("--model", type=Path, help="checkpoint (default: the shipped one)")
    parser.add_argument("--per-genre", type=int, default=5, help="calibration clips per genre")
    parser.add_argument("--out", type=Path, help="output file (default: beside the weights)")
    args = parser.parse_args(argv)
    model = load_checkpoint(args.model) if args.model else load_default_model()
    features = calibration_features(args.dataset, model, args.per_genre)
    out = args.out or int8_model_path(model.model_id)
    out.write_bytes(quantize_int8(model, features))
    print(f"{out}: int8 model of {model.model_id}, calibrated on {len(features)} segments")


if __name__ == "__main__":
    main()
