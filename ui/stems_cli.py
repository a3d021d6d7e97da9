"""``sonic stems`` and ``sonic remix``: thin typer faces over ``ingest.stems`` and ``ingest.remix``.

Kept apart from ``ui.cli`` (which registers these commands with ``register(app)``)
and importing nothing from it, so ``python -m ui.cli`` cannot import it twice.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ui.options import DatabaseUrl, DataDir, JsonFlag, command
from ui.options import emit as _emit
from ui.options import fail as _fail
from ui.options import open_catalog as _open_catalog
from ui.options import resolve as _resolve

MODELS_DIR_ENV = "SONIC_DEMUCS_DIR"  # same as ingest.stems.MODELS_DIR_ENV (not imported: torch)

ModelName = Annotated[
    str,
    typer.Option(
        "--demucs-model", help="Demucs model name (a bag such as htdemucs_ft works too)."
    ),
]
ModelsDir = Annotated[
    Path | None,
    typer.Option(
        "--models-dir",
        envvar=MODELS_DIR_ENV,
        help="Folder of Demucs checkpoints (<model>.yaml + <signature>.th) for machines "
        "without network; default: Demucs' own download and cache.",
        show_default=False,
    ),
]
Device = Annotated[str, typer.Option(help="auto (GPU when present), cpu, cuda, cuda:1, ...")]
Format = Annotated[str, typer.Option("--format", help="Stem files: flac, wav (float) or mp3.")]
Segment = Annotated[
    float | None,
    typer.Option(help="Seconds per model chunk (default: the model's own, 7.8 s for htdemucs)."),
]
Overlap = Annotated[float, typer.Option(help="Overlap between chunks, 0 to <1.", min=0, max=0.99)]
Shifts = Annotated[
    int, typer.Option(help="Random time shifts averaged (better, N times slower; 0: exact).", min=0)
]
ProgressFlag = Annotated[bool, typer.Option(help="Show progress bars (stderr).")]


class _AudioBar:
    """Seconds of the current track separated, as a tqdm bar on stderr.

    The bar appears on the first progress report only, so a cache hit prints none.
    """

    def __init__(self, enabled: bool, position: int = 0, leave: bool = True) -> None:
        self.enabled, self.position, self.leave = enabled, position, leave
        self.label = "stems"
        self.bar = None

    def reset(self, label: str) -> None:
        self.close()
        self.label = label

    def __call__(self, done: float, total: float | None) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                desc=self.label, total=round(total) if total else None, unit="s",
                position=self.position, leave=self.leave, file=sys.stderr, dynamic_ncols=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total_fmt} s audio "
                "[{elapsed}<{remaining}]" if total else None,
            )  # fmt: skip
        self.bar.n = min(done, self.bar.total or done)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _separator(model, models_dir, device, fmt, segment, overlap, shifts, progress=None):
    from ingest.stems import StemSeparator, StemSettings

    try:
        settings = StemSettings(
            model=model, segment=segment, overlap=overlap, shifts=shifts, format=fmt.lower()
        )
    except ValueError as exc:
        _fail(str(exc), code=2)
    return StemSeparator(settings, models_dir=models_dir, device=device, progress=progress)


def _render_stems(d: dict) -> None:
    state = "cached" if d["cached"] else "separated"
    if d.get("recomputed_because"):
        state += f" (recomputed: {d['recomputed_because']})"
    typer.echo(f"track #{d['track_id']}: {state} with {d['model']} on {d['device']}")
    for name, path in d["stems"].items():
        typer.echo(f"  {name:<7} {path}")


def _render_batch(d: dict) -> None:
    typer.echo(
        f"{d['tracks']} tracks: separated {d['separated']}, cached {d['cached']}, "
        f"failed {len(d['failed'])}, skipped (failed before) {d['skipped_failed']} "
        f"({d['audio_hours']:.2f} h separated in {d['wall_seconds']:.1f} s)"
    )
    for item in d["failed"][:20]:
        typer.echo(f"  failed: #{item['track_id']} {item['path']}: {item['reason']}")
    if len(d["failed"]) > 20:
        typer.echo(f"  ... and {len(d['failed']) - 20} more (--json lists all)")


def _render_prune(d: dict) -> None:
    verb = "would remove" if d["dry_run"] else "removed"
    typer.echo(
        f"{verb} {d['stem_sets_removed']} stem sets and {d['unrecorded_folders_removed']} "
        f"unrecorded folders ({d['bytes_freed'] / 1e6:.1f} MB)"
    )


class _BatchBars:
    """Tracks done (with failures) on one bar, the current track's audio on a second."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.tracks = None
        self.audio = _AudioBar(enabled, position=1, leave=False)
        self.failed = 0

    def start(self, total_tracks: int) -> None:
        from tqdm import tqdm

        self.tracks = tqdm(
            total=total_tracks, unit="track", desc="stems", disable=not self.enabled,
            position=0, dynamic_ncols=True, file=sys.stderr,
        )  # fmt: skip

    def track(self, target) -> None:
        self.audio.reset(Path(target.path).name[:40])

    def advance(self, result, error: str | None = None) -> None:
        if error is not None:
            self.failed += 1
            self.tracks.set_postfix_str(f"{self.failed} failed", refresh=False)
        self.tracks.update(1)

    def close(self) -> None:
        self.audio.close()
        if self.tracks is not None:
            self.tracks.close()


