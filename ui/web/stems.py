"""The Track tab's stems panel: cached stems, separation with progress and cancel, remix.

Whether Demucs weights are on disk is known when the service starts
(``ui.optional.Stems.ready``): without them the button stays disabled and the note
says what fixes it, instead of failing after a long "separating".
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import gradio as gr

from catalog import queries
from ingest.stems import preview_mix
from ui.jobs import Job
from ui.state import ServiceState
from ui.web.render import esc


@dataclass
class StemsView:
    note: gr.Markdown
    separate: gr.Button
    cancel: gr.Button
    players: gr.HTML
    remix: gr.Button
    job: gr.State

    @property
    def outputs(self) -> list:
        return [self.players, self.note, self.separate, self.remix]


def views(state: ServiceState, d: dict | None) -> tuple:
    """(players, note, separate button, remix button) for track ``d``."""
    stems = state.features.stems
    if d is None:
        return "", "", gr.Button(interactive=False), gr.Button(interactive=False)
    cached = stems.cached(state.catalog, d)
    if cached:
        players = "".join(
            f"<tr><td>{esc(name)}</td><td><audio controls preload='none' "
            f"src='/tracks/{d['id']}/stems/{name}'></audio></td></tr>"
            for name in sorted(cached)
        )
        return (
            f"<table class='sonic-list sonic-stems'>{players}</table>",
            "cached stems: " + ", ".join(sorted(cached)),
            gr.Button(interactive=False),
            gr.Button(interactive=True),
        )
    if not stems.ready:
        return "", f"*{esc(stems.not_ready_because)}*", gr.Button(interactive=False), \
            gr.Button(interactive=False)  # fmt: skip
    return "", "no stems yet: **Separate stems** computes them", gr.Button(interactive=True), \
        gr.Button(interactive=False)  # fmt: skip


def progress_words(job: Job) -> str:
    """The words "chunk 12 / 80 (15%)" once Demucs runs; before that, what the job waits on."""
    if job.chunks_done is not None:
        total = job.chunks_total
        pct = f" ({job.chunks_done / total:.0%})" if total else ""
        return f"chunk {job.chunks_done} / {total if total else '?'}{pct}"
    if job.status == "queued":
        return "queued behind another job"
    return "loading the model and decoding"


def ended_words(job: Job) -> str:
    """Why a separation ended without stems, and that nothing half-done was kept."""
    if job.status == "cancelled":
        at = (
            f" at chunk {job.chunks_done} / {job.chunks_total or '?'}"
            if job.chunks_done is not None
            else ""
        )
        return f"**separation cancelled**{at}: no stems were kept"
    return f"**separation failed**: {esc(job.error)}"


def build(state: ServiceState, track_id: gr.Number) -> StemsView:
    stems = state.features.stems
    gr.Markdown("#### Stems")
    note = gr.Markdown(
        "" if stems.ready else f"*{esc(stems.not_ready_because)}*", elem_id="stems-note"
    )
    with gr.Row():
        separate = gr.Button("Separate stems", elem_id="separate", interactive=False)
        cancel = gr.Button("Cancel", elem_id="cancel-stems", interactive=False, size="sm")
    players = gr.HTML(elem_id="stem-players")
    with gr.Row():
        gains = [gr.Slider(0, 2, value=1, step=0.05, label=n) for n in
                 ("vocals", "drums", "bass", "other")]  # fmt: skip
        remix = gr.Button("Remix", interactive=False)
    remix_out = gr.Audio(label="Remix", interactive=False)
    remix_note = gr.Markdown()
    view = StemsView(note, separate, cancel, players, remix, gr.State(None))

    def run(tid):
        if not tid:
            yield "", "open a track first", gr.Button(interactive=False), gr.Button(), None, \
                gr.Button(interactive=False)  # fmt: skip
            return
        if not stems.ready:
            yield "", f"*{esc(stems.not_ready_because)}*", gr.Button(interactive=False), \
                gr.Button(), None, gr.Button(interactive=False)  # fmt: skip
            return

        def work(set_progress):
            def progress(done, total):  # until the first chunk reports (the chunks take over)
                set_progress(done / total if total else None)

            return stems.separate(state.catalog, int(tid), progress)

        job = state.jobs.submit("stems", f"stems:{int(tid)}", work)
        while job.status in ("queued", "running"):
            yield "", f"separating: {progress_words(job)}", gr.Button(interactive=False), \
                gr.Button(), job.id, gr.Button(interactive=True)  # fmt: skip
            time.sleep(0.5)
        if job.status != "done":
            yield "", ended_words(job), gr.Button(interactive=True), gr.Button(), None, \
                gr.Button(interactive=False)  # fmt: skip
            return
        d = queries.track_details(state.fresh(), int(tid))
        yield (*views(state, d), None, gr.Button(interactive=False))

    def stop(job_id):
        if job_id:
            state.jobs.cancel(job_id)
        return gr.Button(interactive=False)

    def do_remix(tid, vocals, drums, bass, other):
        if not tid:
            return None, "open a track first"
        d = queries.track_details(state.fresh(), int(tid))
        cached = stems.cached(state.catalog, d)
        if not cached:
            return None, "no cached stems for this track"
        levels = {"vocals": vocals, "drums": drums, "bass": bass, "other": other}
        rate, mix = preview_mix(cached, levels)
        return (rate, mix), "remixed with gains " + ", ".join(
            f"{k} {v:.2f}" for k, v in levels.items()
        )

    separate.click(run, track_id, [*view.outputs, view.job, cancel])
    cancel.click(stop, view.job, cancel)
    remix.click(do_remix, [track_id, *gains], [remix_out, remix_note])
    return view
