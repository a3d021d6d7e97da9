"""Batched inference and track-level aggregation.

Ingest feeds segments from many tracks through one network call per batch; this
module owns that call (device placement, no-grad, channels-last, and which engine
runs it: PyTorch or ONNX Runtime, see :mod:`embeddings.inference_paths`) and the
rules for turning per-segment outputs into one answer per track.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from embeddings.aggregation import (  # noqa: F401 (re-exported: callers import them from here)
    AGGREGATIONS,
    Aggregation,
    aggregate,
    l2_normalise,
    top_k,
)
from embeddings.checkpoint import GenreModel
from embeddings.device import pick_device  # noqa: F401 (re-exported: callers import it here)
from embeddings.inference_paths import (  # noqa: F401 (PRECISIONS re-exported)
    PRECISIONS,
    choose_path,
    cpu_flags,
    cpu_isa,
    kernel_flags,
    onnx_available,
)
from embeddings.model import inference_copy
from embeddings.onnx_runtime import OnnxNetwork, export_onnx, int8_model_path


@dataclass
class BatchOutput:
    probabilities: np.ndarray  # (n, n_genres) softmax
    embeddings: np.ndarray  # (n, embedding_dim) penultimate layer, not normalised


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 dot-product instructions (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_precision(device: torch.device, requested: str = "auto") -> torch.dtype:
    """bf16 where the hardware runs it natively (about twice as fast), else fp32.

    The autocast dtype for training, pretraining and Grad-CAM. Ingest's inference
    path is chosen by :func:`embeddings.inference_paths.choose_path` instead, which
    holds it to agreement with fp32.
    """
    if requested == "fp32":
        return torch.float32
    if requested == "bf16":
        return torch.bfloat16
    if requested != "auto":
        raise ValueError(f"unknown precision {requested!r}; choose auto, fp32 or bf16")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


def op_threads(count: int) -> int:
    """Set how many threads one torch call may use; returns the previous setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, int(count)))
    return previous


