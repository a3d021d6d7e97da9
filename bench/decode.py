"""Decoding per format: every decoder of the audio layer, side by side, on the same files.

Throughput (the default): for each format (MP3, Vorbis, Opus, FLAC, AAC/M4A, WAV) a
corpus of stereo 44.1 kHz music (bench/corpus.py's synthetic tracks; Opus at 48 kHz,
its only rate) is decoded to 22,050 Hz mono in this one process by each decoder that
reads the format, alternating the decoders' order from one repeat to the next. The
figure is audio-minutes per CPU-minute (process CPU time, every thread counted):

- ``libsndfile``: libsndfile (``sf_readf_float``), numpy downmix, soxr HQ on 64k blocks;
- ``libsndfile-opus-native``: the same, Opus decoded natively at 24 kHz rather than 48;
- ``ffmpeg``: FFmpeg decodes, downmixes (pan) and resamples (swresample) in one
  filter graph fed by ``amovie``, delivering 64k-sample mono frames;
- ``ffmpeg+soxr``: the same graph without the resampler; soxr HQ on its 64k blocks;
- for reference, not shipped: ``ffmpeg graph fed per frame`` (the ``ffmpeg`` graph
  with Python pushing it codec frames instead of ``amovie`` reading the file: the
  layer's path for damaged files and non-UTF-8 names), and the decoders this
  replaced, ``before: SoundFile.read`` (soundfile's ``read`` + soxr) and ``before:
  pyav per frame`` (PyAV's ``AudioResampler`` fed codec frame by codec frame,
  FFmpeg's own mono downmix).

Equivalence (``--equivalence``): the same files, plus GTZAN clips converted to every
format (``--gtzan``), decoded by the decoder that read the format before and by
each candidate, each decode turned into the shipped model's track embedding (mean of
its segments' embeddings) and top genre; reports the cosine between the two
embeddings (min / median) and how often the top genre is the same.

Behaviour (``--behaviour OLD_TREE``): a fuzzed folder of hostile files
(tests/fuzz_files.py: damaged, truncated, lying headers, tiny, odd names) is read by
ingest's worker, the upload decoder, training's reader and the stems reader, once with
this tree and once with another checkout (``git archive <commit> | tar -x -C DIR``),
each in its own process; prints which outcomes (decoded or failed) differ.

    python bench/decode.py --tracks 8 --seconds 60 --repeats 5
    python bench/decode.py --equivalence --tracks 8 --seconds 60 \\
        --gtzan /work/data/gtzan/genres --gtzan-per-genre 10
    python bench/decode.py --behaviour /tmp/before --fuzz-count 150

Audio is written under bench/out/ (git-ignored), and so is the JSON of each run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

# One thread each for BLAS and OpenMP: a decode worker runs with one (set before numpy).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import soxr  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from corpus import synth_track  # noqa: E402  (bench/corpus.py, beside this script)

from embeddings.audio import (  # noqa: E402
    DECODER_BY_EXTENSION,
    FFMPEG,
    FFMPEG_SOXR,
    LIBSNDFILE,
    LIBSNDFILE_OPUS_NATIVE,
    decoder_for,
    downmix,
    open_audio,
)

OUT = REPO / "bench" / "out"
TARGET_RATE = 22_050
SR = 44_100
BEFORE_SNDFILE = "before: SoundFile.read"
BEFORE_PYAV = "before: pyav per frame"
FED = "ffmpeg graph fed per frame"  # the layer's path for damaged files and odd names
REFERENCES = (BEFORE_SNDFILE, BEFORE_PYAV, FED)  # timed for comparison, not shipped

# format -> (extension, writer kind); the extension decides the shipped decoder.
FORMATS: dict[str, str] = {
    "mp3": ".mp3",
    "vorbis": ".ogg",
    "opus": ".opus",
    "flac": ".flac",
    "m4a": ".m4a",
    "wav": ".wav",
}
LIBSNDFILE_READS = {"mp3", "vorbis", "opus", "flac", "wav"}


def candidates(fmt: str) -> list[str]:
    """The decoders that read ``fmt``, the replaced ones included."""
    names = [FFMPEG, FFMPEG_SOXR, FED, BEFORE_PYAV]
    if fmt in LIBSNDFILE_READS:
        names = [LIBSNDFILE, BEFORE_SNDFILE, *names]
    if fmt == "opus":
        names.insert(1, LIBSNDFILE_OPUS_NATIVE)
    return names


# -- writing the corpus ------------------------------------------------------------------------


def _write_chunked(path: Path, audio: np.ndarray, rate: int, **kwargs) -> None:
    """libsndfile's Ogg writers, block by block (one whole-track write hangs on Vorbis)."""
    with sf.SoundFile(str(path), "w", rate, audio.shape[1], **kwargs) as fh:
        for start in range(0, len(audio), 1 << 16):
            fh.write(audio[start : start + (1 << 16)])


