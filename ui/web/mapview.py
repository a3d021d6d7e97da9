"""The Map tab: the library in 2-D, one clickable dot per track (it opens the track)."""

from __future__ import annotations

import gradio as gr

from catalog.projection import library_map, umap_available
from ui.state import ServiceState
from ui.web.render import map_svg

MAX_POINTS = 3000  # an SVG dot each; more would slow a phone's browser more than it shows


def build(state: ServiceState) -> None:
    methods = ["pca"] + (["umap"] if umap_available() else [])
    with gr.Row():
        method = gr.Radio(methods, value="pca", label="Projection")
        draw = gr.Button("Draw the map", elem_id="draw-map")
    note = gr.Markdown(elem_id="map-note")
    plot = gr.HTML(elem_id="map-plot")

    def draw_map(how):
        data = library_map(state.fresh(), how, MAX_POINTS)
        words = (f"{data['shown']} of {data['total']} indexed tracks, {how.upper()} of the "
                 "embeddings; click a dot to open its track")  # fmt: skip
        return map_svg(data["points"]), words

    draw.click(draw_map, method, [plot, note])
