"""Mixed-precision int8 models of the shipped checkpoint, for ``bench/inference.py``.

The shipped int8 model keeps every genre and a cosine of 0.99997 but reorders
near-tied sound-alike neighbours (93 % of GTZAN top-5 lists in order, 90 % of the
corpus's; 95 % is the rule). This writes variants that keep more of the network in
fp32 (the last stage, the first stage, the downsampling shortcuts) or calibrate on
more segments with another method, so their agreement and speed can be measured
side by side:

    python bench/int8_variants.py bench/out/int8 --gtzan /work/data/gtzan/genres
    python bench/inference.py --paths onnx-int8 \\
        --onnx-model $(for f in bench/out/int8/*.onnx; do echo "$(basename $f .onnx)=$f"; done)

Each variant is calibrated on GTZAN clips 00000-00004 of each genre, as the shipped
model is (``--per-genre`` changes that), so all 100 clips are still scored and the
50 not in the calibration say whether it generalises.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from embeddings.checkpoint import load_default_model  # noqa: E402
from embeddings.training.quantization import (  # noqa: E402
    calibration_features,
    quantize_int8,
)

# name: (extra node-name parts kept in fp32, calibration method)
VARIANTS: dict[str, tuple[tuple[str, ...], str]] = {
    "int8-fp32-layer4": (("layer4",), "MinMax"),
    "int8-fp32-layer1-layer4": (("layer1", "layer4"), "MinMax"),
    "int8-fp32-layer3-layer4": (("layer3", "layer4"), "MinMax"),
    "int8-percentile": ((), "Percentile"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--gtzan", type=Path, default=Path("/work/data/gtzan/genres"))
    parser.add_argument("--per-genre", type=int, default=5)
    parser.add_argument("--only", nargs="+", choices=sorted(VARIANTS))
    args = parser.parse_args()
    model = load_default_model()
    features = calibration_features(args.gtzan, model, args.per_genre)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (keep, method) in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        started = time.monotonic()
        path = args.out / f"{name}.onnx"
        path.write_bytes(quantize_int8(model, features, keep, method))
        print(f"{path}: fp32 also {keep or '-'}, {method}, {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
