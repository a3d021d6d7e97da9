"""Pictures and tables of a training run, and the exploratory dataset report.

matplotlib runs headless (Agg); every function writes a file and returns its path,
so the CLI and the model card can link them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_png(confusion: np.ndarray, genres: list[str], path: Path, title: str = "") -> Path:
    """Counts with row-normalised shading: rows are true genres, columns predictions."""
    plt = _pyplot()
    confusion = np.asarray(confusion)
    rows = confusion / np.maximum(1, confusion.sum(axis=1, keepdims=True))
    size = max(4.0, 0.45 * len(genres) + 1.5)
    fig, ax = plt.subplots(figsize=(size, size * 0.9), dpi=80)
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(genres)), genres, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(genres)), genres, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(genres)):
        for j in range(len(genres)):
            if confusion[i, j]:
                ax.text(j, i, int(confusion[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if rows[i, j] > 0.5 else "black")  # fmt: skip
    if title:
        ax.set_title(title, fontsize=9)
    return _save(plt, fig, path)


def _save(plt, fig, path: Path) -> Path:
    """Lay out, write and close a figure (closing frees matplotlib's memory for it)."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def learning_curves_png(histories: list[list[dict]], path: Path, title: str = "") -> Path:
    """Training and validation loss (and validation segment accuracy) of every fold."""
    plt = _pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=80)
    for k, history in enumerate(histories, start=1):
        epochs = [h["epoch"] for h in history]
        line = ax_loss.plot(epochs, [h["train_loss"] for h in history], label=f"fold {k} train")
        color = line[0].get_color()
        if history and history[0]["val_loss"] is not None:
            ax_loss.plot(epochs, [h["val_loss"] for h in history], "--", color=color,
                         label=f"fold {k} val")  # fmt: skip
            ax_acc.plot(epochs, [h["val_accuracy"] for h in history], color=color,
                        label=f"fold {k}")  # fmt: skip
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss (train: mixup + smoothing)")
    ax_loss.legend(fontsize=6, ncol=2)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("validation segment accuracy")
    ax_acc.set_ylim(0, 1)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(plt, fig, path)


