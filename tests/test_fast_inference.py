"""The fast inference paths: agreement with fp32, ``--precision`` names, honest ``auto``.

Agreement is checked on synthesised music-like segments (no audio files, no
downloads), grouped into tracks the way ingest aggregates them, with the rules of
issue 22 (``embeddings/agreement.py``). The full measurement on real clips is
``bench/inference.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import embeddings.inference as inference
from embeddings.agreement import agreement, probe_features
from embeddings.checkpoint import GenreModel
from embeddings.frontend import FrontendConfig
from embeddings.inference import Predictor
from embeddings.inference_paths import AGREEING_PATHS, PRECISIONS, choose_path, kernel_flags
from embeddings.model import build_seeded_model
from embeddings.onnx_runtime import int8_model_path

AVX2_HOME_SERVER = frozenset({"sse4_2", "avx", "avx2", "fma"})
AVX512_BF16 = AVX2_HOME_SERVER | {"avx512f", "avx512_vnni", "avx512_bf16"}
OLD_CPU = frozenset({"sse2", "sse4_2"})


@pytest.fixture(scope="module")
def segments() -> tuple[np.ndarray, np.ndarray]:
    """24 music-like segments as 12 two-segment tracks."""
    return probe_features(FrontendConfig(), 24, seed=7), np.repeat(np.arange(12), 2)


@pytest.fixture(scope="module")
def random_model() -> GenreModel:
    return GenreModel(
        network=build_seeded_model("resnet18", 10, seed=3),
        arch="resnet18",
        genres=[f"g{i}" for i in range(10)],
        frontend=FrontendConfig(),
        model_id="resnet18-test-seed3",
        trained=False,
    )


def outputs(predictor: Predictor, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out = predictor.predict(x)
    return out.probabilities, out.embeddings


# -- the decision, with any CPU's flags ---------------------------------------------------


def test_auto_picks_the_fastest_agreeing_path_on_avx2_and_avx512() -> None:
    # measured: onnx-fp32 no faster than PyTorch fp32; bf16 and int8 reorder neighbours
    for flags, isa in ((AVX2_HOME_SERVER, "AVX2"), (AVX512_BF16, "AVX-512")):
        choice = choose_path("auto", "cpu", flags, onnx_ok=True, machine="x86_64")
        assert choice.path == "fp32"
        assert choice.reason == f"auto: the fastest path that agrees with fp32 on {isa}"


def test_auto_never_picks_a_path_that_failed_agreement() -> None:
    for flags in (AVX2_HOME_SERVER, AVX512_BF16, OLD_CPU, frozenset()):
        choice = choose_path("auto", "cpu", flags, onnx_ok=True, machine="x86_64")
        assert choice.path in AGREEING_PATHS


@pytest.mark.parametrize(
    ("flags", "onnx_ok", "machine", "why"),
    [
        (OLD_CPU, True, "x86_64", "no AVX2"),
        (frozenset(), True, "x86_64", "unknown CPU"),
        (AVX2_HOME_SERVER, False, "x86_64", "AVX2"),
        (frozenset({"asimd", "neon"}), True, "aarch64", "nothing measured on aarch64"),
    ],
)
def test_auto_stays_with_torch_fp32_elsewhere(flags, onnx_ok, machine, why) -> None:
    choice = choose_path("auto", "cpu", flags, onnx_ok=onnx_ok, machine=machine)
    assert choice.path == "fp32"
    assert why in choice.reason


def test_named_paths_are_taken_as_asked() -> None:
    for name in PRECISIONS[1:]:
        assert choose_path(name, "cpu", OLD_CPU, onnx_ok=True).path == name


def test_bad_requests_are_refused_with_reasons() -> None:
    with pytest.raises(ValueError, match="choose one of"):
        choose_path("fp8", "cpu", AVX2_HOME_SERVER, onnx_ok=True)
    with pytest.raises(ValueError, match="CPU only"):
        choose_path("int8", "cuda", frozenset(), onnx_ok=True)
    with pytest.raises(ValueError, match="pip install onnxruntime"):
        choose_path("onnx-fp32", "cpu", AVX2_HOME_SERVER, onnx_ok=False)


def test_messages_name_the_kernels_pytorch_may_use_not_the_cpu_flags() -> None:
    amx_cpu = AVX512_BF16 | {"amx_tile", "amx_bf16"}
    assert kernel_flags(amx_cpu, "AVX512") == amx_cpu
    capped = kernel_flags(amx_cpu, "AVX2")  # ATEN_CPU_CAPABILITY=avx2 on an AVX-512 CPU
    assert capped == AVX2_HOME_SERVER
    choice = choose_path("auto", "cpu", capped, onnx_ok=True, machine="x86_64")
    assert choice.reason.endswith("on AVX2")
    assert "avx2" not in kernel_flags(amx_cpu, "DEFAULT")


def test_describe_says_avx2_when_the_kernels_are_held_to_avx2() -> None:
    # a fresh process: the capability is fixed when torch starts
    code = (
        "from embeddings.checkpoint import GenreModel\n"
        "from embeddings.frontend import FrontendConfig\n"
        "from embeddings.inference import Predictor\n"
        "from embeddings.model import build_seeded_model\n"
        "m = GenreModel(network=build_seeded_model('resnet18', 10, seed=3), arch='resnet18',"
        " genres=[f'g{i}' for i in range(10)], frontend=FrontendConfig(), model_id='t',"
        " trained=False)\n"
        "print(Predictor(m, device='cpu').describe())\n"
    )
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.returncode == 0, out.stderr
    assert "AVX-512" not in out.stdout
    assert "on AVX2" in out.stdout or "no AVX2" in out.stdout


def test_gpu_keeps_its_autocast_paths() -> None:
    assert choose_path("auto", "cuda", frozenset(), onnx_ok=True).path == "auto"


# -- agreement ---------------------------------------------------------------------------


def test_onnx_fp32_agrees_with_fp32_on_a_random_model(random_model, segments) -> None:
    x, owners = segments
    reference = outputs(Predictor(random_model, "cpu", "fp32"), x)
    fast = outputs(Predictor(random_model, "cpu", "onnx-fp32"), x)
    figures = agreement(reference, fast, owners)
    assert figures["passes"], figures
    assert figures["cosine_min"] > 0.99999
    assert np.abs(reference[0] - fast[0]).max() < 1e-4


def test_auto_agrees_with_fp32_on_the_shipped_model(model, segments) -> None:
    x, owners = segments
    reference = outputs(Predictor(model, "cpu", "fp32"), x)
    figures = agreement(reference, outputs(Predictor(model, "cpu", "auto"), x), owners)
    assert figures["passes"], figures
    assert figures["neighbours_in_order"] == 1.0


def test_int8_keeps_genres_and_cosines_on_the_shipped_model(model, segments) -> None:
    if not int8_model_path(model.model_id).is_file():
        pytest.skip("no int8 model ships for this checkpoint")
    x, owners = segments
    reference = outputs(Predictor(model, "cpu", "fp32"), x)
    figures = agreement(reference, outputs(Predictor(model, "cpu", "int8"), x), owners)
    # the order of near-tied neighbours is what int8 does not keep; it is opt-in for that
    assert figures["top_genre"] >= 0.99
    assert figures["cosine_min"] >= 0.999


def test_every_precision_name_works(model, segments) -> None:
    x = segments[0][:3]
    for name in PRECISIONS:
        predictor = Predictor(model, "cpu", name)
        out = predictor.predict(x)
        assert out.probabilities.shape == (3, len(model.genres))
        assert out.embeddings.shape == (3, model.embedding_dim)
        assert np.allclose(out.probabilities.sum(1), 1, atol=1e-3)
        assert predictor.describe()


def test_int8_refuses_a_checkpoint_it_was_not_made_from(random_model) -> None:
    with pytest.raises(ValueError, match="no int8 model ships for resnet18-test-seed3"):
        Predictor(random_model, "cpu", "int8")


def test_shipped_int8_is_keyed_by_its_model_id(model) -> None:
    path = int8_model_path(model.model_id)
    if not path.is_file():
        pytest.skip("no int8 model ships for this checkpoint")
    onnx = pytest.importorskip("onnx")
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    assert props["sonic.model_id"] == model.model_id
    assert path.stat().st_size < 30 * 2**20
    pyproject = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    assert '"weights/*.onnx"' in pyproject  # installed with the package


# -- auto is honest -----------------------------------------------------------------------


def test_auto_on_a_cpu_without_avx2_runs_torch_fp32(model, monkeypatch) -> None:
    monkeypatch.setattr(inference, "cpu_flags", lambda: OLD_CPU)
    predictor = Predictor(model, "cpu", "auto")
    assert predictor.precision == "fp32"
    assert predictor.describe().startswith("pytorch fp32 on no AVX2; auto:")


def test_asked_for_onnx_fails_loudly(model, monkeypatch) -> None:
    def broken(*_args):
        raise RuntimeError("exporter missing")

    monkeypatch.setattr(inference, "_onnx_fp32_network", broken)
    with pytest.raises(RuntimeError, match="exporter missing"):
        Predictor(model, "cpu", "onnx-fp32")
    assert Predictor(model, "cpu", "auto").precision == "fp32"  # auto needs no ONNX


def test_describe_names_the_engine(model, monkeypatch) -> None:
    monkeypatch.setattr(inference, "cpu_flags", lambda: AVX2_HOME_SERVER)
    assert Predictor(model, "cpu", "auto").describe().startswith("pytorch fp32 on AVX2")
    assert Predictor(model, "cpu", "onnx-fp32").describe() == "onnxruntime fp32 on AVX2; asked for"


# -- threads and gradients ---------------------------------------------------------------


def test_concurrent_onnx_calls_give_the_sequential_answers(model, segments) -> None:
    predictor = Predictor(model, "cpu", "onnx-fp32")
    x = segments[0]
    chunks = [x[i : i + 4] for i in range(0, len(x), 4)]
    expected = [predictor.predict(c).embeddings for c in chunks]
    got: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        previous = inference.op_threads(1)
        try:
            got[i] = predictor.predict(chunks[i]).embeddings
        finally:
            inference.op_threads(previous)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(chunks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, e in enumerate(expected):
        np.testing.assert_allclose(got[i], e, rtol=1e-5, atol=1e-5)


def test_grad_cam_still_runs_the_torch_network(model, segments) -> None:
    predictor = Predictor(model, "cpu", "onnx-fp32")
    maps = predictor.grad_cam(segments[0][:2], target=0)
    assert np.isfinite(maps).all()
    assert maps.shape[0] == 2