def stems(
    track: Annotated[
        str | None, typer.Argument(help="Track id or file path (or use --all / --prune).")
    ] = None,
    all_tracks: Annotated[
        bool, typer.Option("--all", help="Every present track (with --genre: of one genre).")
    ] = False,
    genre: Annotated[str | None, typer.Option(help="With --all: only this genre.")] = None,
    prune: Annotated[
        bool, typer.Option("--prune", help="Drop stems of audio no longer in the library.")
    ] = False,
    keep_missing: Annotated[
        bool, typer.Option(help="With --prune: keep stems of tracks marked missing.")
    ] = False,
    dry_run: Annotated[bool, typer.Option(help="With --prune: only report.")] = False,
    model: ModelName = "htdemucs",
    models_dir: ModelsDir = None,
    device: Device = "auto",
    fmt: Format = "flac",
    segment: Segment = None,
    overlap: Overlap = 0.25,
    shifts: Shifts = 1,
    force: Annotated[bool, typer.Option(help="Separate again even if cached.")] = False,
    retry_failed: Annotated[
        bool, typer.Option(help="With --all: retry tracks whose separation failed before.")
    ] = False,
    progress: ProgressFlag = True,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Separate a track into vocals, drums, bass and other with Demucs (cached).

    Stems are written under the data directory and recorded in the catalog, keyed by
    the audio's content hash, the model and the settings: asking again, or for a
    moved or copied file, returns the cached stems at once.
    """
    from ingest.stems import (
        StemSeparationError,
        StemsNotAvailable,
        StemWeightsError,
        prune_stems,
        separate_many,
        separate_track,
    )

    modes = [track is not None, all_tracks, prune]
    if sum(modes) != 1:
        _fail("give exactly one of TRACK, --all or --prune", code=2)
    if genre and not all_tracks:
        _fail("--genre goes with --all", code=2)
    show = progress and not as_json
    with _open_catalog(data_dir, database_url) as catalog:
        if prune:
            _emit(prune_stems(catalog, keep_missing, dry_run), as_json, _render_prune)
            return
        if all_tracks:
            separator = _separator(model, models_dir, device, fmt, segment, overlap, shifts)
            bars = _BatchBars(show)
            separator.progress = bars.audio
            try:
                summary = separate_many(catalog, separator, genre, retry_failed, bars)
            except StemWeightsError as exc:
                _fail(str(exc))
            _emit(summary.to_dict(), as_json, _render_batch)
            if summary.failed and not (summary.separated or summary.cached):
                raise typer.Exit(1)
            return
        track_id = _resolve(catalog, track)
        bar = _AudioBar(show)
        separator = _separator(model, models_dir, device, fmt, segment, overlap, shifts, bar)
        bar.reset(f"stems #{track_id}")
        try:
            result = separate_track(catalog, track_id, separator, force=force)
        except (StemWeightsError, StemSeparationError, StemsNotAvailable) as exc:
            bar.close()
            _fail(str(exc))
        except ValueError as exc:  # e.g. MP3 above 48 kHz, a segment too long for the model
            bar.close()
            _fail(str(exc), code=2)
        bar.close()
    _emit(result.to_dict(), as_json, _render_stems)


def remix(
    track: Annotated[str, typer.Argument(help="Track id or file path.")],
    gain: Annotated[
        list[str] | None,
        typer.Option(help="STEM=GAIN, repeatable (e.g. --gain vocals=0.5).", show_default=False),
    ] = None,
    mute: Annotated[
        list[str] | None, typer.Option(help="Silence a stem (repeatable).", show_default=False)
    ] = None,
    solo: Annotated[
        list[str] | None,
        typer.Option(help="Keep only this stem (repeatable).", show_default=False),
    ] = None,
    karaoke: Annotated[bool, typer.Option(help="Mute the vocals.")] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--output", help="Output file (default: beside the stems, in the data dir)."
        ),
    ] = None,
    out_format: Annotated[
        str | None,
        typer.Option(
            "--output-format", help="flac, wav or mp3 (default: from --output, else flac)."
        ),
    ] = None,
    model: ModelName = "htdemucs",
    models_dir: ModelsDir = None,
    device: Device = "auto",
    fmt: Format = "flac",
    segment: Segment = None,
    overlap: Overlap = 0.25,
    shifts: Shifts = 1,
    progress: ProgressFlag = True,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """Remix station: mix a track's stems with per-stem gains into a new file.

    Uses the cached stems (separating first if there are none): --karaoke mutes the
    vocals, --solo bass keeps only the bass, --gain drums=0.5 halves the drums.
    """
    from ingest.stems import (
        RemixError,
        StemSeparationError,
        StemsNotAvailable,
        StemWeightsError,
        remix_track,
    )

    gains: dict[str, float] = {}
    for item in gain or []:
        name, sep, value = item.partition("=")
        try:
            gains[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            _fail(f"--gain wants STEM=NUMBER, got {item!r}", code=2)
    muted = list(mute or []) + (["vocals"] if karaoke else [])
    show = progress and not as_json
    with _open_catalog(data_dir, database_url) as catalog:
        track_id = _resolve(catalog, track)
        bar = _AudioBar(show)
        separator = _separator(model, models_dir, device, fmt, segment, overlap, shifts, bar)
        bar.reset(f"stems #{track_id}")
        try:
            result = remix_track(
                catalog, track_id, separator, gains, list(solo or []), muted, out, out_format
            )
        except (StemWeightsError, StemSeparationError, StemsNotAvailable) as exc:
            bar.close()
            _fail(str(exc))
        except (RemixError, ValueError) as exc:
            bar.close()
            _fail(str(exc), code=2)
        bar.close()

    def render(d: dict) -> None:
        mix = ", ".join(f"{k} {v:g}" for k, v in d["gains"].items())
        typer.echo(f"track #{d['track_id']}: {mix}")
        typer.echo(f"  wrote {d['path']} ({d['duration_s']:.1f} s)")

    _emit(result.to_dict(), as_json, render)


def register(app: typer.Typer) -> None:
    """Add ``stems`` and ``remix`` to the ``sonic`` command line."""
    command(app, "stems")(stems)
    command(app, "remix")(remix)
