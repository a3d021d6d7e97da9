"""The Gradio interface mounted at ``/ui``: widgets over the catalog and ingest layers.

Tabs: Library (browse by predicted genre, search), Track (player, waveform and mel,
genre chart, segment timeline, heatmap, sound-alikes with "why similar", stems),
Analyse a file (an upload, analysed on the fly) and Map (the library in 2-D). Audio,
heatmaps and stems play from the service's own routes (``/tracks/{id}/audio``...),
so the UI serves no file the API would refuse.
"""

from __future__ import annotations

import html
import os
import threading
import time
from pathlib import Path

import gradio as gr
import pandas as pd
from gradio import utils as gradio_utils
from gradio_client import utils as gradio_client_utils

from catalog import queries
from catalog.paths import display_path
from catalog.projection import library_map, umap_available
from catalog.why_similar import why_similar as similarity_reasons
from embeddings.inference import AGGREGATIONS
from ingest.clip import ClipError, decode_clip, preview, preview_file
from ingest.stems import preview_mix
from ui import figures
from ui.optional import FeatureUnavailable
from ui.state import ServiceState

CSS = """
.sonic-list { width: 100%; border-collapse: collapse; }
.sonic-list td, .sonic-list th { padding: 4px 8px; border-bottom: 1px solid #8883; }
.sonic-list audio { height: 32px; width: 260px; }
.sonic-note { opacity: 0.8; font-style: italic; }
"""
PAGE = 50
TRACK_COLUMNS = ["id", "title", "artist", "album", "genre", "confidence", "status"]
# The one answer to any file that is not a live upload of this UI: the same words whether
# the path exists, is a directory, is audio or is /etc/shadow, so it tells nothing.
NOT_AN_UPLOAD = "Upload an audio file first (each upload is analysed once, then deleted)."


class Uploads:
    """This UI's uploads in Gradio's upload folder: the only files its handlers open.

    Gradio copies any file a request names (``{"path": ..., "meta": {"_type":
    "gradio.FileData"}}``, in *any* input, a text box too) into its cache before a
    handler runs, and a mounted app never switches on Gradio's own "uploaded by a
    user" check (it waits for ``launch()``), so a request could read any file of
    the server. ``confine`` refuses such inputs before Gradio touches the path;
    ``resolve`` is the handlers' own check. Analysed uploads are deleted at once;
    ``trim`` keeps the rest under ``cap_bytes`` (Gradio's ``delete_cache`` bounds
    their age).
    """

    def __init__(self, cap_bytes: int, folder: str | os.PathLike | None = None) -> None:
        self.cap_bytes = cap_bytes
        # Where Gradio writes uploads: $GRADIO_TEMP_DIR, else <tempdir>/gradio.
        self.folder = os.path.realpath(folder or gradio_utils.get_upload_folder())
        self.blocks: gr.Blocks | None = None
        self._lock = threading.Lock()

    def resolve(self, path: object) -> Path | None:
        """The real file ``path`` names if it lies inside the upload folder, else None.

        Symlinks are resolved first, so a link in the folder cannot point out of it;
        nothing outside the folder is ever stat'ed, so refusals disclose nothing.
        """
        if not isinstance(path, str) or not path or "://" in path or "\0" in path:
            return None
        real = os.path.realpath(path)
        if real == self.folder or os.path.commonpath([real, self.folder]) != self.folder:
            return None
        return Path(real)

    def confine(self, demo: gr.Blocks) -> None:
        """Refuse every event whose inputs name a file that is not one of the uploads."""
        self.blocks = demo
        original = demo.preprocess_data

        def check(file_data: dict) -> dict:
            if self.resolve(file_data.get("path")) is None:
                raise gr.Error(NOT_AN_UPLOAD, print_exception=False)
            return file_data

        async def preprocess_data(block_fn, inputs, *args, **kwargs):
            for value in inputs:
                gradio_client_utils.traverse(
                    value, check, gradio_client_utils.is_file_obj_with_meta
                )
            return await original(block_fn, inputs, *args, **kwargs)

        demo.preprocess_data = preprocess_data

    def discard(self, path: Path) -> None:
        """Delete an analysed upload (and the folder Gradio made for it, once empty)."""
        with self._lock:
            path.unlink(missing_ok=True)
            if path.parent != Path(self.folder):
                try:
                    path.parent.rmdir()
                except OSError:
                    pass  # not empty: another upload of the same content
            if self.blocks is not None:
                for files in self.blocks.temp_file_sets:
                    files.discard(str(path))

    def trim(self) -> int:
        """Delete this UI's oldest uploads until they total at most ``cap_bytes``; bytes freed.

        Called before each upload is received, so the folder holds at most the cap
        plus the upload arriving.
        """
        if self.blocks is None:
            return 0
        with self._lock:
            found = []
            for files in self.blocks.temp_file_sets:
                for name in list(files):
                    try:
                        st = os.lstat(name)
                    except OSError:
                        files.discard(name)
                        continue
                    found.append((st.st_mtime, st.st_size, name))
            total = sum(size for _, size, _ in found)
            freed = 0
            for _, size, name in sorted(found):
                if total - freed <= self.cap_bytes:
                    break
                Path(name).unlink(missing_ok=True)
                for files in self.blocks.temp_file_sets:
                    files.discard(name)
                freed += size
            return freed


