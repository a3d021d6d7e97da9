"""Train/validation splits made by track, never by slice.

The source projects split 3-second slices at random, so slices of one clip sat on
both sides and the reported accuracy measured memory of that clip. Here every
split is a partition of *tracks*: stratified k-fold by genre, or a fixed split
read from a file (for example the fault-filtered GTZAN split, which also keeps
artists apart). Segments are only cut after a track has been assigned a side.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split


@dataclass(frozen=True)
class Fold:
    """Indices into the dataset's track list; ``test`` is held out for evaluation."""

    train: np.ndarray
    test: np.ndarray
    val: np.ndarray | None = None  # early-stopping tracks, when the split names them

    def check_disjoint(self) -> None:
        sides = [set(self.train.tolist()), set(self.test.tolist())]
        if self.val is not None:
            sides.append(set(self.val.tolist()))
        for i in range(len(sides)):
            for j in range(i + 1, len(sides)):
                if sides[i] & sides[j]:
                    raise AssertionError("a track appears on two sides of a split")


def stratified_folds(labels: np.ndarray, k: int = 5, seed: int = 0) -> list[Fold]:
    """k folds of tracks, each genre spread evenly; every track is tested once."""
    labels = np.asarray(labels)
    smallest = int(np.bincount(labels).min())
    if k < 2:
        raise ValueError("need at least 2 folds")
    if smallest < k:
        raise ValueError(f"the smallest genre has {smallest} tracks, fewer than k={k} folds")
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = [
        Fold(train=np.sort(tr), test=np.sort(te))
        for tr, te in splitter.split(np.zeros(len(labels)), labels)
    ]
    for fold in folds:
        fold.check_disjoint()
    return folds


def inner_validation(
    train: np.ndarray, labels: np.ndarray, fraction: float = 0.125, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Carve early-stopping tracks out of a training side, stratified by genre.

    Early stopping must not look at the tracks that are scored, or the reported
    accuracy is selected on the test set; so the test fold stays untouched.
    """
    train = np.asarray(train)
    n_genres = len(np.unique(labels[train]))
    n_val = max(n_genres, int(round(fraction * len(train))))
    if n_val >= len(train) or np.bincount(labels[train]).min() < 2:
        raise ValueError("too few training tracks per genre to hold out a validation set")
    fit, val = train_test_split(
        train, test_size=n_val, stratify=labels[train], random_state=seed, shuffle=True
    )
    return np.sort(fit), np.sort(val)


def _normalise_key(entry: str) -> str:
    return entry.strip().replace("\\", "/").lstrip("./")


def _read_list(path: Path) -> list[str]:
    return [
        _normalise_key(line)
        for line in path.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def read_split_file(path: Path) -> dict[str, list[str]]:
    """A fixed split: JSON ``{"train": [...], "test": [...], "val": [...]}`` or a folder.

    The folder form holds plain lists, one ``genre/file.wav`` per line, named
    ``train*.txt``, ``valid*.txt``/``val*.txt`` and ``test*.txt``: the layout of the
    fault-filtered GTZAN split (``train_filtered.txt`` ...). ``val`` is optional.
    """
    path = Path(path)
    parts: dict[str, list[str]] = {}
    if path.is_dir():
        for name, patterns in (("train", ["train*.txt"]), ("val", ["valid*.txt", "val*.txt"]),
                               ("test", ["test*.txt"])):  # fmt: skip
            for pattern in patterns:
                found = sorted(path.glob(pattern))
                if found:
                    parts[name] = [k for f in found for k in _read_list(f)]
                    break
    else:
        data = json.loads(path.read_text())
        for name in ("train", "val", "test"):
            alias = {"val": ["val", "valid", "validation"]}.get(name, [name])
            for key in alias:
                if key in data:
                    parts[name] = [_normalise_key(e) for e in data[key]]
    if "train" not in parts or "test" not in parts:
        raise ValueError(f"split {path} must name at least a train and a test list")
    return parts


def fold_from_split(keys: list[str], parts: dict[str, list[str]]) -> tuple[Fold, dict[str, int]]:
    """Map a split's entries onto the dataset's tracks (by ``genre/file``, else file name).

    Entries for tracks the dataset lacks are skipped and counted (GTZAN mini holds
    100 of the 1,000 GTZAN clips the filtered split names); tracks the split does
    not name are left out.
    """
    by_key = {k: i for i, k in enumerate(keys)}
    by_name: dict[str, int] = {}
    for i, k in enumerate(keys):
        by_name.setdefault(k.rsplit("/", 1)[-1], i)
    out: dict[str, np.ndarray] = {}
    missing: dict[str, int] = {}
    for name, entries in parts.items():
        idx = []
        for e in entries:
            hit = by_key.get(e, by_name.get(e.rsplit("/", 1)[-1]))
            if hit is None:
                missing[name] = missing.get(name, 0) + 1
            else:
                idx.append(hit)
        out[name] = np.array(sorted(set(idx)), dtype=np.int64)
    if not len(out["train"]) or not len(out["test"]):
        raise ValueError("the split names no track of this dataset on its train or test side")
    fold = Fold(train=out["train"], test=out["test"], val=out.get("val"))
    fold.check_disjoint()
    return fold, missing
