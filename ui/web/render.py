"""HTML for the web UI: track links, lists and small inline SVG charts.

Why HTML and SVG rather than matplotlib figures and Gradio tables: every title,
sound-alike, map point and "why similar" entry must be a link that opens that track
(``player.js`` turns ``a.sonic-open`` clicks into navigation with a per-track URL),
play buttons must feed the one player, and the charts must scale to a phone's width.
An SVG of a few hundred points is also drawn in well under a millisecond; a
matplotlib figure took ~0.2 s, most of the first paint of a track.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from catalog.paths import display_path
from ui.figures import colour


def esc(value) -> str:
    """HTML-escaped text, undecodable file-name bytes shown as ``\\xNN`` (never a failure)."""
    return html.escape(display_path("" if value is None else str(value)), quote=True)


def name(t: dict) -> str:
    """What a track is called on screen: artist - title, else its (displayable) file name."""
    who = " - ".join(x for x in (t.get("artist"), t.get("title")) if x)
    return display_path(who or Path(t["path"]).name)


def title_of(t: dict) -> str:
    return display_path(t.get("title") or Path(t["path"]).name)


def track_link(t: dict, text: str | None = None) -> str:
    """A link that opens track ``t`` in the Track tab (and is a real ``?track=`` URL)."""
    label = esc(text if text is not None else title_of(t))
    tid = int(t["id"])
    return f"<a class='sonic-open' href='?track={tid}' data-track='{tid}'>{label}</a>"


def play_button(t: dict, label: str = "▶") -> str:
    """A button that plays track ``t`` in the one player (``player.js``)."""
    return (
        f"<button class='sonic-play' type='button' data-track='{int(t['id'])}' "
        f"data-title='{esc(name(t))}' title='play'>{label}</button>"
    )


def _filter_link(kind: str, value: str | None) -> str:
    if not value:
        return ""
    return (
        f"<a class='sonic-filter' href='#' data-kind='{kind}' data-value='{esc(value)}'>"
        f"{esc(value)}</a>"
    )


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


def browsed_genre(t: dict) -> tuple[str, float | None]:
    """The genre browsing goes by: the library model's once fitted, else the shipped head's."""
    library = (t.get("genre_views") or {}).get("library")
    if library is not None:
        return library["genre"], library["confidence"]
    return t.get("genre") or "", t.get("confidence")


def genre_views_line(views: dict | None) -> str:
    """"tag · library · GTZAN" for the track page; "uncertain" where a head abstains."""
    if not views:
        return ""
    tag = views.get("tag")
    parts = [f"tag <b>{esc(', '.join(tag['genres']) or '-')}</b>" if tag else "tag (not read)"]
    for key, label in (("library", "library model"), ("gtzan", "GTZAN model")):
        v = views.get(key)
        if v is None:
            parts.append(f"{label} -")
        elif v["uncertain"]:
            parts.append(f"{label} <b>uncertain</b> (best guess {esc(v['predicted'])} "
                         f"{v['confidence']:.0%})")  # fmt: skip
        else:
            parts.append(f"{label} <b>{esc(v['genre'])}</b> ({v['confidence']:.0%})")
    return "genre: " + " · ".join(parts)


def tracks_table(rows: list[dict]) -> str:
    """The library listing: title, artist and album are links; fits 1400 px, wraps on a phone."""
    if not rows:
        return "<p class='sonic-note'>No tracks here.</p>"
    body = "".join(
        "<tr>"
        f"<td class='c-play'>{play_button(t)}</td>"
        f"<td class='c-title'>{track_link(t)}</td>"
        f"<td class='c-artist'>{_filter_link('artist', t.get('artist'))}</td>"
        f"<td class='c-album'>{_filter_link('album', t.get('album'))}</td>"
        f"<td class='c-genre'>{esc(browsed_genre(t)[0])}</td>"
        f"<td class='c-conf'>{_percent(browsed_genre(t)[1])}</td>"
        f"<td class='c-status'>{esc(t['status'])}</td>"
        "</tr>"
        for t in rows
    )
    head = (
        "<tr><th></th><th>title</th><th>artist</th><th>album</th><th>genre</th>"
        "<th>conf.</th><th>status</th></tr>"
    )
    return f"<table class='sonic-list sonic-tracks'>{head}{body}</table>"


def neighbour_list(rows: list[dict], empty: str) -> str:
    """Sound-alikes: score, a link to the track, its genre, a play button, "why?"."""
    if not rows:
        return f"<p class='sonic-note'>{esc(empty)}</p>"
    body = "".join(
        f"<li><span class='score'>{t['score']:.3f}</span> {play_button(t)} "
        f"{track_link(t, name(t))} <span class='genre'>{esc(t.get('genre'))}</span></li>"
        for t in rows
    )
    return f"<ol class='sonic-similar'>{body}</ol>"


def waveform_svg(overview: np.ndarray, duration_s: float | None) -> str:
    """The stored (2, n) min/max overview as a filled SVG band, full width at any size."""
    lo, hi = overview
    n = len(lo)
    if n == 0:
        return "<p class='sonic-note'>No waveform overview stored.</p>"
    xs = np.arange(n, dtype=np.float64)
    top = " ".join(f"{x:.0f},{50 - 48 * v:.1f}" for x, v in zip(xs, hi, strict=True))
    bottom = " ".join(f"{x:.0f},{50 - 48 * v:.1f}" for x, v in zip(xs[::-1], lo[::-1], strict=True))
    scale = ""
    if duration_s:  # as HTML under the plot: SVG text would stretch with the width
        marks = np.linspace(0, duration_s, 5)
        scale = "<div class='sonic-wave-scale'>" + "".join(
            f"<span>{int(t // 60)}:{int(t % 60):02d}</span>" for t in marks
        ) + "</div>"
    return (
        f"<svg class='sonic-wave' viewBox='0 0 {n} 100' preserveAspectRatio='none' "
        f"role='img' aria-label='waveform'><polygon points='{top} {bottom}'/></svg>{scale}"
    )


def genre_bars(probabilities: dict[str, float], k: int) -> str:
    """Top-``k`` genres as labelled HTML bars (legible at 390 px)."""
    top = sorted(probabilities.items(), key=lambda item: -item[1])[: max(1, int(k))]
    rows = "".join(
        f"<div class='bar'><span class='g'>{esc(g)}</span>"
        f"<span class='track'><span class='fill' style='width:{p * 100:.1f}%;"
        f"background:{colour(g)}'></span></span><span class='p'>{p:.0%}</span></div>"
        for g, p in top
    )
    return f"<div class='sonic-bars'>{rows}</div>"


def timeline_svg(segments: list[dict]) -> str:
    """The genre of each segment as coloured blocks (height: confidence), with a legend."""
    if not segments:
        return ""
    end = max(s["end_s"] for s in segments) or 1.0
    blocks, seen = [], {}
    for s in segments:
        x, w = s["start_s"] / end * 1000, (s["end_s"] - s["start_s"]) / end * 1000
        h = 40 * s["confidence"]
        blocks.append(
            f"<rect x='{x:.1f}' y='{45 - h:.1f}' width='{max(w - 0.5, 0.5):.1f}' "
            f"height='{h:.1f}' fill='{colour(s['genre'])}'><title>{s['start_s']:.0f}-"
            f"{s['end_s']:.0f} s: {esc(s['genre'])} {s['confidence']:.0%}</title></rect>"
        )
        seen.setdefault(s["genre"], colour(s["genre"]))
    legend = " ".join(
        f"<span><i style='background:{c}'></i>{esc(g)}</span>" for g, c in seen.items()
    )
    return (
        f"<svg class='sonic-timeline' viewBox='0 0 1000 46' preserveAspectRatio='none' "
        f"role='img' aria-label='genre per segment'>{''.join(blocks)}</svg>"
        f"<div class='sonic-legend'>{legend} · 0-{end:.0f} s, bar height: confidence</div>"
    )


def heatmap_panel(track_id: int, shares: dict[str, float] | None) -> str:
    """The Grad-CAM image, full width, with its colour scale and the labelled bands' shares."""
    scale = (
        "<div class='sonic-scale'><span>less</span><i></i><span>more relevant to the "
        "prediction</span></div>"
    )
    bands = ""
    if shares:
        bands = (
            "<div class='sonic-bands'>"
            + "".join(
                f"<span>{label}: <b>{shares[key]:.0%}</b></span>"
                for key, label in (
                    ("high", "high / vocals, cymbals (> 4 kHz)"),
                    ("mid", "mid (250 Hz - 4 kHz)"),
                    ("low", "low / bass (< 250 Hz)"),
                )
            )
            + "</div>"
        )
    return (
        f"<img class='sonic-heatmap' src='/tracks/{int(track_id)}/heatmap.png' "
        f"alt='Grad-CAM heatmap'>{scale}{bands}"
    )


