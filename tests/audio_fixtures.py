"""Synthesised audio and libraries for the tests: nothing is downloaded.

Signals are chosen to be different from each other in ways a spectrogram sees
(tones, noise, click tracks, chords), and files are written in every format the
ingest reads, with tags written by mutagen.
"""

from __future__ import annotations

import io
import shutil
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf


def tone(freq: float, seconds: float, sr: int = 22050, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def chord(freqs: list[float], seconds: float, sr: int = 22050) -> np.ndarray:
    return sum(tone(f, seconds, sr, 0.2) for f in freqs).astype(np.float32)


def noise(seconds: float, sr: int = 22050, seed: int = 0, amp: float = 0.2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (amp * rng.standard_normal(int(seconds * sr))).astype(np.float32)


def clicks(seconds: float, sr: int = 22050, bpm: float = 120) -> np.ndarray:
    out = np.zeros(int(seconds * sr), dtype=np.float32)
    step = int(sr * 60 / bpm)
    burst = np.hanning(200).astype(np.float32) * 0.8
    for start in range(0, len(out) - 200, step):
        out[start : start + 200] += burst
    return out


def write(path: Path, audio: np.ndarray, sr: int, **kwargs) -> Path:
    """Write ``audio`` in blocks: libsndfile 1.2's Vorbis encoder crashes on one long write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = 1 if audio.ndim == 1 else audio.shape[1]
    with sf.SoundFile(str(path), "w", sr, channels, **kwargs) as out:
        for start in range(0, len(audio), 1 << 15):
            out.write(audio[start : start + (1 << 15)])
    return path


def write_m4a(path: Path, audio: np.ndarray, sr: int) -> Path:
    """AAC in MP4 through PyAV's FFmpeg (libsndfile cannot write it)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=sr)
        stream.layout = "mono"
        frame_size = 1024
        for start in range(0, len(audio), frame_size):
            chunk = audio[start : start + frame_size].reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(chunk), format="flt", layout="mono"
            )
            frame.sample_rate = sr
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def tag(path: Path, title: str, artist: str, album: str, track: int) -> None:
    import mutagen

    audio = mutagen.File(str(path), easy=True)
    if audio.tags is None:
        audio.add_tags()
    audio["title"] = title
    audio["artist"] = artist
    audio["album"] = album
    audio["tracknumber"] = str(track)
    audio.save()


@dataclass
class Library:
    root: Path
    good: dict[str, Path]  # name -> file that must be analysed
    bad: dict[str, Path]  # name -> file that must be recorded as failed
    tagged: dict[str, tuple[str, str, str, int]]  # name -> (title, artist, album, track)


def build_library(root: Path) -> Library:
    """A small library: every format, tags, and every kind of bad file the issue lists."""
    sr44 = 44100
    good = {
        "tone_wav": write(root / "albumA" / "tone.wav", tone(440, 7, sr44), sr44),
        "noise_flac": write(root / "albumA" / "noise.flac", noise(6.5, 48000, seed=1), 48000),
        "clicks_ogg": write(root / "albumB" / "clicks.ogg", clicks(7, 22050), 22050),
        "chord_mp3": write(
            root / "albumB" / "chord.mp3", chord([261.6, 329.6, 392.0], 8, sr44), sr44
        ),
        "opus": write(
            root / "albumC" / "bass.opus", tone(80, 6, 48000), 48000, format="OGG", subtype="OPUS"
        ),
        "aiff": write(root / "albumC" / "high.aiff", tone(3000, 6.2, sr44), sr44),
        "m4a": write_m4a(root / "albumC" / "sweep.m4a", chord([200, 1200], 6, sr44), sr44),
        "short": write(root / "odd" / "short.wav", tone(660, 1.0, 22050), 22050),
        "multichannel": write(
            root / "odd" / "surround.wav",
            np.stack([tone(110 * (i + 1), 6.5, 48000) for i in range(6)], axis=1),
            48000,
        ),
        "oddrate": write(root / "odd" / "oddrate.wav", noise(6, 11025, seed=2), 11025),
        "oddrate2": write(root / "odd" / "oddrate2.flac", clicks(6, 37800), 37800),
    }
    tagged = {
        "noise_flac": ("Static", "The Noisemakers", "Hiss", 2),
        "clicks_ogg": ("Metronome", "Click Band", "Tempo", 1),
        "chord_mp3": ("C Major", "Piano Person", "Harmony", 3),
        "m4a": ("Sweep", "Synth Person", "Harmony", 4),
    }
    for name, (title, artist, album, number) in tagged.items():
        tag(good[name], title, artist, album, number)
    # Cut-off downloads: analysed as far as they decode, with a warning.
    for name, source in (("truncated_mp3", "chord_mp3"), ("truncated_flac", "noise_flac")):
        data = good[source].read_bytes()
        target = root / "odd" / f"cut_{good[source].name}"
        target.write_bytes(data[: len(data) // 2])
        good[name] = target

    bad_dir = root / "bad"
    bad_dir.mkdir(parents=True)
    bad = {
        "zero": bad_dir / "zero.mp3",
        "text": bad_dir / "notes.flac",
        "header_only": bad_dir / "header.wav",
        "silent": write(bad_dir / "silent.wav", np.zeros(22050 * 4, dtype=np.float32), 22050),
    }
    bad["zero"].write_bytes(b"")
    bad["text"].write_text("this is a shopping list, not a FLAC file\n" * 50)
    full = write(root / "tmp_full.wav", tone(500, 3, 22050), 22050)
    bad["header_only"].write_bytes(full.read_bytes()[:30])
    full.unlink()
    return Library(root=root, good=good, bad=bad, tagged=tagged)


def copy_library(source: Library, dest: Path) -> Library:
    shutil.copytree(source.root, dest)

    def remap(files: dict[str, Path]) -> dict[str, Path]:
        return {k: dest / p.relative_to(source.root) for k, p in files.items()}

    return Library(dest, remap(source.good), remap(source.bad), dict(source.tagged))


# -- hostile files: headers written by hand where soundfile would refuse -----------------


def write_raw_wav(
    path: Path,
    payload: bytes,
    sample_rate: int,
    channels: int,
    bits: int = 16,
    format_tag: int = 1,
) -> Path:
    """A RIFF/WAVE file with exactly the header fields given, whatever they claim.

    ``format_tag`` 1 is integer PCM, 3 is IEEE float. Nothing is checked: this is
    how the tests make files that declare a 1 Hz rate or 64 channels.
    """
    import struct

    block_align = channels * bits // 8
    fmt = struct.pack(
        "<HHIIHH", format_tag, channels, sample_rate, sample_rate * block_align, block_align, bits
    )
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(payload)) + payload
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def write_float_wav(path: Path, audio: np.ndarray, sample_rate: int) -> Path:
    """32-bit float WAV of ``audio`` bit for bit: NaN, infinities and 1e30 included."""
    samples = np.asarray(audio, dtype="<f4")
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    return write_raw_wav(path, samples.tobytes(), sample_rate, channels, 32, format_tag=3)


def wav_bytes(audio: np.ndarray, sr: int = 22050) -> bytes:
    """16-bit mono WAV bytes of ``audio``, as a browser or a script would upload them."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(sr)
        fh.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()
