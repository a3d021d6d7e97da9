"""A fuzzed music folder, made from a fixed seed: every kind of hostile file issue 28 found.

Used by ``tests/test_torture.py`` (a small set) and ``bench/torture.py`` (hundreds).
Each file is generated here; nothing is downloaded. The folder holds:

- intact good files in every format ingest reads (WAV, FLAC, OGG, Opus, MP3, M4A);
- damaged copies of them: truncated, header bytes flipped, body bytes flipped,
  zero-filled, a format under another's extension;
- WAV headers that lie: 1 Hz and 1 MHz sample rates, 0 and 64 channels, a data
  chunk far longer than the file; float WAVs with NaN, Inf and 1e30 samples;
- tiny files (one sample, 30 samples, 0.2 s), an empty file, random bytes;
- odd names (Latin-1 bytes, shell characters, a very long name);
- things that are not regular files: a fifo, a symlink to /dev/zero, a dangling
  symlink and a symlink loop.
"""

from __future__ import annotations

import os
import random
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audio_fixtures import chord, clicks, noise, tone, write, write_m4a

SR = 22050
FORMATS = ("wav", "flac", "ogg", "opus", "mp3", "m4a")


@dataclass
class FuzzFolder:
    root: Path
    good: list[str] = field(default_factory=list)  # intact files that must be indexed
    hostile: list[str] = field(default_factory=list)  # anything may happen but a crash
    specials: list[str] = field(default_factory=list)  # fifos and links: must be recorded


def _music(rng: random.Random, seconds: float) -> np.ndarray:
    kind = rng.randrange(4)
    if kind == 0:
        return tone(rng.uniform(110, 880), seconds)
    if kind == 1:
        base = rng.uniform(110, 440)
        return chord([base, base * 1.26, base * 1.5], seconds)
    if kind == 2:
        return tone(rng.uniform(60, 200), seconds) + clicks(seconds, bpm=rng.uniform(70, 160))
    return noise(seconds, seed=rng.randrange(1 << 30)) + tone(rng.uniform(200, 600), seconds)


def _write_good(path: Path, fmt: str, audio: np.ndarray) -> Path:
    if fmt == "m4a":
        return write_m4a(path, audio, SR)
    if fmt == "opus":  # Opus has no 22,050 Hz mode: 48 kHz, as Opus files are
        import soxr

        return write(path, soxr.resample(audio, SR, 48000), 48000, format="OGG", subtype="OPUS")
    return write(path, audio, SR)


