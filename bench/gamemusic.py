"""Real unlabelled music for pretraining and evaluation: Debian's game soundtracks.

Issue 7 needs music that nobody labelled, arranged so that "same album" means
something: one folder per soundtrack, some soundtracks held out of pretraining so
the same-album precision@5 is measured on music the embedding never saw. Debian
ships the music of several free games as plain packages, which `apt-get download`
fetches without installing anything and `dpkg -x` unpacks into a scratch folder.

What counts as music: a file that libsndfile decodes (OGG/Vorbis or Opus, FLAC,
MP3, WAV), at least 30 s long, under a folder whose name says music (``music/``,
``Music.ocg/``, Nexuiz's ``cdtracks/``, also inside the games' ``.pk3`` zip
archives). Module files (.xm, .it, .mod, .s3m) are skipped: libsndfile cannot
render them. Sound effects, ambient loops in ``sounds/`` and cut-scene speech are
left out by the folder rule and the 30-s floor. One soundtrack per package, named
after the game; soundtracks with fewer than 6 tracks are dropped, since precision@5
needs at least 5 other tracks of the same album. Byte-identical files are kept
once. The audio is copied (not linked) so that the scratch folder can be deleted;
none of it is ever committed.

The held-out/pretrain split is fixed in ``bench/gamemusic_split.json`` beside this
file. The script also lays out two views, ``OUT-heldout/`` and ``OUT-pretrain/``,
whose soundtrack folders hold symlinks to the files in ``OUT/``, so a command that
takes "a folder of albums" can be pointed at one side of the split; the resolved
path of every file stays the one under ``OUT/``.

    python bench/gamemusic.py                    # packages under ~400 MB
    python bench/gamemusic.py --large            # also supertuxkart, redeclipse, 0ad
    python bench/gamemusic.py --large --more     # and 11 more games, for pretraining only
    python bench/gamemusic.py --large --more --heldout-more  # and 7 more held-out games
    python bench/gamemusic.py --packages hyperrogue-music nexuiz-music

Idempotent: downloaded .deb files, unpacked packages and copied tracks are reused.
Run it under ``nice -n 19`` on a shared machine (unpacking is CPU-bound).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

# Sizes of the .deb files (Debian 12), in MB, to say what the default costs.
DEFAULT_PACKAGES = [
    "hyperrogue-music",  # 64
    "marsshooter-data",  # 68
    "nexuiz-music",  # 84
    "openclonk-data",  # 112
    "hedgewars-data",  # 145
    "supertux-data",  # 162
    "freedroidrpg-data",  # 228
    "megaglest-data",  # 242
    "widelands-data",  # 381
]
LARGE_PACKAGES = [
    "supertuxkart-data",  # 628
    "redeclipse-data",  # 862
    "0ad-data",  # 1378
]
# More soundtracks, all on the pretraining side of the split: the second pretraining
# round found that 7 soundtracks teach a network to tell tracks apart rather than
# what the tracks of one album share, and album-level positives need many albums.
MORE_PACKAGES = [  # those of ~25 game packages that hold >= 6 music tracks
    "singularity-music",  # 50
    "planetblupi-music-ogg",  # 58
    "warzone2100-music",  # 82
    "wesnoth-1.16-music",  # 147
    "ufoai-music",  # 201
    "naev-data",  # 334
    "flare-game",  # 117
    "starfighter-data",  # 44
    "xmoto-data",  # 31
    "extremetuxracer-data",  # 39
    "plee-the-bear-data",  # 31
]
# More held-out soundtracks (the fourth round): the first five held-out soundtracks
# (59 tracks) could not resolve differences under about 0.06 in precision@5.
# None of these was ever pretrained or distilled on.
HELDOUT_PACKAGES = [
    "amoebax-data",  # 8
    "enigma-data",  # 30
    "fillets-ng-data",  # 70
    "trackballs-data",  # 31
    "warmux-data",  # 98
    "pushover-data",  # 32
    "drascula-music",  # 58
]
# Packages that keep their music outside a folder named for it: the folder that
# holds it. Drascula ships the same 31 CD tracks once per language; "audio/" is one.
MUSIC_FOLDERS = {
    "pushover-data": "themes",
    "drascula-music": "audio",
}
AUDIO_SUFFIXES = {".ogg", ".oga", ".opus", ".flac", ".mp3", ".wav"}
ARCHIVE_SUFFIXES = {".pk3", ".pk4", ".zip"}
MIN_SECONDS = 30.0
MIN_TRACKS = 6
SPLIT_FILE = Path(__file__).with_name("gamemusic_split.json")


@dataclass
class Track:
    soundtrack: str
    source: str  # where it came from: a path, or "archive.pk3:member"
    name: str  # file name inside the soundtrack folder
    seconds: float
    sha1: str


def soundtrack_name(package: str) -> str:
    """``hedgewars-data`` -> ``hedgewars``: one soundtrack per game."""
    return re.sub(r"-(data|music|music-ogg)$", "", package)


def is_music_path(parts: tuple[str, ...], extra_folder: str | None = None) -> bool:
    """True when a folder on the path is a music folder (not sounds/ or sfx/).

    ``extra_folder``: one more folder name that counts, for a package that keeps
    its music elsewhere (``MUSIC_FOLDERS``).
    """
    folders = [p.lower() for p in parts[:-1]]
    named = {"cdtracks", "soundtrack", "soundtracks"} | ({extra_folder} if extra_folder else set())
    return any("music" in f or f in named for f in folders)


def run(cmd: list[str], cwd: Path | None = None) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, check=True)


def download(package: str, debs: Path) -> Path:
    """The package's .deb in ``debs``, fetched with ``apt-get download`` if absent."""
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        run(["apt-get", "download", package], cwd=debs)
        found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        raise RuntimeError(f"apt-get download {package} left no .deb in {debs}")
    return found[-1]


