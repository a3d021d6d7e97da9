"""The classical baseline: 57 handcrafted features and scikit-learn classifiers.

The features are those of the widely used GTZAN ``features_30_sec.csv`` that the
source projects' MLP consumed: mean and variance of chroma, RMS, spectral
centroid, bandwidth and roll-off, zero-crossing rate, the harmonic and percussive
components (HPSS), 20 MFCCs, plus the tempo: 2*8 + 1 + 2*20 = 57 numbers per clip.

A CNN that cannot beat these on the same folds has learnt nothing the signal
processing did not already know, so they are trained alongside every comparison.
Hyper-parameters are chosen by an inner cross-validation on the training tracks
only, never on the fold being scored.
"""

from __future__ import annotations

import warnings

import numpy as np

FEATURE_NAMES: tuple[str, ...] = (
    *(f"{name}_{stat}" for name in ("chroma_stft", "rms", "spectral_centroid",
      "spectral_bandwidth", "rolloff", "zero_crossing_rate", "harmony", "perceptr")
      for stat in ("mean", "var")),
    "tempo",
    *(f"mfcc{i}_{stat}" for i in range(1, 21) for stat in ("mean", "var")),
)  # fmt: skip
assert len(FEATURE_NAMES) == 57

BASELINES: tuple[str, ...] = ("svm", "logreg", "mlp")


def handcrafted_features(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """The 57 features of one clip (float32), in the order of :data:`FEATURE_NAMES`."""
    import librosa

    y = np.asarray(audio, dtype=np.float32)
    if len(y) < 2048:
        y = np.pad(y, (0, 2048 - len(y)))
    sr = sample_rate
    harmonic, percussive = librosa.effects.hpss(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # silence: librosa warns on empty chroma/tempo
        frames = [
            librosa.feature.chroma_stft(y=y, sr=sr),
            librosa.feature.rms(y=y),
            librosa.feature.spectral_centroid(y=y, sr=sr),
            librosa.feature.spectral_bandwidth(y=y, sr=sr),
            librosa.feature.spectral_rolloff(y=y, sr=sr),
            librosa.feature.zero_crossing_rate(y),
            harmonic[None, :],
            percussive[None, :],
        ]
        tempo = float(np.atleast_1d(librosa.feature.tempo(y=y, sr=sr))[0])
        mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20)
    values: list[float] = []
    for f in frames:
        values += [float(np.mean(f)), float(np.var(f))]
    values.append(tempo)
    for row in mfcc:
        values += [float(np.mean(row)), float(np.var(row))]
    return np.nan_to_num(np.asarray(values, dtype=np.float32))


def make_baseline(name: str, seed: int = 0, inner_folds: int = 3):
    """A standardise-then-classify pipeline whose regularisation is tuned by inner CV."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    if name == "svm":
        model = SVC(kernel="rbf", probability=False)
        grid = {"svc__C": [1, 3, 10, 30, 100], "svc__gamma": ["scale", 0.01, 0.003]}
    elif name == "logreg":
        model = LogisticRegression(max_iter=5000)
        grid = {"logisticregression__C": [0.01, 0.1, 1, 10, 100]}
    elif name == "mlp":
        model = MLPClassifier(hidden_layer_sizes=(256, 128), max_iter=2000, random_state=seed)
        grid = {"mlpclassifier__alpha": [1e-3, 1e-2, 1e-1, 1.0]}
    else:
        raise ValueError(f"unknown baseline {name!r}; choose one of {BASELINES}")
    pipe = make_pipeline(StandardScaler(), model)
    cv = StratifiedKFold(n_splits=inner_folds, shuffle=True, random_state=seed)
    return GridSearchCV(pipe, grid, cv=cv, n_jobs=1)


def fit_predict_baseline(
    name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, seed: int = 0
) -> np.ndarray:
    """Clip-level predicted labels for ``x_test`` from a baseline fitted on ``x_train``."""
    inner = int(min(3, np.bincount(y_train).min()))
    if inner < 2:
        raise ValueError("baselines need at least two training tracks per genre")
    model = make_baseline(name, seed, inner_folds=inner)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter from small grids
        model.fit(x_train, y_train)
    return model.predict(x_test)


SPECTRAL_STATISTICS: tuple[str, ...] = tuple(
    f"{name}_{stat}"
    for name in (
        *(f"mfcc{i}" for i in range(1, 21)),
        "centroid", "bandwidth", "rolloff", "flatness", "zero_crossing_rate", "rms",
        *(f"contrast{i}" for i in range(1, 8)),
    )
    for stat in ("mean", "std")
)  # fmt: skip


def spectral_statistics(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """MFCC and spectral statistics of a whole track, the sound-alike baseline (66 floats).

    Means and standard deviations over frames of 20 MFCCs, spectral centroid,
    bandwidth, roll-off, flatness, zero-crossing rate, RMS and the 7 spectral
    contrast bands: the classic timbre summary that content-based music
    similarity used before learnt embeddings. One STFT is shared by all of them.
    Compared with cosine after z-scoring over the tracks evaluated together.
    """
    import librosa

    y = np.asarray(audio, dtype=np.float32)
    if len(y) < 2048:
        y = np.pad(y, (0, 2048 - len(y)))
    sr = sample_rate
    magnitude = np.abs(librosa.stft(y, n_fft=2048, hop_length=512))
    power = magnitude**2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # silent stretches make librosa warn
        mel = librosa.feature.melspectrogram(S=power, sr=sr, n_mels=128)
        rows = [
            librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=20),
            librosa.feature.spectral_centroid(S=magnitude, sr=sr),
            librosa.feature.spectral_bandwidth(S=magnitude, sr=sr),
            librosa.feature.spectral_rolloff(S=magnitude, sr=sr),
            librosa.feature.spectral_flatness(S=magnitude),
            librosa.feature.zero_crossing_rate(y, frame_length=2048, hop_length=512),
            librosa.feature.rms(S=magnitude, frame_length=2048),
            librosa.feature.spectral_contrast(S=magnitude, sr=sr),
        ]
    values = np.concatenate(rows, axis=0)
    out = np.stack([values.mean(axis=1), values.std(axis=1)], axis=1).reshape(-1)
    return np.nan_to_num(out.astype(np.float32))