def wav_header(
    rate: int, channels: int, bits: int = 16, data_bytes: int = 0, fmt_code: int = 1
) -> bytes:
    """A RIFF/WAVE header whose fields say whatever the caller wants, true or not."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_code, channels, rate, rate * block, block, bits)
    return (
        b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
        + b"fmt " + struct.pack("<I", 16) + fmt
        + b"data" + struct.pack("<I", data_bytes)
    )  # fmt: skip


def _float_wav(samples: np.ndarray) -> bytes:
    data = samples.astype("<f4").tobytes()
    return wav_header(SR, 1, 32, len(data), fmt_code=3) + data


def _lying_wavs(rng: random.Random) -> dict[str, bytes]:
    pcm = (np.sin(np.arange(SR * 2) / 7) * 8000).astype("<i2").tobytes()
    nan = tone(440, 2.0).copy()
    nan[rng.randrange(len(nan))] = np.nan
    inf = tone(330, 2.0).copy()
    inf[::997] = np.inf
    huge = tone(220, 2.0) * 1e30
    return {
        "rate-1hz.wav": wav_header(1, 1, 16, len(pcm)) + pcm,
        "rate-1mhz.wav": wav_header(1_000_000, 1, 16, len(pcm)) + pcm,
        "channels-0.wav": wav_header(SR, 0, 16, len(pcm)) + pcm,
        "channels-64.wav": wav_header(SR, 64, 16, len(pcm)) + pcm,
        "long-data-chunk.wav": wav_header(SR, 1, 16, 0x7FFFFFF0) + pcm,
        "nan.wav": _float_wav(nan),
        "inf.wav": _float_wav(inf),
        "huge.wav": _float_wav(huge),
        "all-nan.wav": _float_wav(np.full(SR, np.nan, dtype=np.float32)),
        "one-sample.wav": _float_wav(np.array([0.5], dtype=np.float32)),
        "thirty-samples.wav": _float_wav(tone(440, 30 / SR)),
        "fifth-second.wav": _float_wav(tone(440, 0.2)),
    }


def _damage(data: bytes, how: str, rng: random.Random) -> bytes:
    n = len(data)
    if how == "truncated":
        return data[: rng.randrange(1, max(2, n // 2))]
    if how == "header-flipped":
        out = bytearray(data)
        for _ in range(rng.randrange(1, 8)):
            out[rng.randrange(min(n, 64))] ^= 1 << rng.randrange(8)
        return bytes(out)
    if how == "body-flipped":
        out = bytearray(data)
        for _ in range(rng.randrange(5, 50)):
            out[rng.randrange(n // 4, n)] = rng.randrange(256)
        return bytes(out)
    if how == "zero-filled":
        start = rng.randrange(n // 2)
        return data[:start] + bytes(n - start)
    raise ValueError(how)


DAMAGE = ("truncated", "header-flipped", "body-flipped", "zero-filled")


def build_fuzz_folder(root: Path, count: int, seed: int = 0, seconds: float = 3.0) -> FuzzFolder:
    """``count`` damaged files (plus the fixed hostile set and a good file per format)."""
    rng = random.Random(seed)
    folder = FuzzFolder(root)
    good_dir, bad_dir, odd_dir = root / "good", root / "fuzzed", root / "odd"
    for d in (good_dir, bad_dir, odd_dir):
        d.mkdir(parents=True, exist_ok=True)
    sources: list[Path] = []
    for i, fmt in enumerate(FORMATS):
        path = _write_good(good_dir / f"good-{i}.{fmt}", fmt, _music(rng, seconds))
        folder.good.append(str(path))
        sources.append(path)
    for i in range(count):
        source = rng.choice(sources)
        how = rng.choice(DAMAGE)
        ext = source.suffix if rng.random() > 0.15 else rng.choice([".mp3", ".flac", ".wav"])
        target = bad_dir / f"{i:04d}-{how}-{source.stem}{ext}"
        target.write_bytes(_damage(source.read_bytes(), how, rng))
        folder.hostile.append(str(target))
    for name, data in _lying_wavs(rng).items():
        (odd_dir / name).write_bytes(data)
        folder.hostile.append(str(odd_dir / name))
    (odd_dir / "empty.mp3").write_bytes(b"")
    (odd_dir / "random.ogg").write_bytes(rng.randbytes(4096))
    folder.hostile += [str(odd_dir / "empty.mp3"), str(odd_dir / "random.ogg")]
    # odd names around good audio: these must be indexed like any other
    for raw in (b"caf\xe9 latin-1.wav", b"$(touch pwned); `x` 'q' \"d\" & | ;.wav",
                b"long-" + b"x" * 200 + b".wav"):  # fmt: skip
        scratch = write(root / "scratch.wav", _music(rng, seconds), SR)
        target = os.path.join(os.fsencode(odd_dir), raw)
        os.replace(scratch, target)
        folder.good.append(os.fsdecode(target))
    specials = odd_dir / "specials"
    specials.mkdir()
    os.mkfifo(specials / "fifo.wav")
    os.symlink("/dev/zero", specials / "zero.wav")
    os.symlink(specials / "nowhere.wav", specials / "dangling.wav")
    os.symlink(specials / "loop-b.wav", specials / "loop-a.wav")
    os.symlink(specials / "loop-a.wav", specials / "loop-b.wav")
    folder.specials += [
        str(specials / n) for n in ("fifo.wav", "zero.wav", "dangling.wav", "loop-a.wav",
                                    "loop-b.wav")
    ]  # fmt: skip
    return folder
