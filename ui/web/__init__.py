"""The Gradio interface mounted at ``/ui``: widgets over the catalog and ingest layers.

One module per tab (``library``, ``track`` with ``stems``, ``analyse``, ``mapview``),
the HTML they share (``render``), the uploads boundary (``uploads``) and the page
assets (``assets``: CSS, the player script, the player dock). A persistent player
with a queue sits above the tabs; links anywhere open a track at ``/ui/?track=ID``.
Audio, heatmaps and stems play from the service's own routes, so the UI serves no
file the API would refuse.
"""

from __future__ import annotations

import gradio as gr

from ui.state import ServiceState
from ui.web import analyse, library, mapview, track
from ui.web.assets import CSS, DOCK, head
from ui.web.uploads import NOT_AN_UPLOAD, Uploads

__all__ = ["CSS", "NOT_AN_UPLOAD", "Uploads", "build_ui", "head"]

# Browser-side input rewrites: the track the URL or a clicked link names.
URL_TRACK = "(x, ...r) => [new URLSearchParams(window.location.search).get('track') || '', ...r]"
PENDING_TRACK = "(x, ...r) => [(window.sonic && window.sonic.pending) || x, ...r]"
PENDING_LIST = "(x) => (window.sonic && window.sonic.pendingList) || x"


def header(state: ServiceState) -> str:
    s = state.summary()
    t = s["tracks"]
    model = s["service_model_id"] + ("" if s["service_model_trained"] else " (UNTRAINED)")
    search = s["search"]
    return (
        f"**Sonic Catalog** · device **{s['device']}** · {t['ok']} tracks analysed, "
        f"{t['failed']} failed, {t['missing']} missing · {s['audio_hours']:.2f} h of audio · "
        f"search: {search['searching_with']} over {search['vectors']} vectors · model {model}"
        + (
            f" · {s['other_model_tracks']} tracks from another model are out of search "
            "until re-ingested"
            if s["other_model_tracks"]
            else ""
        )
    )


def build_ui(state: ServiceState, uploads: Uploads | None = None) -> gr.Blocks:
    """The Blocks over ``state``; file inputs are confined to ``uploads`` (see ``Uploads``)."""
    uploads = uploads or Uploads(state.settings.upload_cache_bytes)
    age = max(1, int(state.settings.upload_max_age_s))
    with gr.Blocks(title="Sonic Catalog", delete_cache=(min(age, 600), age)) as demo:
        head_md = gr.Markdown(elem_id="sonic-header")
        gr.HTML(DOCK, elem_id="sonic-player-dock")
        # Navigation from links (player.js): a hidden box and button per kind.
        nav_track = gr.Textbox(elem_id="nav-track-id", elem_classes=["sonic-hidden"])
        nav_track_go = gr.Button(elem_id="nav-track", elem_classes=["sonic-hidden"])
        nav_list = gr.Textbox(elem_id="nav-list-value", elem_classes=["sonic-hidden"])
        nav_list_go = gr.Button(elem_id="nav-list", elem_classes=["sonic-hidden"])
        with gr.Tabs(selected="library") as tabs:
            with gr.Tab("Library", id="library"):
                lib = library.build(state)
            with gr.Tab("Track", id="track"):
                view = track.build(state)
            with gr.Tab("Analyse a file", id="analyse"):
                analyse.build(state, uploads)
            with gr.Tab("Map", id="map"):
                mapview.build(state)

        def goto_track(tid: str, *settings):
            """Open the track a link or the URL names (any other text: the Library tab)."""
            tid = (tid or "").strip()
            if not tid.isdigit():  # nothing to open: stay where the user is
                return (gr.skip(), *[gr.skip()] * len(view.outputs), gr.skip())
            return (int(tid), *view.open(int(tid), *settings), gr.Tabs(selected="track"))

        def goto_list(payload: str):
            return (*library.from_link(state, payload), gr.Tabs(selected="library"))

        settings = view.inputs[1:]
        track_outputs = [view.track_id, *view.outputs, tabs]
        demo.load(lambda: header(state), outputs=head_md).then(
            lambda: library.genre_choices(state), outputs=lib.genres
        ).then(lambda: library.show(state, {}, 0), outputs=lib.outputs).then(
            goto_track, [nav_track, *settings], track_outputs, js=URL_TRACK
        )
        nav_track_go.click(goto_track, [nav_track, *settings], track_outputs, js=PENDING_TRACK)
        nav_list_go.click(goto_list, nav_list, [*lib.outputs, tabs], js=PENDING_LIST)
    uploads.confine(demo)
    return demo