def unpack(deb: Path, package: str, debs: Path) -> Path:
    """``dpkg -x`` into ``debs/unpacked/PACKAGE``; a ``.done`` marker makes it resumable."""
    target = debs / "unpacked" / package
    if not (target / ".done").exists():
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        run(["dpkg", "-x", str(deb), str(target)])
        (target / ".done").touch()
    return target


def _duration(path_or_file) -> float | None:
    try:
        return float(sf.info(path_or_file).duration)
    except Exception:  # not decodable by libsndfile: not for us
        return None


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def find_music(
    root: Path, soundtrack: str, staging: Path, extra_folder: str | None = None
) -> list[tuple[Track, Path]]:
    """Music files in an unpacked package, with the path to copy each from.

    Members of zip archives (``.pk3``) are extracted into ``staging`` first.
    """
    found: list[tuple[Track, Path]] = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(root)
        suffix = path.suffix.lower()
        if suffix in AUDIO_SUFFIXES and is_music_path(rel.parts, extra_folder):
            seconds = _duration(str(path))
            if seconds is not None and seconds >= MIN_SECONDS:
                track = Track(soundtrack, str(rel), path.name, seconds, _sha1(path))
                found.append((track, path))
        elif suffix in ARCHIVE_SUFFIXES and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for member in sorted(archive.namelist()):
                    parts = tuple(member.split("/"))
                    if Path(member).suffix.lower() not in AUDIO_SUFFIXES:
                        continue
                    if not is_music_path(parts, extra_folder):
                        continue
                    extracted = staging / soundtrack / path.name / member
                    if not extracted.exists():
                        extracted.parent.mkdir(parents=True, exist_ok=True)
                        tmp = extracted.with_name(extracted.name + ".part")
                        with archive.open(member) as src, open(tmp, "wb") as dst:
                            shutil.copyfileobj(src, dst)
                        tmp.replace(extracted)
                    seconds = _duration(str(extracted))
                    if seconds is not None and seconds >= MIN_SECONDS:
                        source = f"{rel}:{member}"
                        track = Track(
                            soundtrack, source, Path(member).name, seconds, _sha1(extracted)
                        )
                        found.append((track, extracted))
    # Same file name from two folders of one game: prefix the folder to keep both.
    counts: dict[str, int] = {}
    for track, _ in found:
        counts[track.name] = counts.get(track.name, 0) + 1
    for track, src in found:
        if counts[track.name] > 1:
            track.name = f"{src.parent.name}_{track.name}"
    return found


def copy_track(src: Path, dst: Path) -> None:
    """Copy unless an identical-size copy is already there (atomic via rename)."""
    if dst.exists() and dst.stat().st_size == src.stat().st_size:
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".part")
    shutil.copyfile(src, tmp)
    tmp.replace(dst)