def _write_m4a(path: Path, audio: np.ndarray, rate: int) -> None:
    """AAC in MP4 at 192 kb/s through PyAV's FFmpeg (libsndfile cannot write it)."""
    import av

    layout = "stereo" if audio.shape[1] == 2 else "mono"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=rate)
        stream.layout = layout
        stream.bit_rate = 192_000
        for start in range(0, len(audio), 1024):
            chunk = np.ascontiguousarray(audio[start : start + 1024].T)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def write_format(path: Path, audio: np.ndarray, rate: int, fmt: str) -> Path:
    """``audio`` (frames, channels) at ``rate`` as ``fmt``; skipped if the file exists."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    if fmt == "opus":  # Opus codes 48 kHz only
        _write_chunked(
            tmp, soxr.resample(audio, rate, 48_000), 48_000, format="OGG", subtype="OPUS"
        )
    elif fmt == "vorbis":
        _write_chunked(tmp, audio, rate, format="OGG", subtype="VORBIS")
    elif fmt == "m4a":
        _write_m4a(tmp, audio, rate)
    else:
        subtype = {"wav": "PCM_16", "flac": "PCM_16", "mp3": "MPEG_LAYER_III"}[fmt]
        sf.write(str(tmp), audio, rate, format=fmt.upper(), subtype=subtype)
    tmp.replace(path)
    return path


def synthetic_corpus(root: Path, tracks: int, seconds: float, formats: Iterable[str]) -> dict:
    """format -> files of the synthetic corpus (written once, reused by later runs)."""
    out: dict[str, list[Path]] = {fmt: [] for fmt in formats}
    for i in range(tracks):
        audio = None
        for fmt in out:
            path = root / f"{seconds:g}s" / fmt / f"track{i:03d}{FORMATS[fmt]}"
            if not path.exists() and audio is None:
                audio = synth_track(seconds, seed=i)
            out[fmt].append(path if path.exists() else write_format(path, audio, SR, fmt))
    return out


def gtzan_corpus(gtzan: Path, root: Path, per_genre: int, formats: Iterable[str]) -> dict:
    """format -> GTZAN clips (22,050 Hz mono) upsampled to 44.1 kHz stereo and converted."""
    out: dict[str, list[Path]] = {fmt: [] for fmt in formats}
    for genre in sorted(p for p in gtzan.iterdir() if p.is_dir()):
        for clip in sorted(genre.glob("*.wav"))[:per_genre]:
            audio = None
            for fmt in out:
                path = root / "gtzan" / fmt / f"{clip.stem}{FORMATS[fmt]}"
                if not path.exists() and audio is None:
                    mono, rate = sf.read(str(clip), dtype="float32")
                    up = soxr.resample(mono, rate, SR).astype(np.float32)
                    audio = np.stack([up, up], axis=1)
                out[fmt].append(path if path.exists() else write_format(path, audio, SR, fmt))
    return out


# -- decoding ----------------------------------------------------------------------------------


def _before_sndfile(path: Path) -> np.ndarray:
    """The replaced libsndfile path: SoundFile.read blocks, downmix, soxr HQ stream."""
    with sf.SoundFile(str(path)) as handle:
        stream = soxr.ResampleStream(handle.samplerate, TARGET_RATE, 1, dtype="float32")
        parts = []
        while len(block := handle.read(1 << 16, dtype="float32", always_2d=True)):
            parts.append(stream.resample_chunk(downmix(block)))
        parts.append(stream.resample_chunk(np.zeros(0, np.float32), last=True))
    return np.concatenate(parts)


def _before_pyav(path: Path) -> np.ndarray:
    """The replaced FFmpeg path: PyAV frames one by one into AudioResampler (FFmpeg's mono)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=TARGET_RATE)
        parts = []
        for frame in container.decode(stream):
            parts += [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]
        parts += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    return np.concatenate(parts).astype(np.float32, copy=False)


def decode(path: Path, decoder: str) -> np.ndarray:
    """``path`` at 22,050 Hz mono by ``decoder``; checks the layer used the one asked for."""
    if decoder == BEFORE_SNDFILE:
        return _before_sndfile(path)
    if decoder == BEFORE_PYAV:
        return _before_pyav(path)
    if decoder == FED:  # FFMPEG's graph, fed by Python instead of amovie
        from embeddings.audio.ffmpeg import probe

        return np.concatenate([b.reshape(-1) for b in probe(path)._fed_blocks(1, TARGET_RATE)])
    stream = open_audio(path, TARGET_RATE, decoder=decoder)
    family = "libsndfile/" if decoder.startswith("libsndfile") else "ffmpeg/"
    if not stream.info.decoder.startswith(family):
        raise RuntimeError(f"{path}: asked for {decoder}, got {stream.info.decoder}")
    audio = np.concatenate(list(stream.blocks))
    if stream.stopped_early:
        raise RuntimeError(f"{path}: {stream.stopped_early}")
    return audio


def _minutes(files: list[Path]) -> float:
    return sum(len(decode(p, FFMPEG_SOXR)) for p in files) / TARGET_RATE / 60


def throughput(corpus: dict[str, list[Path]], repeats: int, only: set[str] | None) -> dict:
    """format -> decoder -> audio-minutes per CPU-minute, one figure per repeat."""
    results: dict[str, dict[str, list[float]]] = {}
    minutes = {fmt: _minutes(files) for fmt, files in corpus.items()}

    def chosen(fmt: str) -> list[str]:
        return [d for d in candidates(fmt) if only is None or d in only]

    for fmt, files in corpus.items():  # warm-up: imports, page cache, FFmpeg's tables
        for decoder in chosen(fmt):
            decode(files[0], decoder)
    for rep in range(repeats):
        for fmt, files in corpus.items():
            names = chosen(fmt)
            names = names[rep % len(names) :] + names[: rep % len(names)]  # alternate
            for decoder in names:
                start = time.process_time()
                for path in files:
                    decode(path, decoder)
                cpu = time.process_time() - start
                rate = minutes[fmt] / (cpu / 60)
                results.setdefault(fmt, {}).setdefault(decoder, []).append(rate)
                print(
                    f"  repeat {rep + 1}/{repeats} {fmt:6s} {decoder:26s} {rate:7.0f}", flush=True
                )
    return {"audio_minutes": minutes, "rates": results}


# -- equivalence -------------------------------------------------------------------------------


def _embedder() -> Callable[[np.ndarray], tuple[np.ndarray, int]]:
    """audio -> (the shipped model's L2-normalised track embedding, its top genre index)."""
    import torch

    from embeddings.checkpoint import load_default_model
    from embeddings.frontend import batch_features, split_segments

    model = load_default_model()
    network, config = model.network.eval(), model.frontend

    @torch.inference_mode()
    def embed(audio: np.ndarray) -> tuple[np.ndarray, int]:
        features = batch_features(split_segments(audio, config), config)
        x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)).unsqueeze(1)
        vectors, probabilities = [], []
        for start in range(0, len(x), 32):
            embedding = network.embed(x[start : start + 32])
            vectors.append(embedding.double().numpy())
            probabilities.append(torch.softmax(network.classify(embedding), 1).double().numpy())
        mean = np.concatenate(vectors).mean(axis=0)
        genre = int(np.argmax(np.concatenate(probabilities).mean(axis=0)))
        return mean / np.linalg.norm(mean), genre

    return embed


