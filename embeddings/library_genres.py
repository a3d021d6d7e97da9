"""A genre classifier learnt from a library's own tags, over the catalog's embeddings.

Ten GTZAN clips per genre cannot teach a genre; a personal library of tagged tracks
can (issue 24). This is a linear head on the 512-d embeddings: standardised
features, a class-weighted multinomial logistic regression (so a library of 400
rock and 20 jazz tracks does not learn "always rock"), probabilities calibrated by
temperature scaling, and an abstention threshold: below it the answer is
"uncertain" instead of a confident wrong genre.

Everything it reports is cross-validated *by album* (tracks of one album share a
sound, a master and usually a tag; a split by track would measure album
recognition). The temperature, the regularisation and the threshold are all chosen
on out-of-fold predictions. Pure numpy and scikit-learn on arrays: nothing here
knows of files or of the catalog.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

C_GRID = (0.01, 0.1, 1.0)  # inverse L2 strength, chosen by grouped-CV log-loss
MIN_PREDICTIONS = 5  # the threshold must rest on at least this many confident answers


class NotEnoughTags(ValueError):
    """Too few tagged tracks (or genres, or albums) to learn and check a genre model."""


@dataclass
class LinearGenreHead:
    """Standardise, linear map, divide by the temperature, softmax."""

    genres: list[str]
    coef: np.ndarray  # (n_genres, dim)
    intercept: np.ndarray  # (n_genres,)
    mean: np.ndarray  # (dim,)
    scale: np.ndarray  # (dim,)
    temperature: float = 1.0

    def logits(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, dtype=np.float32) - self.mean) / self.scale
        return z @ self.coef.T + self.intercept

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        return softmax(self.logits(x) / self.temperature)


@dataclass
class LearntGenres:
    """A fitted head plus what cross-validation says of it."""

    head: LinearGenreHead
    threshold: float  # answer only at this calibrated confidence or more
    target_precision: float
    metrics: dict  # per genre: cv precision/recall (and at the threshold); overall figures
    left_out: dict[str, dict] = field(default_factory=dict)  # genre -> tracks, albums, why
    oof_probabilities: np.ndarray | None = None  # (n_used, n_genres), calibrated
    used: np.ndarray | None = None  # indices into the inputs that trained it


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    return mean.astype(np.float32), np.where(scale > 1e-6, scale, 1.0).astype(np.float32)


def fit_head(x: np.ndarray, y: np.ndarray, n_genres: int, c: float = 0.1) -> LinearGenreHead:
    """Class-weighted logistic regression on standardised ``x``; ``y`` indexes genres.

    A genre absent from ``y`` (a fold that holds all its albums out) gets a logit of
    -1e4, so it is never predicted there rather than shifting the others' columns.
    """
    from sklearn.linear_model import LogisticRegression

    mean, scale = _standardiser(x)
    z = (x - mean) / scale
    present = np.unique(y)
    coef = np.zeros((n_genres, x.shape[1]), dtype=np.float32)
    intercept = np.full(n_genres, -1e4, dtype=np.float32)
    if len(present) == 1:
        intercept[present[0]] = 0.0
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter on tiny folds
            model = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
            model.fit(z, y)
        coef[model.classes_] = model.coef_ if len(present) > 2 else _binary(model.coef_)
        intercept[model.classes_] = (
            model.intercept_ if len(present) > 2 else _binary(model.intercept_[:, None])[:, 0]
        )
    return LinearGenreHead([str(i) for i in range(n_genres)], coef, intercept, mean, scale)


def _binary(w: np.ndarray) -> np.ndarray:
    """sklearn's one row for two classes as two softmax rows (-w/2, +w/2)."""
    return np.concatenate([-w / 2, w / 2], axis=0)


def grouped_folds(y: np.ndarray, groups: np.ndarray, n_folds: int = 5, seed: int = 0):
    """Train/test index pairs with no album on both sides, genres spread across folds."""
    from sklearn.model_selection import StratifiedGroupKFold

    k = min(n_folds, len(np.unique(groups)))
    if k < 2:
        raise NotEnoughTags("cross-validation needs tracks from at least two albums")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "least populated class has only n members"
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        return list(splitter.split(np.zeros(len(y)), y, groups))


def out_of_fold_logits(x, y, folds, n_genres: int, c: float) -> np.ndarray:
    """Each track's logits from the model of the fold that held its album out."""
    out = np.zeros((len(y), n_genres), dtype=np.float64)
    for train, test in folds:
        out[test] = fit_head(x[train], y[train], n_genres, c).logits(x[test])
    return out


