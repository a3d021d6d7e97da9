"""The Library tab: browse by predicted genre (or All), search, artist and album views.

Paging is by page number, clamped to the last page, and says "page N of M", so
Next on the last page stays there instead of showing "0-50 of 40".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import gradio as gr

from catalog import queries
from ui.state import ServiceState
from ui.web.render import esc, tracks_table

PAGE = 50
ALL = ""  # the genre filter's value for "All"


@dataclass
class LibraryView:
    genres: gr.Radio
    query: gr.Textbox
    search: gr.Button
    listing: gr.HTML
    note: gr.Markdown
    prev: gr.Button
    next: gr.Button
    filters: gr.State  # {"genre", "text", "artist", "album"} and "page"

    @property
    def outputs(self) -> list:
        return [self.listing, self.note, self.filters, self.prev, self.next]


def show(state: ServiceState, filters: dict, page: int) -> tuple:
    """The listing for ``filters`` at ``page`` (clamped to the pages there are)."""
    f = {k: filters.get(k) or None for k in ("genre", "text", "artist", "album")}
    status = None if any(f.values()) else "ok"
    catalog = state.fresh()
    total = queries.browse(catalog, status=status, limit=1, offset=0, **f)["total"]
    pages = max(1, math.ceil(total / PAGE))
    page = min(max(0, int(page or 0)), pages - 1)
    result = queries.browse(catalog, status=status, limit=PAGE, offset=page * PAGE, **f)
    rows = result["tracks"]
    if f["artist"]:
        what = f"artist **{esc(f['artist'])}**"
    elif f["album"]:
        what = f"album **{esc(f['album'])}**"
    elif f["genre"]:
        what = f"genre **{esc(f['genre'])}**"
    elif f["text"]:
        what = f"“{esc(f['text'])}”"
    else:
        what = "all analysed tracks"
    first = page * PAGE + 1 if rows else 0
    note = f"{what}: {first}–{page * PAGE + len(rows)} of {total} · page {page + 1} of {pages}"
    return (
        tracks_table(rows),
        note,
        {**f, "page": page},
        gr.Button(interactive=page > 0),
        gr.Button(interactive=page < pages - 1),
    )


def genre_choices(state: ServiceState) -> gr.Radio:
    rows = queries.genre_counts(state.fresh())
    total = sum(r["tracks"] for r in rows)
    choices = [(f"All ({total})", ALL)]
    choices += [(f"{r['genre']} ({r['tracks']})", r["genre"]) for r in rows if r["genre"]]
    return gr.Radio(choices=choices, value=ALL)


def build(state: ServiceState) -> LibraryView:
    with gr.Row():
        with gr.Column(scale=1, min_width=200):
            genres = gr.Radio(label="Browse by predicted genre", elem_id="genres")
            query = gr.Textbox(label="Search title, artist, album, folder", elem_id="query")
            search = gr.Button("Search", elem_id="search")
        with gr.Column(scale=5):
            note = gr.Markdown(elem_id="listing-note")
            listing = gr.HTML(elem_id="listing")
            with gr.Row():
                prev = gr.Button("← Previous", size="sm", elem_id="prev-page")
                nxt = gr.Button("Next →", size="sm", elem_id="next-page")
    view = LibraryView(genres, query, search, listing, note, prev, nxt, gr.State({"page": 0}))

    def pick_genre(genre):
        return (*show(state, {"genre": genre}, 0), "")

    def search_text(text):
        return (*show(state, {"text": text}, 0), gr.Radio(value=None))

    genres.select(pick_genre, genres, [*view.outputs, query])
    # api_name "search": the hardening tests (and API clients) call it by that name
    search.click(search_text, query, [*view.outputs, genres], api_name="search")
    query.submit(search_text, query, [*view.outputs, genres])
    prev.click(lambda f: show(state, f, f.get("page", 0) - 1), view.filters, view.outputs)
    nxt.click(lambda f: show(state, f, f.get("page", 0) + 1), view.filters, view.outputs)
    return view


def from_link(state: ServiceState, payload: str) -> tuple:
    """An artist or album link (``player.js`` sends ``{"kind", "value"}``): its tracks."""
    try:
        data = json.loads(payload or "{}")
    except ValueError:
        data = {}
    kind = data.get("kind") if data.get("kind") in ("artist", "album") else None
    value = data.get("value") if isinstance(data.get("value"), str) else None
    return show(state, {kind: value} if kind and value else {}, 0)