def before(fmt: str) -> str:
    return BEFORE_SNDFILE if fmt in LIBSNDFILE_READS else BEFORE_PYAV


def equivalence(corpus: dict[str, list[Path]]) -> dict:
    """format -> candidate -> cosine and top-genre agreement against the decoder before."""
    embed = _embedder()
    report: dict[str, dict] = {}
    for fmt, files in corpus.items():
        old = before(fmt)
        rivals = [d for d in candidates(fmt) if d not in REFERENCES]
        reference = [embed(decode(p, old)) for p in files]
        report[fmt] = {"before": old, "files": len(files), "candidates": {}}
        for decoder in rivals:
            cosines, same = [], 0
            for path, (vector, genre) in zip(files, reference, strict=True):
                new_vector, new_genre = embed(decode(path, decoder))
                cosines.append(float(vector @ new_vector))
                same += new_genre == genre
            entry = {
                "cosine_min": min(cosines),
                "cosine_median": statistics.median(cosines),
                "top_genre_same": same / len(files),
            }
            report[fmt]["candidates"][decoder] = entry
            print(
                f"  {fmt:6s} {decoder:24s} vs {old}: cosine min {entry['cosine_min']:.5f} "
                f"median {entry['cosine_median']:.6f}, top genre same "
                f"{100 * entry['top_genre_same']:.1f} % of {len(files)}",
                flush=True,
            )
    return report


