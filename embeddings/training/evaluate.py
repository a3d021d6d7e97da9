"""Clip-level evaluation: one prediction per held-out track, never per slice.

A track is cut into segments exactly as ingest cuts it, every segment is scored,
and the probabilities are aggregated (mean by default, as ingest does) into one
answer per track. Accuracy, macro-F1 and per-genre recall are computed over those
answers, so each track counts once however long it is.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from embeddings.inference import aggregate


@torch.inference_mode()
def segment_probabilities(
    network: nn.Module,
    segments: list[np.ndarray],
    batch_size: int = 64,
    dtype: torch.dtype = torch.float32,
    channels_last: bool = True,
) -> list[np.ndarray]:
    """Softmax probabilities of every segment of every track: one (n_seg, n_genres) each."""
    network.eval()
    flat = np.concatenate(segments, axis=0)
    bounds = np.cumsum([0, *(len(s) for s in segments)])
    outs = []
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for i in range(0, len(flat), batch_size):
        x = torch.from_numpy(flat[i : i + batch_size]).unsqueeze(1).contiguous(memory_format=fmt)
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            logits = network(x)
        outs.append(torch.softmax(logits.float(), dim=1).numpy())
    probs = np.concatenate(outs, axis=0)
    return [probs[bounds[j] : bounds[j + 1]] for j in range(len(segments))]


def clip_probabilities(per_segment: list[np.ndarray], method: str = "mean") -> np.ndarray:
    """(n_tracks, n_genres): each track's segment probabilities aggregated into one row."""
    return np.stack([aggregate(p, method) for p in per_segment])


def clip_metrics(y_true: np.ndarray, y_pred: np.ndarray, genres: list[str]) -> dict:
    """Accuracy, macro-F1, per-genre recall and the confusion matrix of clip predictions."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

    labels = list(range(len(genres)))
    recall = recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    return {
        "n_tracks": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        ),
        "per_genre_recall": {g: float(r) for g, r in zip(genres, recall, strict=True)},
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def summarise(folds: list[dict], genres: list[str]) -> dict:
    """Mean and spread across folds, plus the pooled confusion matrix."""
    acc = np.array([f["accuracy"] for f in folds])
    f1 = np.array([f["macro_f1"] for f in folds])
    confusion = np.sum([np.array(f["confusion"]) for f in folds], axis=0)
    pooled_recall = confusion.diagonal() / np.maximum(1, confusion.sum(axis=1))
    return {
        "folds": len(folds),
        "accuracy_mean": float(acc.mean()),
        "accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
        "accuracy_min": float(acc.min()),
        "accuracy_max": float(acc.max()),
        "macro_f1_mean": float(f1.mean()),
        "macro_f1_std": float(f1.std(ddof=1)) if len(f1) > 1 else 0.0,
        "per_genre_recall": {g: float(r) for g, r in zip(genres, pooled_recall, strict=True)},
        "confusion": confusion.tolist(),
    }
