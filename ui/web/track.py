"""The Track tab: one track from what the catalog holds, at once; the mel view on demand.

First paint reads only the catalog: details, the play and radio buttons, top-K
probabilities, the segment timeline, the heatmap, sound-alikes and the waveform
from the overview stored at ingest. Nothing decodes the file unless the mel
spectrogram is asked for (or the track predates the overview). Top-K and the
aggregation redraw from the stored per-segment probabilities.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd

from catalog import queries
from catalog.why_similar import why_similar as similarity_reasons
from embeddings.aggregation import aggregate
from embeddings.inference import AGGREGATIONS
from ingest.clip import ClipError, preview_file
from ui import figures
from ui.optional import FeatureUnavailable
from ui.state import ServiceState
from ui.web import stems as stems_panel
from ui.web.render import (
    esc,
    genre_bars,
    genre_views_line,
    heatmap_panel,
    name,
    neighbour_list,
    timeline_svg,
    waveform_svg,
)


@dataclass
class TrackView:
    track_id: gr.Number
    inputs: list  # what open() takes after the id: top-K, aggregation, k, exclude album
    outputs: list
    open: Callable  # open(track_id, *inputs[1:]) -> values for outputs


def segments_frame(timeline: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "segment": seg["index"],
                "start s": round(seg["start_s"], 1),
                "end s": round(seg["end_s"], 1),
                "genre": seg["genre"],
                "confidence": round(seg["confidence"], 3),
            }
            for seg in timeline
        ],
        columns=["segment", "start s", "end s", "genre", "confidence"],
    )


def _filter(kind: str, value: str | None) -> str:
    if not value:
        return ""
    return (
        f"<a class='sonic-filter' href='#' data-kind='{kind}' data-value='{esc(value)}'>"
        f"{esc(value)}</a>"
    )


def summary_html(d: dict) -> str:
    parts = []
    if d.get("artist"):
        parts.append(f"artist {_filter('artist', d['artist'])}")
    if d.get("album"):
        parts.append(f"album {_filter('album', d['album'])}")
    if d["genre"]:
        parts.append(f"predicted <b>{esc(d['genre'])}</b> ({d['confidence']:.0%})")
    if d.get("duration_s"):
        parts.append(f"{d['duration_s']:.1f} s")
    parts.append(f"status {esc(d['status'])}")
    out = f"<h3>#{d['id']} {esc(name(d))}</h3><p>{' · '.join(parts)}</p>"
    if d.get("error"):
        out += f"<p><b>failed:</b> {esc(d['error'])}</p>"
    if d.get("warning"):
        out += f"<p><b>warning:</b> {esc(d['warning'])}</p>"
    if d.get("genre_views"):
        out += f"<p class='sonic-genre-views'>{genre_views_line(d['genre_views'])}</p>"
    return out + f"<p><code>{esc(d['path'])}</code></p>"


def actions_html(track_id: int, d: dict) -> str:
    return (
        f"<button class='sonic-play' type='button' data-track='{track_id}' "
        f"data-title='{esc(name(d))}'>▶ play</button> "
        f"<button class='sonic-radio' type='button' data-track='{track_id}'>"
        "play radio from here</button> "
        f"<a href='/playlists/radio.m3u?seed={track_id}&n=20' download='radio-{track_id}.m3u'>"
        "radio as .m3u</a>"
    )


def probabilities(timeline: list[dict], method: str, stored: dict[str, float]) -> dict:
    """Track probabilities by ``method`` over the stored per-segment ones (no decoding)."""
    if not timeline or method not in AGGREGATIONS:
        return stored
    genres = list(timeline[0]["probabilities"])
    seg = np.array([[s["probabilities"][g] for g in genres] for s in timeline], np.float32)
    return dict(zip(genres, aggregate(seg, method).tolist(), strict=True))


def build(state: ServiceState) -> TrackView:  # noqa: C901 (one closure per widget)
    features = state.features
    with gr.Row():
        track_id = gr.Number(label="Track id", precision=0, elem_id="track-id", min_width=120)
        top_k = gr.Slider(1, 10, value=5, step=1, label="Top-K genres", elem_id="top-k")
        method = gr.Radio(list(AGGREGATIONS), value="mean", label="Aggregation",
                          elem_id="aggregation")  # fmt: skip
        k = gr.Slider(1, 50, value=10, step=1, label="Sound-alikes")
        exclude_album = gr.Checkbox(label="Exclude same album")
        open_btn = gr.Button("Open", variant="primary", elem_id="open", min_width=80)
    summary = gr.HTML(elem_id="track-summary")
    actions = gr.HTML(elem_id="track-player")
    wave = gr.HTML(elem_id="track-wave")
    with gr.Row():
        mel_btn = gr.Button("Show mel spectrogram (decodes the file)", size="sm",
                            elem_id="show-mel")  # fmt: skip
    mel = gr.Plot(label="Waveform and mel spectrogram", elem_id="track-mel", visible=False)
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=280):
            gr.Markdown("#### Genre probabilities")
            bars = gr.HTML(elem_id="track-bars")
        with gr.Column(scale=2, min_width=300):
            gr.Markdown("#### Sound-alikes")
            sims = gr.HTML(elem_id="similar")
    gr.Markdown("#### Genre per segment")
    line = gr.HTML(elem_id="track-timeline")
    gr.Markdown("#### What the model listened to (Grad-CAM)")
    heat = gr.HTML(elem_id="track-heatmap")
    focus = gr.Markdown(elem_id="band-focus")
    # filled when opened: a 10-minute track's 200 rows slowed every first paint
    with gr.Accordion("Per-segment predictions", open=False) as segments_box:
        segments = gr.Dataframe(interactive=False, elem_id="segments")
    neighbour = gr.Radio(label="Why is it similar? Pick one", elem_id="why-pick")
    why = gr.HTML(elem_id="why")
    stem_view = stems_panel.build(state, track_id)
    current = gr.State(None)  # the opened track's details, for redraws without a read

    def similar_views(tid: int, kk, excl):
        try:
            rows = queries.similar(state.fresh(), int(tid), int(kk),
                                   exclude_same_album=bool(excl))  # fmt: skip
        except LookupError as exc:
            return neighbour_list([], str(exc)), gr.Radio(choices=[], value=None)
        choices = [(f"#{t['id']} {name(t)} ({t['score']:.3f})", t["id"]) for t in rows]
        return (neighbour_list(rows, "no other tracks in the index yet"),
                gr.Radio(choices=choices, value=None))  # fmt: skip

    def heat_views(d: dict) -> tuple[str, str]:
        ex = features.explanations
        sentence = ex.band_focus(d) or ""  # shown even when the image is gone
        shares = (d.get("explanation") or {}).get("band_focus")
        if ex.heatmap(state.catalog, d) is None:
            why_not = ex.ABSENT if not ex.available else "no heatmap image for this track"
            return f"<p class='sonic-note'>No Grad-CAM heatmap: {esc(why_not)}.</p>", sentence
        return heatmap_panel(d["id"], shares), sentence

    def wave_view(d: dict) -> str:
        overview = queries.waveform_overview(state.catalog, d["id"])
        if overview is not None:
            return waveform_svg(overview, d.get("duration_s"))
        return ("<p class='sonic-note'>No stored waveform overview (analysed before it "
                "existed; re-ingest to store one): <b>Show mel spectrogram</b> decodes the "
                "file.</p>")  # fmt: skip

    def open_track(tid, kk_top, agg, kk, excl):
        blank = ("", "", "", "", "", "", "", "", gr.Radio(choices=[], value=None), "")
        closed = (gr.Accordion(open=False), segments_frame([]))  # the table fills when opened
        if not tid:
            return ("<p>Pick a track in the Library tab, or type its id.</p>", *blank[1:],
                    *stems_panel.views(state, None), None, gr.Plot(visible=False),
                    *closed)  # fmt: skip
        tid = int(tid)
        try:
            d = queries.track_details(state.fresh(), tid)
        except queries.TrackNotFound as exc:
            return (f"<p><b>{esc(exc)}</b></p>", *blank[1:], *stems_panel.views(state, None),
                    None, gr.Plot(visible=False), *closed)  # fmt: skip
        probs = probabilities(d["timeline"], agg, d["probabilities"])
        heat_html, sentence = heat_views(d)
        sim_html, pick = similar_views(tid, kk, excl)
        return (summary_html(d), actions_html(tid, d), wave_view(d),
                genre_bars(probs, int(kk_top)) if probs else "", timeline_svg(d["timeline"]),
                heat_html, sentence, sim_html, pick, "",
                *stems_panel.views(state, d), d, gr.Plot(visible=False), *closed)  # fmt: skip

    def redraw_bars(d, kk_top, agg):
        if not d:
            return ""
        probs = probabilities(d["timeline"], agg, d["probabilities"])
        return genre_bars(probs, int(kk_top)) if probs else ""

    def show_mel(d):
        if not d:
            return gr.Plot(visible=False)
        try:
            view = preview_file(Path(d["path"]), state.model.frontend)
        except ClipError as exc:
            gr.Warning(f"cannot decode this file: {exc}")
            return gr.Plot(visible=False)
        return gr.Plot(value=figures.waveform_and_mel(view, name(d)), visible=True)

    def why_similar(tid, other_id) -> str:
        if not tid or not other_id:
            return ""
        catalog = state.fresh()
        data = similarity_reasons(catalog, int(tid), int(other_id))
        other = queries.track_details(catalog, int(other_id))
        oid = int(other_id)
        link = (f"<a class='sonic-open' href='?track={oid}' "
                f"data-track='{oid}'>#{oid} {esc(name(other))}</a>")  # fmt: skip
        out = [f"<p><b>Why {link} is similar:</b> {esc(data['summary'])}</p>"]
        shared = [r for r in data["shared_genres"] if r["shared"] >= 0.05][:5]
        if shared:
            out.append("<table class='sonic-list'><tr><th>genre</th><th>this track</th>"
                       "<th>the other</th><th>shared</th></tr>" + "".join(
                           f"<tr><td>{esc(r['genre'])}</td><td>{r['probability_a']:.0%}</td>"
                           f"<td>{r['probability_b']:.0%}</td><td>{r['shared']:.0%}</td></tr>"
                           for r in shared) + "</table>")  # fmt: skip
        try:
            pair = features.explanations.explain_pair(catalog, int(tid), int(other_id))
        except FeatureUnavailable as exc:
            out.append(f"<p class='sonic-note'>Attribution comparison: {esc(exc)}.</p>")
        else:  # the sentence is already in the summary above
            if pair["closest_moments"]:
                out.append("<table class='sonic-list'><tr><th>this track</th><th>the other</th>"
                           "<th>cosine</th></tr>" + "".join(
                               f"<tr><td>{m['a_start_s']:.0f} s</td><td>{m['b_start_s']:.0f} s"
                               f"</td><td>{m['cosine']:.2f}</td></tr>"
                               for m in pair["closest_moments"]) + "</table>")  # fmt: skip
        return "".join(out)

    outputs = [summary, actions, wave, bars, line, heat, focus, sims, neighbour, why,
               *stem_view.outputs, current, mel, segments_box, segments]  # fmt: skip
    inputs = [track_id, top_k, method, k, exclude_album]
    remember = "(...a) => { window.sonic && window.sonic.remember(a[0]); return a; }"
    open_btn.click(open_track, inputs, outputs, js=remember)
    track_id.submit(open_track, inputs, outputs, js=remember)
    top_k.release(redraw_bars, [current, top_k, method], bars)
    method.change(redraw_bars, [current, top_k, method], bars)
    mel_btn.click(show_mel, current, mel)
    segments_box.expand(lambda d: segments_frame(d["timeline"] if d else []), current, segments)

    def redraw_similar(d, kk, excl):  # settings apply at once, no re-open
        if not d:
            return gr.skip(), gr.skip()
        return similar_views(d["id"], kk, excl)

    k.release(redraw_similar, [current, k, exclude_album], [sims, neighbour])
    exclude_album.change(redraw_similar, [current, k, exclude_album], [sims, neighbour])
    neighbour.change(why_similar, [track_id, neighbour], why)
    return TrackView(track_id, inputs, outputs, open_track)