# -- behaviour on hostile files ---------------------------------------------------------------

# Run in a fresh interpreter with PYTHONPATH set to the tree under test: only the
# modules both trees have (ingest's worker, uploads, training, stems) are imported.
_OUTCOMES = """
import json, os, sys
from pathlib import Path
from embeddings.frontend import FrontendConfig
from ingest.clip import ClipError, decode_clip
from ingest.stems.audio import open_blocks
from ingest.worker import Task, analyse_file
try:
    from embeddings.training.dataset import load_audio
except ImportError:  # a tree from before embeddings/training/ (issue 26)
    from embeddings.dataset import load_audio

def ending(message):
    # (done, warning) or (fail, reason) of a worker message, else None; messages are
    # dataclasses (ingest/messages.py), older trees sent tuples.
    if isinstance(message, tuple):
        return {"done": ("done", message[5]), "fail": ("fail", message[2])}.get(message[0])
    kind = type(message).__name__
    if kind == "Done":
        return "done", message.warning
    return ("fail", message.reason) if kind == "Fail" else None

root, out = os.fsencode(sys.argv[1]), sys.argv[2]
found = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)
result = {}
for name in found:
    path, key = Path(os.fsdecode(name)), os.fsdecode(os.path.relpath(name, root))
    sent = []
    analyse_file(Task(0, str(path)), FrontendConfig(), sent.append)
    kind, detail = [e for e in map(ending, sent) if e][-1]
    outcome = {"ingest": ["ok" if kind == "done" else "fail", detail]}
    if path.is_file() and not path.is_symlink():
        try:
            outcome["upload"] = ["ok", len(decode_clip(path, 22050)[0])]
        except ClipError as exc:
            outcome["upload"] = ["fail", str(exc)]
        for reader, read in (
            ("train", lambda: len(load_audio(path, 22050)[0])),
            ("stems", lambda: sum(len(b) for b in open_blocks(path, 2).blocks)),
        ):
            try:
                outcome[reader] = ["ok", read()]
            except Exception as exc:
                outcome[reader] = ["fail", str(exc)]
    result[key] = outcome
Path(out).write_text(json.dumps(result))
"""