def map_svg(points: list[dict], size: int = 600) -> str:
    """The library map: one clickable dot per track (a link that opens it), tooltip = tags."""
    if not points:
        return "<p class='sonic-note'>No indexed tracks to map yet.</p>"
    xs = np.array([p["x"] for p in points], dtype=np.float64)
    ys = np.array([p["y"] for p in points], dtype=np.float64)

    def scale(v: np.ndarray) -> np.ndarray:
        lo, hi = float(v.min()), float(v.max())
        return (v - lo) / (hi - lo) if hi > lo else np.full_like(v, 0.5)

    sx, sy = 20 + scale(xs) * (size - 40), size - 20 - scale(ys) * (size - 40)
    dots = []
    for p, x, y in zip(points, sx, sy, strict=True):
        words = [w for w in (p.get("artist"), p.get("title"), p.get("album")) if w]
        tip = " - ".join(display_path(w) for w in words) or f"track {p['id']}"
        tip += f" ({p.get('genre') or 'unknown genre'})"
        dots.append(
            f"<a class='sonic-open' href='?track={int(p['id'])}' data-track='{int(p['id'])}'>"
            f"<circle cx='{x:.1f}' cy='{y:.1f}' r='7' fill='{colour(p.get('genre'))}'>"
            f"<title>{esc(tip)}</title></circle></a>"
        )
    genres = sorted({p.get("genre") or "unknown" for p in points})
    legend = " ".join(
        f"<span><i style='background:{colour(g)}'></i>{esc(g)}</span>" for g in genres
    )
    return (
        f"<svg class='sonic-map' viewBox='0 0 {size} {size}' role='img' "
        f"aria-label='library map'>{''.join(dots)}</svg><div class='sonic-legend'>{legend}</div>"
    )
