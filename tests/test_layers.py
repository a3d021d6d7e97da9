"""Imports only point down: ui -> ingest -> embeddings and catalog (SPEC.md)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ALLOWED = {
    "embeddings": {"embeddings"},
    "catalog": {"catalog", "migrations"},
    "migrations": {"catalog", "migrations"},
    "ingest": {"ingest", "embeddings", "catalog"},
    "ui": {"ui", "ingest", "embeddings", "catalog"},
}


# The exceptions: leaves of embeddings that the catalog needs too and that import
# only the standard library, so importing them runs no analysis: the band table
# (edges and words: the analysis splits at them, the catalog's sentences quote them)
# and the one atomic file writer (checkpoints, heatmaps, the FAISS index).
SHARED_LEAVES = {"catalog": {"embeddings.bands", "embeddings.atomic"}}


def test_imports_only_point_down():
    violations = []
    for layer, allowed in ALLOWED.items():
        for path in (REPO / layer).rglob("*.py"):
            shared = SHARED_LEAVES.get(layer, set())
            modules = {m for m in _imported_modules(path) if m not in shared}
            bad = ({m.split(".")[0] for m in modules} & set(ALLOWED)) - allowed
            if bad:
                violations.append(f"{path.relative_to(REPO)} imports {sorted(bad)}")
    assert violations == []


def test_a_shared_leaf_imports_only_the_standard_library():
    import sys

    for module in set().union(*SHARED_LEAVES.values()):
        path = REPO / (module.replace(".", "/") + ".py")
        tops = {name.split(".")[0] for name in _imported_modules(path)}
        assert tops <= set(sys.stdlib_module_names), (path, tops - set(sys.stdlib_module_names))


# The audio layer is the bottom of the bottom layer: it needs nothing else of the
# project, and it is the only reader of audio files. Who else imports a decoder
# library, and why it may:
AUDIO_LAYER = REPO / "embeddings" / "audio"
DECODER_LIBRARIES = {"av", "soundfile", "audioread"}
DECODER_USERS = {
    "ingest/stems/audio.py": "writes the stem files (soundfile), reads audio via the layer",
    "ingest/stems/remix.py": "reads back the stem files it wrote itself (FLAC, WAV or MP3)",
}


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_audio_layer_imports_nothing_of_the_project_but_itself():
    violations = []
    for path in AUDIO_LAYER.rglob("*.py"):
        for name in _imported_modules(path):
            top = name.split(".")[0]
            if top in ALLOWED and not name.startswith("embeddings.audio"):
                violations.append(f"{path.relative_to(REPO)} imports {name}")
    assert violations == []


def test_only_the_audio_layer_opens_audio_with_a_decoder_library():
    violations = []
    for layer in ALLOWED:
        for path in (REPO / layer).rglob("*.py"):
            if path.is_relative_to(AUDIO_LAYER):
                continue
            used = {n.split(".")[0] for n in _imported_modules(path)} & DECODER_LIBRARIES
            if used and str(path.relative_to(REPO)) not in DECODER_USERS:
                violations.append(f"{path.relative_to(REPO)} imports {sorted(used)}")
    assert violations == []


def test_no_reader_keeps_its_own_extension_list():
    """One list (embeddings.audio.AUDIO_EXTENSIONS): training once skipped what ingest read."""
    violations = []
    for layer in ALLOWED:
        for path in (REPO / layer).rglob("*.py"):
            if path.is_relative_to(AUDIO_LAYER):
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Set | ast.List | ast.Tuple):
                    names = {
                        e.value
                        for e in node.elts
                        if isinstance(e, ast.Constant) and isinstance(e.value, str)
                    }
                    if len(names & {".mp3", ".flac", ".wav", ".ogg", ".m4a"}) >= 3:
                        violations.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert violations == []


# Training, pretraining, teachers, evaluation and quantization live in
# embeddings/training/: analysing a library must never import them (nor their
# scikit-learn), so only the commands that train or evaluate may.
TRAINING = REPO / "embeddings" / "training"
TRAINING_USERS = {
    "ui/train_cli.py": "sonic train",
    "ui/pretrain_cli.py": "sonic pretrain",
    "ui/similarity_cli.py": "sonic evaluate-similarity",
}


def test_the_runtime_never_imports_the_training_package():
    violations = []
    for layer in ALLOWED:
        for path in (REPO / layer).rglob("*.py"):
            if path.is_relative_to(TRAINING):
                continue
            relative = str(path.relative_to(REPO))
            if relative in TRAINING_USERS:
                continue
            for name in _imported_modules(path):
                if name == "embeddings.training" or name.startswith("embeddings.training."):
                    violations.append(f"{relative} imports {name}")
    assert violations == []


def test_the_training_commands_import_training_only_when_run():
    """``sonic --help`` or ``sonic ingest`` must not pay for importing the trainer."""
    violations = []
    for relative in TRAINING_USERS:
        tree = ast.parse((REPO / relative).read_text())
        for node in tree.body:  # module level only; imports inside a command are fine
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "embeddings.training"
            ):
                violations.append(f"{relative}:{node.lineno} imports {node.module} at import time")
    assert violations == []


def test_importing_the_runtime_leaves_the_training_package_unloaded():
    import subprocess
    import sys

    code = (
        "import sys, ui.cli, ingest.pipeline, catalog.queries, embeddings.inference;"
        "print(sorted(m for m in sys.modules if m.startswith('embeddings.training')"
        " or m.startswith('sklearn')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_the_readme_walk_names_only_files_that_exist():
    """README's "How it works" walks the data path module by module: it must match the tree."""
    import re

    readme = (REPO / "README.md").read_text()
    walk = readme.split("\n## How it works", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([a-z_]+/[\w/*.]*)`", walk))
    assert len(named) > 20
    missing = sorted(p for p in named if not list(REPO.glob(p.rstrip("/"))))
    assert missing == []


def test_the_teacher_tools_shared_files_import_no_torch():
    """tools/teacher_files.py and teacher_score.py run in the musicnn environment too."""
    import subprocess
    import sys

    code = (
        "import sys; sys.path.insert(0, 'tools'); import teacher_files, teacher_score;"
        "print(sorted(m for m in ('torch', 'av', 'catalog', 'ingest') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
