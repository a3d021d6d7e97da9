"""The page-wide pieces of the web UI: its CSS, the player script and the player dock.

``HEAD`` inlines ``player.js`` into the page's ``<head>`` (``mount_gradio_app(head=)``):
one small file kept in the repository, nothing fetched from elsewhere.
"""

from __future__ import annotations

from pathlib import Path

PLAYER_JS = Path(__file__).with_name("player.js")

CSS = """
.sonic-hidden { display: none !important; }
.sonic-note { opacity: 0.8; font-style: italic; }
.sonic-list { width: 100%; border-collapse: collapse; table-layout: fixed; }
.sonic-list td, .sonic-list th { padding: 3px 6px; border-bottom: 1px solid #8883;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap; text-align: left; }
.sonic-tracks .c-play, .sonic-tracks th:first-child { width: 2.2em; }
.sonic-tracks .c-title, .sonic-tracks th:nth-child(2) { width: 30%; }
.sonic-tracks .c-genre, .sonic-tracks th:nth-child(5) { width: 6.5em; }
.sonic-tracks .c-conf, .sonic-tracks th:nth-child(6) { width: 4em; }
.sonic-tracks .c-status, .sonic-tracks th:nth-child(7) { width: 4.5em; }
.sonic-play, .sonic-radio { cursor: pointer; border: 1px solid #8886; border-radius: 4px;
  background: transparent; padding: 0 6px; }
a.sonic-open, a.sonic-filter { text-decoration: none; color: var(--link-text-color, #2563eb); }
a.sonic-open:hover, a.sonic-filter:hover { text-decoration: underline; }
.sonic-similar { padding-left: 1.6em; margin: 0; }
.sonic-similar li { padding: 3px 0; border-bottom: 1px solid #8882; overflow-wrap: anywhere; }
.sonic-similar .score { font-variant-numeric: tabular-nums; opacity: .75; }
.sonic-similar .genre { opacity: .7; font-size: .9em; }
#sonic-dock { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; }
#sonic-audio { width: min(480px, 100%); height: 36px; }
#sonic-now { font-weight: 600; }
#sonic-queue { width: 100%; max-height: 7.5em; overflow-y: auto; margin: 0; font-size: .9em; }
#sonic-queue li { cursor: pointer; }
#sonic-queue li.current { font-weight: 700; }
.sonic-wave { width: 100%; height: 110px; display: block; }
.sonic-wave polygon { fill: #4c72b0; }
.sonic-wave-scale { display: flex; justify-content: space-between; font-size: .8em;
  opacity: .7; }
.sonic-timeline { width: 100%; height: 56px; display: block; }
.sonic-legend { font-size: .85em; display: flex; flex-wrap: wrap; gap: 10px; }
.sonic-legend i { display: inline-block; width: .8em; height: .8em; margin-right: 3px; }
.sonic-bars .bar { display: grid; grid-template-columns: 6.5em 1fr 3em; gap: 6px;
  align-items: center; margin: 2px 0; }
.sonic-bars .track { background: #8882; height: 1em; border-radius: 2px; }
.sonic-bars .fill { display: block; height: 100%; border-radius: 2px; }
/* at most the PNG's own width (embeddings.heatmap_image: 740 px), never blurred larger */
.sonic-heatmap { width: 100%; max-width: 740px; height: auto; image-rendering: auto; }
.sonic-scale { display: flex; align-items: center; gap: 6px; font-size: .85em; }
.sonic-scale i { flex: 0 1 240px; height: .9em; background: linear-gradient(90deg,
  #000004, #420a68, #932667, #dd513a, #fca50a, #fcffa4); }
.sonic-bands { display: flex; flex-wrap: wrap; gap: 14px; font-size: .9em; }
.sonic-map { width: 100%; max-width: 720px; height: auto; border: 1px solid #8883; }
.sonic-map circle { stroke: #fff; stroke-width: 1; cursor: pointer; }
@media (max-width: 600px) {
  /* the heatmap's type is 1/28 of its width: every pixel of the column counts */
  #track-heatmap .html-container { padding-left: 0 !important; padding-right: 0 !important; }
  .sonic-tracks .c-album, .sonic-tracks th:nth-child(4),
  .sonic-tracks .c-status, .sonic-tracks th:nth-child(7) { display: none; }
  .sonic-list td, .sonic-list th { white-space: normal; }
  .sonic-wave { height: 80px; }
}
"""

DOCK = """
<div id="sonic-dock">
  <audio id="sonic-audio" controls preload="none"></audio>
  <span id="sonic-now">nothing playing</span>
  <ol id="sonic-queue" aria-label="queue"></ol>
</div>
"""


def head() -> str:
    """The ``<head>`` addition: the player and navigation script, inline."""
    return f"<script>\n{PLAYER_JS.read_text(encoding='utf-8')}\n</script>"