def behaviour(old_tree: Path, root: Path, count: int, seed: int) -> dict:
    """Outcome of every fuzz file under this tree and ``old_tree``; which flipped."""
    import subprocess
    import tempfile

    sys.path.insert(0, str(REPO / "tests"))
    from fuzz_files import build_fuzz_folder

    folder = root / f"fuzz-{count}-{seed}"
    if not folder.exists():
        build_fuzz_folder(folder, count=count, seed=seed)
    outcomes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, tree in (("before", old_tree), ("now", REPO)):
            out = Path(tmp) / f"{label}.json"
            env = {**os.environ, "PYTHONPATH": str(tree)}
            subprocess.run(
                [sys.executable, "-c", _OUTCOMES, str(folder), str(out)],
                cwd=tmp, env=env, check=True, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            outcomes[label] = json.loads(out.read_text())
    before, now = outcomes["before"], outcomes["now"]
    counts: dict[str, dict[str, int]] = {}
    flips = []
    for key, readers in before.items():
        for reader, (was, detail) in readers.items():
            is_, new_detail = now[key][reader]
            transition = f"{was} -> {is_}"
            counts.setdefault(reader, {}).setdefault(transition, 0)
            counts[reader][transition] += 1
            if was != is_:
                flips.append({"file": key, "reader": reader, "before": detail, "now": new_detail})
            elif was == "fail" and detail != new_detail:
                counts[reader]["fail -> fail, reason reworded"] = (
                    counts[reader].get("fail -> fail, reason reworded", 0) + 1
                )
    print(f"{len(before)} files in {folder}")
    for reader, by_transition in counts.items():
        print(f"  {reader:7s} " + ", ".join(f"{t}: {n}" for t, n in sorted(by_transition.items())))
    for flip in flips:
        print(f"  {flip['reader']:7s} {flip['file']}: {flip['before']!r} -> {flip['now']!r}")
    return {"files": len(before), "counts": counts, "flips": flips}


# -- reporting ---------------------------------------------------------------------------------


def cpu() -> dict:
    """The CPU's model name and its AVX2 / AVX-512 / AMX flags, from /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"model": platform.processor() or platform.machine(), "flags": []}
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = sorted(set(re.findall(r"\b(avx512[a-z_0-9]*|avx2|amx[a-z_]*)\b", text)))
    return {"model": model.group(1) if model else platform.machine(), "flags": flags}


def print_table(result: dict) -> None:
    rates = result["rates"]
    print("\naudio-min per CPU-min, median (min-max) of the repeats; * = fastest shipped decoder")
    for fmt, by_decoder in rates.items():
        shipped = {d: statistics.median(v) for d, v in by_decoder.items() if d not in REFERENCES}
        best = max(shipped, key=shipped.get)
        chosen = decoder_for(f"x{FORMATS[fmt]}")
        print(f"{fmt} ({FORMATS[fmt]}; ships {chosen}):")
        for decoder, values in by_decoder.items():
            mark = "*" if decoder == best else " "
            print(
                f"  {mark} {decoder:26s} {statistics.median(values):6.0f} "
                f"({min(values):.0f}-{max(values):.0f})"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma-separated")
    parser.add_argument("--decoders", help="comma-separated subset of the decoders to time")
    parser.add_argument("--corpus", type=Path, default=OUT / "decode-corpus")
    parser.add_argument("--equivalence", action="store_true")
    parser.add_argument("--gtzan", type=Path, help="GTZAN genres/ folder (equivalence only)")
    parser.add_argument("--gtzan-per-genre", type=int, default=10)
    parser.add_argument("--behaviour", type=Path, metavar="OLD_TREE", help="compare outcomes")
    parser.add_argument("--fuzz-count", type=int, default=150)
    parser.add_argument("--fuzz-seed", type=int, default=3)
    parser.add_argument("--json", type=Path, help="default: bench/out/decode-<mode>.json")
    args = parser.parse_args()
    formats = [f for f in args.formats.split(",") if f]
    unknown = set(formats) - set(FORMATS)
    if unknown:
        parser.error(f"unknown formats {sorted(unknown)}; choose from {', '.join(FORMATS)}")

    info = cpu()
    print(f"CPU: {info['model']}; flags: {' '.join(info['flags']) or 'none of AVX2/AVX-512/AMX'}")
    import av

    print(
        f"python {platform.python_version()}, numpy {np.__version__}, soundfile "
        f"{sf.__version__} (libsndfile {sf.__libsndfile_version__}), soxr {soxr.__version__}, "
        f"PyAV {av.__version__} (libavcodec {av.library_versions['libavcodec']})"
    )
    record = {
        "cpu": info,
        "tracks": args.tracks,
        "seconds": args.seconds,
        "target_rate": TARGET_RATE,
        "shipped": {fmt: decoder_for(f"x{ext}") for fmt, ext in FORMATS.items()},
        "decoder_by_extension": DECODER_BY_EXTENSION,
    }
    if args.behaviour:
        record["behaviour"] = behaviour(
            args.behaviour, args.corpus, args.fuzz_count, args.fuzz_seed
        )
        mode = "behaviour"
    elif args.equivalence:
        corpus = synthetic_corpus(args.corpus, args.tracks, args.seconds, formats)
        if args.gtzan:
            clips = gtzan_corpus(args.gtzan, args.corpus, args.gtzan_per_genre, formats)
            corpus = {fmt: corpus[fmt] + clips[fmt] for fmt in formats}
        record["equivalence"] = equivalence(corpus)
        mode = "equivalence"
    else:
        print(f"{args.tracks} tracks of {args.seconds:g} s per format, {args.repeats} repeats")
        corpus = synthetic_corpus(args.corpus, args.tracks, args.seconds, formats)
        only = set(args.decoders.split(",")) if args.decoders else None
        record.update(throughput(corpus, args.repeats, only))
        record["repeats"] = args.repeats
        print_table(record)
        mode = "throughput"
    path = args.json or OUT / f"decode-{mode}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