def _esc(value) -> str:
    """HTML-escaped text, with undecodable file-name bytes shown as ``\\xNN`` (never a failure)."""
    return html.escape(display_path("" if value is None else str(value)))


def _name(t: dict) -> str:
    """What a track is called on screen: artist - title, else its (displayable) file name."""
    who = " - ".join(x for x in (t.get("artist"), t.get("title")) if x)
    return display_path(who or Path(t["path"]).name)


def _tracks_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(
        [
            {
                "id": t["id"],
                "title": display_path(t.get("title") or Path(t["path"]).name),
                "artist": display_path(t.get("artist") or ""),
                "album": display_path(t.get("album") or ""),
                "genre": t.get("genre") or "",
                "confidence": round(t["confidence"], 3) if t.get("confidence") else None,
                "status": t["status"],
            }
            for t in rows
        ],
        columns=TRACK_COLUMNS,
    )
    return frame


def _neighbour_list(rows: list[dict], empty: str) -> str:
    if not rows:
        return f"<p class='sonic-note'>{_esc(empty)}</p>"
    body = "".join(
        f"<tr><td>{t['score']:.3f}</td><td>#{t['id']}</td><td>{_esc(_name(t))}</td>"
        f"<td>{_esc(t.get('genre'))}</td>"
        f"<td><audio controls preload='none' src='/tracks/{t['id']}/audio'></audio></td></tr>"
        for t in rows
    )
    head = "<tr><th>score</th><th>id</th><th>track</th><th>genre</th><th>listen</th></tr>"
    return f"<table class='sonic-list sonic-similar'>{head}{body}</table>"


def _segments_frame(timeline: list[dict]) -> pd.DataFrame:
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