class Predictor:
    """Runs a :class:`GenreModel` over batches of normalised log-mel segments.

    ``precision`` names the path that :meth:`predict` takes (see
    :mod:`embeddings.inference_paths`): ``fp32`` and ``bf16`` run PyTorch,
    ``onnx-fp32`` and ``int8`` run ONNX Runtime, and ``auto`` picks the fastest path
    measured to agree with fp32 on this kind of CPU. :meth:`describe` says which path
    runs and why. :meth:`grad_cam` always runs the PyTorch network, which attributions
    need for their gradients.
    """

    def __init__(
        self, model: GenreModel, device: str | None = None, precision: str = "auto"
    ) -> None:
        if model.is_backbone:
            raise ValueError(
                f"model {model.model_id} is a pretrained backbone without a genre head; "
                "fine-tune it with `sonic train DATASET --init CHECKPOINT` first"
            )
        self.model = model
        self.device = pick_device(device)
        on_cpu = self.device.type == "cpu"
        # the kernels PyTorch may use here (ATEN_CPU_CAPABILITY), for the choice and describe()
        self._kernel_flags = kernel_flags(cpu_flags(), torch.backends.cpu.get_cpu_capability())
        choice = choose_path(
            precision, self.device.type, self._kernel_flags, on_cpu and onnx_available()
        )
        # Grad-CAM keeps its own rule (bf16 where native): its maps are not part of the
        # agreement rules, and bf16 halves their cost (bench/gradcam.py).
        torch_precision = precision if precision in ("fp32", "bf16") else "auto"
        self.dtype = pick_precision(self.device, torch_precision)
        self.network = model.network.to(self.device).eval()
        for parameter in self.network.parameters():  # inference only: record no graphs
            parameter.requires_grad_(False)
        if on_cpu:
            # oneDNN convolutions are markedly faster on NHWC tensors.
            self.network = self.network.to(memory_format=torch.channels_last)
        # predict() runs on its own folded copy: faster, and safe to call from
        # several threads while grad_cam() hooks into self.network.
        self.inference_network = inference_copy(self.network)
        self._onnx: OnnxNetwork | None = None
        self.precision, self._reason = choice.path, choice.reason
        # the dtype of PyTorch's predict(): on a GPU as before, on a CPU fp32 unless asked
        self._torch_dtype = (
            torch.bfloat16 if choice.path == "bf16"
            else torch.float32 if on_cpu
            else pick_precision(self.device, precision)
        )  # fmt: skip
        if choice.path == "onnx-fp32":
            self._onnx = _onnx_fp32_network(self.inference_network, model.frontend.shape)
        elif choice.path == "int8":
            self._onnx = _int8_network(model)

    def describe(self) -> str:
        """The path :meth:`predict` runs, in words: ``pytorch fp32 on AVX2; auto: ...``."""
        isa = cpu_isa(self._kernel_flags) if self.device.type == "cpu" else str(self.device)
        engine = {
            "onnx-fp32": "onnxruntime fp32",
            "int8": "onnxruntime int8 (static, calibrated)",
            "fp32": "pytorch fp32",
            "bf16": "pytorch bf16",
        }.get(self.precision, f"pytorch {str(self._torch_dtype).removeprefix('torch.')} autocast")
        return f"{engine} on {isa}; {self._reason}"

    def predict(self, features: np.ndarray) -> BatchOutput:
        """Probabilities and embeddings for (n, n_mels, frames) features."""
        if self._onnx is not None:
            return self._predict_onnx(features)
        return self._predict_torch(features)

    def _predict_onnx(self, features: np.ndarray) -> BatchOutput:
        # follows op_threads(): ingest sets one thread per call when it runs several
        probabilities, embeddings = self._onnx.run(features, torch.get_num_threads())
        return BatchOutput(probabilities=probabilities, embeddings=embeddings)

    @torch.inference_mode()
    def _predict_torch(self, features: np.ndarray) -> BatchOutput:
        x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
        x = x.unsqueeze(1).to(self.device)
        if self.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        dtype = self._torch_dtype
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype != torch.float32):
            embedding = self.inference_network.embed(x)
            logits = self.inference_network.classify(embedding)
        probs = torch.softmax(logits.float(), dim=1)
        return BatchOutput(
            probabilities=probs.cpu().numpy(),
            embeddings=embedding.float().cpu().numpy(),
        )

    def grad_cam(self, features: np.ndarray, target: int) -> np.ndarray:
        """Grad-CAM maps for ``target`` over (n, n_mels, frames) features.

        Runs at the inference precision: ingest draws one map per track, and in bf16
        it costs about half the fp32 time for maps that correlate with fp32's at
        0.9999 (``bench/gradcam.py`` measures both).
        """
        from embeddings.gradcam import grad_cam

        with torch.autocast(
            self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32
        ):
            return grad_cam(self.network, features, target)


_ONNX_CACHE: dict[str, OnnxNetwork] = {}
_ONNX_LOCK = threading.Lock()


def _weights_key(network: nn.Module) -> str:
    """A digest of ``network``'s weights: the same weights export to the same graph."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in network.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _onnx_fp32_network(network: nn.Module, input_shape: tuple[int, int]) -> OnnxNetwork:
    """The ONNX Runtime copy of ``network``, exported once per process per weights.

    Exporting takes about a second; the service and the tests make many Predictors
    of the same model.
    """
    key = f"fp32-{_weights_key(network)}-{input_shape}"
    with _ONNX_LOCK:
        if key not in _ONNX_CACHE:
            _ONNX_CACHE[key] = OnnxNetwork(export_onnx(network, input_shape), "fp32")
        return _ONNX_CACHE[key]


def _int8_network(model: GenreModel) -> OnnxNetwork:
    """The shipped int8 model of ``model``; refuses any checkpoint it was not made from."""
    path = int8_model_path(model.model_id)
    if not path.is_file():
        raise ValueError(
            f"no int8 model ships for {model.model_id}: int8 needs one calibrated on real "
            "clips (python -m embeddings.training.quantization DATASET --model CHECKPOINT); "
            "use --precision auto or fp32"
        )
    with _ONNX_LOCK:
        if str(path) not in _ONNX_CACHE:
            _ONNX_CACHE[str(path)] = OnnxNetwork(path, "int8")
        return _ONNX_CACHE[str(path)]