def _nll(logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    p = softmax(logits / temperature)[np.arange(len(y)), y]
    return float(-np.log(np.clip(p, 1e-12, None)).mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood (golden-section on log T)."""
    lo, hi = np.log(0.05), np.log(20.0)
    ratio = (np.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = _nll(logits, y, np.exp(a)), _nll(logits, y, np.exp(b))
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = _nll(logits, y, np.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = _nll(logits, y, np.exp(b))
    return float(np.exp((lo + hi) / 2))


def expected_calibration_error(probabilities: np.ndarray, y: np.ndarray, bins: int = 15) -> dict:
    """ECE over equal-width confidence bins, and the reliability diagram's points."""
    conf = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    ece, diagram = 0.0, []
    for b in range(bins):
        mask = which == b
        if not mask.any():
            continue
        acc, mean_conf = float(correct[mask].mean()), float(conf[mask].mean())
        ece += mask.mean() * abs(acc - mean_conf)
        diagram.append({"bin": [float(edges[b]), float(edges[b + 1])], "tracks": int(mask.sum()),
                        "confidence": mean_conf, "accuracy": acc})  # fmt: skip
    return {"ece": float(ece), "reliability": diagram}


def choose_threshold(
    confidence: np.ndarray, correct: np.ndarray, target: float
) -> tuple[float, float, float]:
    """The lowest confidence at which answers are right at least ``target`` of the time.

    Returns (threshold, precision there, coverage: the share answered). With no such
    point (at least :data:`MIN_PREDICTIONS` answers) the threshold is above every
    confidence: the model then always says "uncertain", and the report says so.
    """
    order = np.argsort(-confidence, kind="stable")
    conf, hits = confidence[order], correct[order].astype(np.float64)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    # a threshold answers every track at or above it: only the last of a run of ties counts
    last_of_tie = np.r_[conf[1:] < conf[:-1], True]
    ok = (precision >= target) & last_of_tie & (np.arange(1, len(hits) + 1) >= MIN_PREDICTIONS)
    if not ok.any():
        return float(min(1.0, conf.max() + 1e-6) if len(conf) else 1.0), 0.0, 0.0
    k = int(np.flatnonzero(ok).max())
    return float(conf[k]), float(precision[k]), float((k + 1) / len(conf))


def per_genre_metrics(
    probabilities: np.ndarray, y: np.ndarray, genres: list[str], threshold: float
) -> dict:
    """Cross-validated precision and recall per genre, plain and at the threshold."""
    pred = probabilities.argmax(axis=1)
    conf = probabilities.max(axis=1)
    answered = conf >= threshold
    out = {}
    for g, name in enumerate(genres):
        predicted, actual = pred == g, y == g
        tp = int((predicted & actual).sum())
        tp_t = int((predicted & actual & answered).sum())
        out[name] = {
            "tracks": int(actual.sum()),
            "precision": tp / max(1, int(predicted.sum())),
            "recall": tp / max(1, int(actual.sum())),
            "precision_at_threshold": tp_t / max(1, int((predicted & answered).sum())),
            "answered_at_threshold": int((actual & answered).sum()),
        }
    return out


def learn_genres(
    x: np.ndarray,
    labels: list[str | None],
    groups: list[str],
    min_tracks: int = 8,
    target_precision: float = 0.9,
    n_folds: int = 5,
    seed: int = 0,
) -> LearntGenres:
    """Fit the library model from tagged embeddings; ``labels[i]`` None: untagged.

    Genres with fewer than ``min_tracks`` tracks, or all on one album, are left out
    (reported). Raises :class:`NotEnoughTags` with what is missing when fewer than
    two genres remain.
    """
    x = np.asarray(x, dtype=np.float32)
    groups_arr = np.asarray(groups, dtype=object)
    counts = Counter(label for label in labels if label)
    albums: dict[str, set] = {}
    for label, group in zip(labels, groups, strict=True):
        if label:
            albums.setdefault(label, set()).add(group)
    kept = sorted(g for g, n in counts.items() if n >= min_tracks and len(albums[g]) >= 2)
    left_out = {
        g: {"tracks": n, "albums": len(albums[g]),
            "reason": f"fewer than {min_tracks} tracks" if n < min_tracks else "one album only"}
        for g, n in sorted(counts.items()) if g not in kept
    }  # fmt: skip
    if len(kept) < 2:
        have = ", ".join(f"{g} ({n})" for g, n in counts.most_common(8)) or "none"
        raise NotEnoughTags(
            f"learning genres needs at least two genres with {min_tracks} or more tagged "
            f"tracks on two or more albums each; the tagged tracks' genres are: {have}"
        )
    index = {g: i for i, g in enumerate(kept)}
    used = np.array([i for i, label in enumerate(labels) if label in index], dtype=np.int64)
    xu, yu, gu = x[used], np.array([index[labels[i]] for i in used]), groups_arr[used]
    folds = grouped_folds(yu, gu, n_folds, seed)
    scores = {}
    for c in C_GRID:
        logits = out_of_fold_logits(xu, yu, folds, len(kept), c)
        temperature = fit_temperature(logits, yu)
        scores[c] = (_nll(logits, yu, temperature), logits, temperature)
    best_c = min(scores, key=lambda c: scores[c][0])
    _, logits, temperature = scores[best_c]
    raw = softmax(logits)
    calibrated = softmax(logits / temperature)
    correct = calibrated.argmax(axis=1) == yu
    threshold, precision_at, coverage = choose_threshold(
        calibrated.max(axis=1), correct, target_precision
    )
    head = fit_head(xu, yu, len(kept), best_c)
    head.genres, head.temperature = list(kept), temperature
    metrics = {
        "per_genre": per_genre_metrics(calibrated, yu, kept, threshold),
        "accuracy": float(correct.mean()),
        "precision_at_threshold": precision_at,
        "coverage_at_threshold": coverage,
        "ece_before_temperature": expected_calibration_error(raw, yu)["ece"],
        "ece": expected_calibration_error(calibrated, yu)["ece"],
        "temperature": temperature,
        "c": best_c,
        "folds": len(folds),
        "albums": int(len(np.unique(gu))),
    }
    return LearntGenres(
        head, threshold, target_precision, metrics, left_out, calibrated, used
    )