def build_ui(  # noqa: C901 (one closure per widget)
    state: ServiceState, uploads: Uploads | None = None
) -> gr.Blocks:
    """The Blocks over ``state``; file inputs are confined to ``uploads`` (see ``Uploads``)."""
    features = state.features
    uploads = uploads or Uploads(state.settings.upload_cache_bytes)

    # -- header ---------------------------------------------------------------------------

    def header() -> str:
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

    # -- library ------------------------------------------------------------------------

    def genre_choices() -> gr.Radio:
        rows = queries.genre_counts(state.fresh())
        choices = [(f"{r['genre']} ({r['tracks']})", r["genre"]) for r in rows if r["genre"]]
        return gr.Radio(choices=choices, value=None)

    def browse(genre: str | None, text: str, offset: int):
        page = queries.browse(
            state.fresh(), genre=genre or None, text=text or None, status=None if
            (genre or text) else "ok", limit=PAGE, offset=max(0, int(offset or 0)),
        )  # fmt: skip
        shown = page["offset"] + len(page["tracks"])
        what = f"genre **{genre}**" if genre else (f"“{text}”" if text else "all analysed tracks")
        what = display_path(what)
        note = f"{what}: {page['offset'] + 1 if page['tracks'] else 0}–{shown} of {page['total']}"
        return _tracks_frame(page["tracks"]), note, page["offset"]

    def pick_genre(genre):
        frame, note, offset = browse(genre, "", 0)
        return frame, note, offset, ""

    def search(text):
        frame, note, offset = browse(None, text, 0)
        return frame, note, offset, gr.Radio(value=None)

    def page_step(genre, text, offset, step):
        return browse(genre, text, int(offset or 0) + step)

    # -- one track ----------------------------------------------------------------------

    def open_track(track_id, top_k, k, exclude_album):
        empty_frame = _segments_frame([])
        if not track_id:
            return ("Pick a track in the Library tab, or type its id.", "", None, None, None,
                    empty_frame, "", "", "", gr.Radio(choices=[], value=None), "",
                    *stem_views(None))  # fmt: skip
        track_id = int(track_id)
        catalog = state.fresh()
        try:
            d = queries.track_details(catalog, track_id)
        except queries.TrackNotFound as exc:
            return (f"**{_esc(exc)}**", "", None, None, None, empty_frame, "", "", "",
                    gr.Radio(choices=[], value=None), "", *stem_views(None))  # fmt: skip
        lines = [f"### #{d['id']} {_esc(_name(d))}"]
        if d.get("album"):
            lines.append(f"album **{_esc(d['album'])}**")
        if d["genre"]:
            lines.append(f"predicted **{d['genre']}** ({d['confidence']:.0%})")
        if d.get("duration_s"):
            lines.append(f"{d['duration_s']:.1f} s")
        lines.append(f"status {d['status']}")
        text = " · ".join(lines[1:])
        summary = lines[0] + "\n\n" + text
        if d.get("error"):
            summary += f"\n\n**failed:** {_esc(d['error'])}"
        if d.get("warning"):
            summary += f"\n\n**warning:** {_esc(d['warning'])}"
        summary += f"\n\n`{_esc(d['path'])}`"
        player = (
            f"<audio controls preload='none' src='/tracks/{track_id}/audio' "
            f"class='sonic-player'></audio>"
            f" <a href='/playlists/radio.m3u?seed={track_id}&n=20'>radio from here (.m3u)</a>"
        )
        try:
            wave = figures.waveform_and_mel(
                preview_file(Path(d["path"]), state.model.frontend), _name(d)
            )
        except ClipError as exc:
            wave = None
            summary += f"\n\n(no waveform: {_esc(exc)})"
        bars = figures.genre_bars(d["probabilities"], int(top_k)) if d["probabilities"] else None
        line = figures.timeline(d["timeline"]) if d["timeline"] else None
        heat_html, focus = heatmap_views(catalog, d)
        sims, radio_update, note = similar_views(track_id, k, exclude_album)
        return (summary, player, wave, bars, line, _segments_frame(d["timeline"]), heat_html,
                focus, sims, radio_update, note, *stem_views(d))  # fmt: skip

    def heatmap_views(catalog, d: dict) -> tuple[str, str]:
        ex = features.explanations
        path = ex.heatmap(catalog, d)
        if path is None:
            why = ex.ABSENT if not ex.available else "no heatmap was computed for this track"
            return f"<p class='sonic-note'>No Grad-CAM heatmap: {_esc(why)}.</p>", ""
        img = f"<img src='/tracks/{d['id']}/heatmap.png' alt='Grad-CAM heatmap' width='100%'>"
        return img, ex.band_focus(d) or ""

    def similar_views(track_id: int, k, exclude_album):
        try:
            rows = queries.similar(
                state.fresh(), int(track_id), int(k), exclude_same_album=bool(exclude_album)
            )
        except LookupError as exc:
            return _neighbour_list([], str(exc)), gr.Radio(choices=[], value=None), ""
        choices = [(f"#{t['id']} {_name(t)} ({t['score']:.3f})", t["id"]) for t in rows]
        return (
            _neighbour_list(rows, "no other tracks in the index yet"),
            gr.Radio(choices=choices, value=None),
            "",
        )

    def why_similar(track_id, other_id) -> str:
        if not track_id or not other_id:
            return ""
        catalog = state.fresh()
        data = similarity_reasons(catalog, int(track_id), int(other_id))
        out = [f"**Why #{other_id} is similar:** {_esc(data['summary'])}"]
        shared = [r for r in data["shared_genres"] if r["shared"] >= 0.05][:5]
        if shared:
            out.append(
                "| genre | this track | the other | shared |\n|---|---|---|---|\n"
                + "\n".join(
                    f"| {r['genre']} | {r['probability_a']:.0%} | {r['probability_b']:.0%} "
                    f"| {r['shared']:.0%} |"
                    for r in shared
                )
            )
        try:
            pair = features.explanations.explain_pair(catalog, int(track_id), int(other_id))
        except FeatureUnavailable as exc:
            out.append(f"<span class='sonic-note'>Attribution comparison: {_esc(exc)}.</span>")
        else:  # the sentence is already in the summary above
            moments = pair["closest_moments"]
            if moments:
                out.append(
                    "| this track | the other | cosine |\n|---|---|---|\n"
                    + "\n".join(
                        f"| {m['a_start_s']:.0f} s | {m['b_start_s']:.0f} s | {m['cosine']:.2f} |"
                        for m in moments
                    )
                )
        return "\n\n".join(out)

    # -- stems --------------------------------------------------------------------------

    def stem_views(d: dict | None):
        stems = features.stems
        if d is None:
            return "", "", gr.Button(interactive=False)
        cached = stems.cached(state.catalog, d)
        if cached:
            players = "".join(
                f"<tr><td>{_esc(name)}</td><td><audio controls preload='none' "
                f"src='/tracks/{d['id']}/stems/{name}'></audio></td></tr>"
                for name in sorted(cached)
            )
            return (
                f"<table class='sonic-list sonic-stems'>{players}</table>",
                "cached stems: " + ", ".join(sorted(cached)),
                gr.Button(interactive=True),
            )
        if not stems.available:
            return "", f"*{_esc(stems.why_not)}.*", gr.Button(interactive=False)
        return "", "no stems yet: **Separate** computes them", gr.Button(interactive=False)

    def separate(track_id):
        stems = features.stems
        if not track_id:
            yield "open a track first", "", gr.Button(interactive=False)
            return
        if not stems.available:
            yield f"*{_esc(stems.why_not)}.*", "", gr.Button(interactive=False)
            return

        def work(set_progress):
            def progress(done, total):
                set_progress(done / total if total else None)

            return stems.separate(state.catalog, int(track_id), progress)

        job = state.jobs.submit("stems", f"stems:{int(track_id)}", work)
        while job.status in ("queued", "running"):
            pct = f" {job.progress:.0%}" if job.progress is not None else ""
            yield f"separating: {job.status}{pct}", "", gr.Button(interactive=False)
            time.sleep(1.0)
        if job.status == "failed":
            yield f"**separation failed:** {_esc(job.error)}", "", gr.Button(interactive=False)
            return
        d = queries.track_details(state.fresh(), int(track_id))
        players, note, button = stem_views(d)
        yield note, players, button

    def remix(track_id, vocals, drums, bass, other):
        if not track_id:
            return None, "open a track first"
        d = queries.track_details(state.fresh(), int(track_id))
        cached = features.stems.cached(state.catalog, d)
        if not cached:
            return None, "no cached stems for this track"
        gains = {"vocals": vocals, "drums": drums, "bass": bass, "other": other}
        rate, mix = preview_mix(cached, gains)
        return (rate, mix), "remixed with gains " + ", ".join(
            f"{k} {v:.2f}" for k, v in gains.items()
        )

    # -- analyse a file -----------------------------------------------------------------

    def analyse(path, aggregation, top_k, k):
        upload = uploads.resolve(path)
        if upload is None or not upload.is_file():
            return NOT_AN_UPLOAD, None, None, None, _segments_frame([]), "", ""
        analyser = state.analyser
        try:
            audio, truncated = decode_clip(upload, analyser.frontend.sample_rate)
            result = analyser.analyse_audio(audio, aggregation, truncated)
        except ClipError as exc:
            return (f"**Cannot analyse this file:** {_esc(exc)}", None, None, None,
                    _segments_frame([]), "", "")  # fmt: skip
        finally:
            uploads.discard(upload)  # analysed once; nothing of it stays on the server
        data = result.to_dict(int(top_k))
        tops = ", ".join(f"{r['genre']} {r['probability']:.0%}" for r in data["top_k"])
        summary = (
            f"### {_esc(Path(path).name)}\n\npredicted **{data['genre']}** "
            f"({data['confidence']:.0%}) · top {int(top_k)}: {tops} · "
            f"{data['duration_s']:.1f} s · {len(data['timeline'])} segments · "
            f"{aggregation} of segment probabilities · model {data['model_id']}"
            + ("" if data["model_trained"] else " (UNTRAINED: genres are meaningless)")
            + (" · only the start was analysed" if data["truncated"] else "")
        )
        view = preview(audio[: 600 * analyser.frontend.sample_rate], analyser.frontend)
        wave = figures.waveform_and_mel(view, display_path(Path(path).name))
        bars = figures.genre_bars(data["probabilities"], int(top_k))
        line = figures.timeline(data["timeline"])
        ok, note = state.comparable()
        if ok:
            rows = queries.similar_to_vector(state.fresh(), result.embedding, int(k))
            nearest = _neighbour_list(rows, "the library is empty")
        else:
            nearest = f"<p class='sonic-note'>{_esc(note)}</p>"
        heat = (
            f"<p class='sonic-note'>No Grad-CAM heatmap: {_esc(features.explanations.ABSENT)}.</p>"
            if not features.explanations.available
            else ""
        )
        return summary, wave, bars, line, _segments_frame(data["timeline"]), heat, nearest

    # -- map ----------------------------------------------------------------------------

    def draw_map(method):
        data = library_map(state.fresh(), method)
        frame = pd.DataFrame(
            data["points"], columns=["x", "y", "genre", "title", "artist", "album", "id"]
        )
        frame["genre"] = frame["genre"].fillna("unknown")
        for column in ("title", "artist", "album"):  # tags only shown: never a failure
            frame[column] = frame[column].map(
                lambda v: display_path(v) if isinstance(v, str) else v
            )
        note = (
            f"{data['shown']} of {data['total']} indexed tracks, {method.upper()} of the embeddings"
        )
        return frame, note

    # -- layout -------------------------------------------------------------------------

    age = max(1, int(state.settings.upload_max_age_s))
    with gr.Blocks(title="Sonic Catalog", delete_cache=(min(age, 600), age)) as demo:
        head = gr.Markdown(elem_id="sonic-header")
        with gr.Tabs(selected="library") as tabs:
            with gr.Tab("Library", id="library"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=220):
                        genres = gr.Radio(label="Browse by predicted genre", elem_id="genres")
                        query = gr.Textbox(label="Search title, artist, album", elem_id="query")
                        search_btn = gr.Button("Search", elem_id="search")
                    with gr.Column(scale=3):
                        listing_note = gr.Markdown(elem_id="listing-note")
                        listing = gr.Dataframe(
                            headers=TRACK_COLUMNS, interactive=False, elem_id="listing",
                            label="Tracks (click a row to open it)",
                        )  # fmt: skip
                        with gr.Row():
                            prev_btn = gr.Button("← Previous", size="sm")
                            next_btn = gr.Button("Next →", size="sm")
                        offset = gr.State(0)
            with gr.Tab("Track", id="track"):
                with gr.Row():
                    track_id = gr.Number(label="Track id", precision=0, elem_id="track-id")
                    top_k = gr.Slider(1, 10, value=5, step=1, label="Top-K genres")
                    k = gr.Slider(1, 50, value=10, step=1, label="Sound-alikes")
                    exclude_album = gr.Checkbox(label="Exclude same album")
                    open_btn = gr.Button("Open", variant="primary", elem_id="open")
                summary = gr.Markdown(elem_id="track-summary")
                player = gr.HTML(elem_id="track-player")
                wave = gr.Plot(label="Waveform and mel spectrogram", elem_id="track-wave")
                with gr.Row():
                    bars = gr.Plot(label="Genre probabilities", elem_id="track-bars")
                    heat = gr.HTML(label="Grad-CAM heatmap", elem_id="track-heatmap")
                focus = gr.Markdown(elem_id="band-focus")
                line = gr.Plot(label="Timeline", elem_id="track-timeline")
                segments = gr.Dataframe(label="Per-segment predictions", interactive=False)
                gr.Markdown("#### Sound-alikes")
                sims = gr.HTML(elem_id="similar")
                neighbour = gr.Radio(label="Why is it similar? Pick one", elem_id="why-pick")
                why = gr.Markdown(elem_id="why")
                gr.Markdown("#### Stems")
                stems_note = gr.Markdown(elem_id="stems-note")
                with gr.Row():
                    separate_btn = gr.Button(
                        "Separate stems", elem_id="separate", interactive=features.stems.available
                    )
                stem_players = gr.HTML(elem_id="stem-players")
                with gr.Row():
                    g_vocals = gr.Slider(0, 2, value=1, step=0.05, label="vocals")
                    g_drums = gr.Slider(0, 2, value=1, step=0.05, label="drums")
                    g_bass = gr.Slider(0, 2, value=1, step=0.05, label="bass")
                    g_other = gr.Slider(0, 2, value=1, step=0.05, label="other")
                    remix_btn = gr.Button("Remix", interactive=False)
                remix_out = gr.Audio(label="Remix", interactive=False)
                remix_note = gr.Markdown()
            with gr.Tab("Analyse a file", id="analyse"):
                with gr.Row():
                    upload = gr.Audio(
                        sources=["upload"], type="filepath", label="MP3, WAV or FLAC",
                        elem_id="upload",
                    )  # fmt: skip
                    with gr.Column():
                        aggregation = gr.Radio(
                            list(AGGREGATIONS), value="mean", label="Aggregation of segments"
                        )
                        a_top_k = gr.Slider(1, 10, value=3, step=1, label="Top-K genres")
                        a_k = gr.Slider(1, 50, value=10, step=1, label="Nearest tracks")
                        analyse_btn = gr.Button("Analyse", variant="primary", elem_id="analyse")
                a_summary = gr.Markdown(elem_id="analysis-summary")
                a_wave = gr.Plot(label="Waveform and mel spectrogram")
                with gr.Row():
                    a_bars = gr.Plot(label="Genre probabilities", elem_id="analysis-bars")
                    a_heat = gr.HTML(label="Grad-CAM heatmap")
                a_line = gr.Plot(label="Timeline")
                a_segments = gr.Dataframe(label="Per-segment predictions", interactive=False)
                gr.Markdown("#### Nearest tracks in the library")
                a_nearest = gr.HTML(elem_id="analysis-nearest")
            with gr.Tab("Map", id="map"):
                methods = ["pca"] + (["umap"] if umap_available() else [])
                with gr.Row():
                    method = gr.Radio(methods, value="pca", label="Projection")
                    map_btn = gr.Button("Draw the map", elem_id="draw-map")
                map_note = gr.Markdown()
                scatter = gr.ScatterPlot(
                    x="x", y="y", color="genre", tooltip=["title", "artist", "album", "id"],
                    color_map=figures.GENRE_COLOURS,
                    label="Library map (hover for the track)", elem_id="map-plot",
                )  # fmt: skip

        # -- events -------------------------------------------------------------------------
        demo.load(header, outputs=head).then(genre_choices, outputs=genres).then(
            lambda: browse(None, "", 0), outputs=[listing, listing_note, offset]
        )
        genres.select(pick_genre, genres, [listing, listing_note, offset, query])
        search_btn.click(search, query, [listing, listing_note, offset, genres])
        query.submit(search, query, [listing, listing_note, offset, genres])
        prev_btn.click(
            lambda g, q, o: page_step(g, q, o, -PAGE), [genres, query, offset],
            [listing, listing_note, offset],
        )  # fmt: skip
        next_btn.click(
            lambda g, q, o: page_step(g, q, o, PAGE), [genres, query, offset],
            [listing, listing_note, offset],
        )  # fmt: skip

        track_outputs = [summary, player, wave, bars, line, segments, heat, focus, sims,
                         neighbour, why, stem_players, stems_note, remix_btn]  # fmt: skip

        def chosen(evt: gr.SelectData, table: pd.DataFrame):
            row = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
            return int(table.iloc[row]["id"]), gr.Tabs(selected="track")

        listing.select(chosen, listing, [track_id, tabs]).then(
            open_track, [track_id, top_k, k, exclude_album], track_outputs
        )
        open_btn.click(open_track, [track_id, top_k, k, exclude_album], track_outputs)
        track_id.submit(open_track, [track_id, top_k, k, exclude_album], track_outputs)
        neighbour.change(why_similar, [track_id, neighbour], why)
        separate_btn.click(separate, track_id, [stems_note, stem_players, remix_btn])
        remix_btn.click(
            remix, [track_id, g_vocals, g_drums, g_bass, g_other], [remix_out, remix_note]
        )
        analyse_btn.click(
            analyse, [upload, aggregation, a_top_k, a_k],
            [a_summary, a_wave, a_bars, a_line, a_segments, a_heat, a_nearest],
        )  # fmt: skip
        map_btn.click(draw_map, method, [scatter, map_note])
    uploads.confine(demo)
    return demo
