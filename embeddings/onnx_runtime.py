"""Running the genre network in ONNX Runtime: export from torch, sessions, one call.

The exported graph is the batch-norm-folded inference copy of the network, with two
outputs, ``probabilities`` (softmax) and ``embeddings`` (the penultimate vector), so
one ``run`` gives what :class:`~embeddings.inference.BatchOutput` holds.

fp32 is exported from the loaded checkpoint in memory when ``--precision onnx-fp32``
asks for it (about a second, once per process and weights; the Predictor caches it):
a 45 MB file cached on disk per model would need invalidating, and the export is
exact. The int8 model cannot be made on the user's machine (calibration needs real
music, see :mod:`embeddings.training.quantization`), so it is shipped, keyed by the model id
it was made from (11 MB).

Threads: ingest runs several inference threads, each limited to one core with
``op_threads(1)``. A session's thread count is fixed when it is created, so one
session is made per ``torch.get_num_threads()`` value seen at call time; they all
follow ``op_threads`` that way. ``InferenceSession.run`` is safe to call from
several threads at once.
"""

from __future__ import annotations

import io
import threading
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from embeddings.model_handle import WEIGHTS_DIR

INPUT = "features"
OUTPUTS = ("probabilities", "embeddings")
OPSET = 17


class _ProbabilitiesAndEmbeddings(nn.Module):
    """The two outputs ingest needs from one forward pass, as an exportable module."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.network.embed(x)
        return torch.softmax(self.network.classify(embedding), dim=1), embedding


def export_onnx(network: nn.Module, input_shape: tuple[int, int]) -> bytes:
    """The fp32 ONNX graph of an eval-mode ``network`` for (n, 1, *input_shape) inputs."""
    module = _ProbabilitiesAndEmbeddings(network).eval()
    example = torch.zeros(2, 1, *input_shape)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # the TorchScript exporter is the one that needs no onnxscript; it says it is
        # deprecated in favour of the dynamo one, which this model does not need
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (example,), buffer, input_names=[INPUT], output_names=list(OUTPUTS),
            dynamic_axes={INPUT: {0: "batch"}, **{name: {0: "batch"} for name in OUTPUTS}},
            opset_version=OPSET, dynamo=False,
        )  # fmt: skip
    return buffer.getvalue()


def int8_model_path(model_id: str, weights_dir: Path = WEIGHTS_DIR) -> Path:
    """Where the int8 model made from checkpoint ``model_id`` is shipped."""
    return Path(weights_dir) / f"{model_id}.int8.onnx"


class OnnxNetwork:
    """An ONNX model of the network with one session per thread count, made on demand."""

    def __init__(self, model: bytes | Path, label: str) -> None:
        import onnxruntime  # noqa: F401 (fail here, at construction, if it is missing)

        self._model = model if isinstance(model, bytes) else str(model)
        self.label = label
        self._sessions: dict[int, object] = {}
        self._lock = threading.Lock()

    def session(self, threads: int):
        """The session for ``threads`` intra-op threads (created once, then shared)."""
        session = self._sessions.get(threads)
        if session is None:
            with self._lock:
                session = self._sessions.get(threads)
                if session is None:
                    session = self._sessions[threads] = self._new_session(threads)
        return session

    def _new_session(self, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # idle pool threads would otherwise spin and take cores from the other calls
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        return ort.InferenceSession(self._model, options, providers=["CPUExecutionProvider"])

    def run(self, features: np.ndarray, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, embeddings) for (n, n_mels, frames) features."""
        x = np.ascontiguousarray(features, dtype=np.float32)[:, None]
        probabilities, embeddings = self.session(max(1, int(threads))).run(
            list(OUTPUTS), {INPUT: x}
        )
        return probabilities, embeddings
