"""Matplotlib figures for the web UI (presentation only; the numbers come from below).

Figures are built with ``matplotlib.figure.Figure`` (no pyplot state), so Gradio's
worker threads can draw at the same time.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ingest.clip import Preview

GENRE_COLOURS = {
    "blues": "#1f77b4", "classical": "#aec7e8", "country": "#ff7f0e", "disco": "#ffbb78",
    "hiphop": "#2ca02c", "jazz": "#98df8a", "metal": "#d62728", "pop": "#ff9896",
    "reggae": "#9467bd", "rock": "#8c564b",
}  # fmt: skip


def colour(genre: str | None) -> str:
    if genre in GENRE_COLOURS:
        return GENRE_COLOURS[genre]
    palette = list(GENRE_COLOURS.values())
    return palette[sum(map(ord, genre or "")) % len(palette)]


def waveform_and_mel(view: Preview, title: str = "") -> Figure:
    fig = Figure(figsize=(9, 4.2), layout="constrained")
    wave, mel = fig.subplots(2, 1, sharex=True, height_ratios=[1, 2])
    t = np.linspace(0, view.seconds_shown, len(view.envelope_max), endpoint=False)
    wave.fill_between(t, view.envelope_min, view.envelope_max, color="#4c72b0", linewidth=0)
    wave.set_ylim(-1.05, 1.05)
    wave.set_ylabel("amplitude")
    wave.set_title(title or "waveform and mel spectrogram")
    if view.mel_db.size:
        mel.imshow(
            view.mel_db, origin="lower", aspect="auto", cmap="magma",
            extent=(0, view.seconds_shown, 0, view.mel_db.shape[0]),
        )  # fmt: skip
    mel.set_ylabel("mel band")
    mel.set_xlabel("seconds" + (" (start of the track)" if view.seconds_shown < view.duration_s
                                else ""))  # fmt: skip
    return fig


def genre_bars(probabilities: dict[str, float], k: int, title: str = "") -> Figure:
    top = sorted(probabilities.items(), key=lambda item: -item[1])[:k]
    fig = Figure(figsize=(6, 0.45 * max(len(top), 2) + 0.9), layout="constrained")
    ax = fig.subplots()
    names = [g for g, _ in top][::-1]
    values = [p for _, p in top][::-1]
    bars = ax.barh(names, values, color=[colour(g) for g in names])
    for bar, value in zip(bars, values, strict=True):
        ax.text(bar.get_width() + 0.01, bar.get_y() + bar.get_height() / 2, f"{value:.0%}",
                va="center", fontsize=9)  # fmt: skip
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("probability")
    ax.set_title(title or f"top {len(top)} genres")
    return fig


def timeline(segments: list[dict], title: str = "") -> Figure:
    fig = Figure(figsize=(9, 1.7), layout="constrained")
    ax = fig.subplots()
    seen = {}
    for seg in segments:
        width = seg["end_s"] - seg["start_s"]
        bar = ax.barh(0, width, left=seg["start_s"], height=seg["confidence"],
                      color=colour(seg["genre"]), edgecolor="white", linewidth=0.5)  # fmt: skip
        seen.setdefault(seg["genre"], bar)
    ax.set_yticks([])
    ax.set_ylim(-0.55, 0.55)
    ax.set_xlabel("seconds (bar height: confidence)")
    ax.set_title(title or "genre per 3-second segment")
    if seen:
        ax.legend(seen.values(), seen.keys(), loc="upper left", bbox_to_anchor=(1.0, 1.0),
                  fontsize=8, frameon=False)  # fmt: skip
    return fig