def make_views(out: Path, split: dict[str, list[str]], present: set[str]) -> None:
    """``OUT-heldout/`` and ``OUT-pretrain/``: real folders of symlinks to OUT's files.

    Folders of file links, not links to folders, because ``os.walk`` does not
    descend into linked folders.
    """
    for side in ("heldout", "pretrain"):
        view = out.with_name(f"{out.name}-{side}")
        if view.exists():
            shutil.rmtree(view)
        for name in split.get(side, []):
            if name not in present:
                continue
            (view / name).mkdir(parents=True)
            for f in sorted((out / name).iterdir()):
                os.symlink(f.resolve(), view / name / f.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--debs",
        type=Path,
        default=Path("/work/data/debs"),
        help="scratch folder for .deb files and their unpacked trees",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("/work/data/gamemusic"),
        help="output: OUT/<soundtrack>/<file>",
    )
    parser.add_argument(
        "--large",
        action="store_true",
        help="also the packages over 400 MB: " + ", ".join(LARGE_PACKAGES),
    )
    parser.add_argument(
        "--more",
        action="store_true",
        help=f"also {len(MORE_PACKAGES)} more games' packages (pretraining side only)",
    )
    parser.add_argument(
        "--heldout-more",
        action="store_true",
        help=f"also {len(HELDOUT_PACKAGES)} more games' packages (held-out side only)",
    )
    parser.add_argument("--packages", nargs="+", help="exactly these packages instead")
    parser.add_argument("--min-tracks", type=int, default=MIN_TRACKS)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)

    packages = args.packages or (
        DEFAULT_PACKAGES
        + (LARGE_PACKAGES if args.large else [])
        + (MORE_PACKAGES if args.more else [])
        + (HELDOUT_PACKAGES if args.heldout_more else [])
    )
    debs: Path = args.debs
    out: Path = args.out
    debs.mkdir(parents=True, exist_ok=True)
    staging = debs / "extracted"

    seen: dict[str, Track] = {}
    kept: dict[str, list[Track]] = {}
    for package in packages:
        try:
            deb = download(package, debs)
        except (subprocess.CalledProcessError, RuntimeError) as exc:
            print(f"skip {package}: {exc}", file=sys.stderr)
            continue
        root = unpack(deb, package, debs)
        name = soundtrack_name(package)
        pairs: list[tuple[Track, Path]] = []
        for track, src in find_music(root, name, staging, MUSIC_FOLDERS.get(package)):
            first = seen.setdefault(track.sha1, track)
            if first is not track:
                print(
                    f"  {name}/{track.name} duplicates {first.soundtrack}/{first.name}: skipped",
                    file=sys.stderr,
                )
                continue
            pairs.append((track, src))
        tracks = [t for t, _ in pairs]
        if len(tracks) < args.min_tracks:
            print(f"drop {name}: {len(tracks)} music tracks (< {args.min_tracks})", file=sys.stderr)
            continue
        for track, src in pairs:
            copy_track(src, out / name / track.name)
        kept[name] = tracks

    out.mkdir(parents=True, exist_ok=True)
    manifest = {
        name: [
            {"file": t.name, "seconds": round(t.seconds, 2), "source": t.source, "sha1": t.sha1}
            for t in tracks
        ]
        for name, tracks in sorted(kept.items())
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")

    split = json.loads(SPLIT_FILE.read_text()) if SPLIT_FILE.exists() else {}
    make_views(out, split, set(kept))  # this run's soundtracks only, as in the manifest

    side_of = {n: side for side in ("heldout", "pretrain") for n in split.get(side, [])}
    summary = [
        {
            "soundtrack": name,
            "tracks": len(tracks),
            "minutes": round(sum(t.seconds for t in tracks) / 60, 1),
            "split": side_of.get(name, "unassigned"),
        }
        for name, tracks in sorted(kept.items())
    ]
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(f"\n{'soundtrack':<16}{'tracks':>7}{'minutes':>9}  split")
        for row in summary:
            print(
                f"{row['soundtrack']:<16}{row['tracks']:>7}{row['minutes']:>9.1f}  {row['split']}"
            )
        for side in ("heldout", "pretrain", "unassigned"):
            rows = [r for r in summary if r["split"] == side]
            if rows:
                print(
                    f"{side:<16}{sum(r['tracks'] for r in rows):>7}"
                    f"{sum(r['minutes'] for r in rows):>9.1f}  ({len(rows)} soundtracks)"
                )
        print(f"\n{out}/<soundtrack>/; views {out}-heldout/ and {out}-pretrain/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