def comparison_table(summary: dict[str, dict]) -> str:
    """Markdown table of clip-level results, best mean accuracy first."""
    lines = [
        "| model | inputs | clip accuracy (mean ± std) | fold range | macro-F1 | s / fold |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in sorted(summary.items(), key=lambda kv: -kv[1]["accuracy_mean"]):
        inputs = "57 handcrafted features" if s.get("kind") == "handcrafted-57" else "log-mel"
        lines.append(
            f"| {name} | {inputs} | {100 * s['accuracy_mean']:.1f}% ± {100 * s['accuracy_std']:.1f}"
            f" | {100 * s['accuracy_min']:.0f}–{100 * s['accuracy_max']:.0f}%"
            f" | {s['macro_f1_mean']:.3f} | {s.get('seconds_per_fold', 0):.0f} |"
        )
    return "\n".join(lines) + "\n"


def dataset_report(
    dataset_root: Path,
    out_dir: Path,
    fmt: str = "md",
    examples_per_genre: int = 1,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> dict:
    """Genre counts, durations, sample rates and example mel spectrograms per genre.

    Reads only file headers for the statistics (fast on big datasets) and decodes
    ``examples_per_genre`` files per genre for the pictures. Writes ``report.md`` or
    ``report.html`` plus PNGs into ``out_dir``; returns the numbers as a dict.
    """
    from embeddings.audio import audio_info
    from embeddings.frontend import FrontendConfig
    from embeddings.training.dataset import discover, load_audio, log_power

    plt = _pyplot()
    dataset = discover(dataset_root)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = FrontendConfig(band_limit_hz=None)  # the data as recorded, up to Nyquist
    durations: dict[str, list[float]] = {g: [] for g in dataset.genres}
    rates: dict[int, int] = {}
    channels: dict[int, int] = {}
    unreadable: list[str] = []
    items = progress(dataset.tracks) if progress else dataset.tracks
    for track in items:
        try:
            info = audio_info(track.path)
        except Exception:
            unreadable.append(track.key)
            continue
        durations[track.genre].append(info.duration_s or 0.0)
        rates[info.sample_rate] = rates.get(info.sample_rate, 0) + 1
        channels[info.channels] = channels.get(info.channels, 0) + 1

    counts = dataset.counts()
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(counts)), 3), dpi=80)
    ax.bar(list(counts), list(counts.values()), color="#4477aa")
    ax.set_ylabel("tracks")
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    fig.savefig(out_dir / "genre_counts.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(counts)), 3), dpi=80)
    ax.boxplot([durations[g] or [0.0] for g in dataset.genres])
    ax.set_xticks(range(1, len(dataset.genres) + 1), dataset.genres, rotation=45)
    ax.set_ylabel("duration (s)")
    fig.tight_layout()
    fig.savefig(out_dir / "durations.png")
    plt.close(fig)

    n = len(dataset.genres)
    cols = min(5, n)
    rows = int(np.ceil(n * examples_per_genre / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.4 * rows), dpi=80, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    slot = 0
    for genre in dataset.genres:
        for track in [t for t in dataset.tracks if t.genre == genre][:examples_per_genre]:
            try:
                audio, _, _ = load_audio(track.path, config.sample_rate)
            except Exception:
                continue
            spec = log_power(audio[: config.segment_samples], config)
            ax = axes.flat[slot]
            ax.imshow(spec - spec.max(), origin="lower", aspect="auto", cmap="magma", vmin=-80)
            ax.set_title(f"{genre}: {track.path.name}", fontsize=8)
            slot += 1
    fig.suptitle("log-mel spectrograms, first 3 s (128 bands, dB)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out_dir / "example_spectrograms.png")
    plt.close(fig)

    all_d = [d for ds in durations.values() for d in ds]
    data = {
        "dataset": str(Path(dataset_root).resolve()),
        "tracks": len(dataset.tracks),
        "genres": counts,
        "duration_s": {
            "total": float(np.sum(all_d)) if all_d else 0.0,
            "min": float(np.min(all_d)) if all_d else 0.0,
            "median": float(np.median(all_d)) if all_d else 0.0,
            "max": float(np.max(all_d)) if all_d else 0.0,
            "per_genre_mean": {g: float(np.mean(d)) if d else 0.0 for g, d in durations.items()},
        },
        "sample_rates": {str(k): v for k, v in sorted(rates.items())},
        "channels": {str(k): v for k, v in sorted(channels.items())},
        "unreadable": unreadable,
    }
    page = _render_report(data, fmt)
    name = "report.html" if fmt == "html" else "report.md"
    (out_dir / name).write_text(page)
    data["report"] = str(out_dir / name)
    return data


def _render_report(data: dict, fmt: str) -> str:
    d = data["duration_s"]
    md = [
        f"# Dataset report: {Path(data['dataset']).name}",
        "",
        f"{data['tracks']} tracks in {len(data['genres'])} genres; "
        f"{d['total'] / 60:.1f} minutes of audio "
        f"(shortest {d['min']:.1f} s, median {d['median']:.1f} s, longest {d['max']:.1f} s).",
        "",
        "| genre | tracks | mean duration (s) |",
        "|---|---|---|",
        *(f"| {g} | {c} | {d['per_genre_mean'][g]:.1f} |" for g, c in data["genres"].items()),
        "",
        "Sample rates: " + ", ".join(f"{k} Hz × {v}" for k, v in data["sample_rates"].items()),
        "",
        "Channels: " + ", ".join(f"{k} × {v}" for k, v in data["channels"].items()),
        "",
        f"Unreadable files: {len(data['unreadable'])}"
        + (": " + ", ".join(data["unreadable"][:20]) if data["unreadable"] else ""),
        "",
        "![genre counts](genre_counts.png)",
        "",
        "![durations](durations.png)",
        "",
        "![example spectrograms](example_spectrograms.png)",
        "",
    ]
    text = "\n".join(md)
    if fmt != "html":
        return text
    import html

    body = []
    table: list[str] = []
    for line in md:
        if line.startswith("|"):
            if set(line) <= {"|", "-"}:
                continue
            cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
            table.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
            continue
        if table:
            body.append("<table border='1' cellpadding='4'>" + "".join(table) + "</table>")
            table = []
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("!["):
            alt, src = line[2:].split("](")
            body.append(f"<p><img src='{html.escape(src[:-1])}' alt='{html.escape(alt)}'></p>")
        elif line:
            body.append(f"<p>{html.escape(line)}</p>")
    return "<!doctype html><meta charset='utf-8'><title>Dataset report</title>\n" + "\n".join(body)
