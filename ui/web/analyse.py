"""The "Analyse a file" tab: an upload analysed on the fly, then deleted.

The upload is decoded anyway, so its waveform and mel view come from the samples;
the nearest tracks are links into the library like every other list.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from catalog import queries
from catalog.paths import display_path
from embeddings.inference import AGGREGATIONS
from ingest.clip import ClipError, decode_clip, preview
from ui import figures
from ui.state import ServiceState
from ui.web.render import esc, genre_bars, neighbour_list, timeline_svg
from ui.web.track import segments_frame
from ui.web.uploads import NOT_AN_UPLOAD, Uploads

FORMATS = "MP3, WAV, FLAC, OGG or Opus"


def build(state: ServiceState, uploads: Uploads) -> None:
    features = state.features
    with gr.Row():
        upload = gr.Audio(sources=["upload"], type="filepath", label=FORMATS, elem_id="upload")
        with gr.Column():
            aggregation = gr.Radio(list(AGGREGATIONS), value="mean", elem_id="analysis-aggregation",
                                   label="Aggregation of segments")  # fmt: skip
            top_k = gr.Slider(1, 10, value=3, step=1, label="Top-K genres")
            k = gr.Slider(1, 50, value=10, step=1, label="Nearest tracks")
            go = gr.Button("Analyse", variant="primary", elem_id="analyse")
    summary = gr.Markdown(elem_id="analysis-summary")
    wave = gr.Plot(label="Waveform and mel spectrogram")
    with gr.Row(equal_height=False):
        with gr.Column(min_width=280):
            bars = gr.HTML(elem_id="analysis-bars")
        with gr.Column(min_width=300):
            gr.Markdown("#### Nearest tracks in the library")
            nearest = gr.HTML(elem_id="analysis-nearest")
    line = gr.HTML(elem_id="analysis-timeline")
    heat = gr.HTML()
    segments = gr.Dataframe(label="Per-segment predictions", interactive=False,
                            elem_id="analysis-segments")  # fmt: skip

    def analyse(path, method, kk_top, kk):
        found = uploads.resolve(path)
        if found is None or not found.is_file():
            return NOT_AN_UPLOAD, None, "", "", segments_frame([]), "", ""
        analyser = state.analyser
        try:
            audio, truncated = decode_clip(found, analyser.frontend.sample_rate)
            result = analyser.analyse_audio(audio, method, truncated)
        except ClipError as exc:
            return (f"**Cannot analyse this file:** {esc(exc)}", None, "", "",
                    segments_frame([]), "", "")  # fmt: skip
        finally:
            uploads.discard(found)  # analysed once; nothing of it stays on the server
        data = result.to_dict(int(kk_top))
        tops = ", ".join(f"{r['genre']} {r['probability']:.0%}" for r in data["top_k"])
        text = (
            f"### {esc(Path(path).name)}\n\npredicted **{data['genre']}** "
            f"({data['confidence']:.0%}) · top {int(kk_top)}: {tops} · "
            f"{data['duration_s']:.1f} s · {len(data['timeline'])} segments · "
            f"{method} of segment probabilities · model {data['model_id']}"
            + ("" if data["model_trained"] else " (UNTRAINED: genres are meaningless)")
            + (" · only the start was analysed" if data["truncated"] else "")
        )
        view = preview(audio[: 600 * analyser.frontend.sample_rate], analyser.frontend)
        figure = figures.waveform_and_mel(view, display_path(Path(path).name))
        ok, note = state.comparable()
        if ok:
            rows = queries.similar_to_vector(state.fresh(), result.embedding, int(kk))
            near = neighbour_list(rows, "the library is empty")
        else:
            near = f"<p class='sonic-note'>{esc(note)}</p>"
        no_heat = (
            f"<p class='sonic-note'>No Grad-CAM heatmap: {esc(features.explanations.ABSENT)}.</p>"
            if not features.explanations.available
            else ""
        )
        return (text, figure, genre_bars(data["probabilities"], int(kk_top)),
                timeline_svg(data["timeline"]), segments_frame(data["timeline"]), no_heat,
                near)  # fmt: skip

    go.click(analyse, [upload, aggregation, top_k, k],
             [summary, wave, bars, line, segments, heat, nearest])  # fmt: skip
