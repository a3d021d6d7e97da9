"""Separating one audio file into stem files with one Demucs model.

Why a module of its own: this is the one place where a file, a model and the
streamed split meet (decode blocks, resample to the model's rate, split, resample
back, write). It knows nothing of the catalog or the cache: :mod:`ingest.stems.cache`
decides whether to call it, and where its output goes.

``apply_model`` and ``load_demucs_model`` are looked up in this module's namespace
when a chunk runs or a model loads: patch them here (``ingest.stems.separator``)
to intercept them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from demucs.apply import TensorChunk, apply_model

from embeddings.audio import DecodeError
from embeddings.device import pick_device
from ingest.stems.audio import BlockResampler, StemFileWriter, open_blocks
from ingest.stems.settings import StemSettings
from ingest.stems.split import ShiftedSplit, SplitStream
from ingest.stems.weights import _check_segment, load_demucs_model, model_segment

Progress = Callable[[float, float | None], None]  # (source seconds done, total or None)
# (chunks run, chunks in all or None): called after every model call, so it is also the
# place a caller stops a separation, by raising (the files written so far are dropped).
ChunkProgress = Callable[[int, int | None], None]


@dataclass
class SeparatedFile:
    """What one separation wrote: the cache records it as the stem set."""

    stems: dict[str, Path]
    sample_rate: int
    channels: int
    frames: int
    seconds: float


class StemSeparator:
    """Runs one Demucs model over files; the model is loaded on first use only.

    ``model`` may be given directly (tests, benchmarks); otherwise it is loaded by
    name from ``models_dir`` / $SONIC_DEMUCS_DIR, else Demucs' own download and cache.
    """

    def __init__(
        self,
        settings: StemSettings | None = None,
        models_dir: Path | None = None,
        device: str | None = "auto",
        model=None,
        progress: Progress | None = None,
        chunks: ChunkProgress | None = None,
    ) -> None:
        self.settings = settings or StemSettings()
        self.models_dir = models_dir
        self.device = pick_device(device)
        self._model = model
        self._ready = False  # model placed on the device and settings checked
        self.progress = progress
        self.chunks = chunks
        self.chunks_run = 0  # model calls, for tests and reports
        self._file_chunks = 0  # model calls for the file being separated
        self._planned: int | None = None  # chunks that file needs, from its declared length

    @property
    def model(self):
        if self._model is None:
            self._model = load_demucs_model(self.settings.model, self.models_dir)
        if not self._ready:
            self._model.to(self.device).eval()
            _check_segment(self._model, self.settings.segment)
            self._ready = True
        return self._model

    @property
    def sources(self) -> list[str]:
        return list(self.model.sources)

    def _run_chunk(self, chunk: TensorChunk) -> torch.Tensor:
        self.chunks_run += 1
        out = apply_model(
            self.model, chunk, shifts=0, split=False, segment=self.settings.segment,
            device=self.device,
        )  # fmt: skip
        self._file_chunks += 1
        if self.chunks:
            planned = self._planned
            self.chunks(self._file_chunks, max(planned, self._file_chunks) if planned else None)
        return out[0]

    def separate_file(self, path: Path, out_dir: Path) -> SeparatedFile:
        """Separate ``path`` into ``out_dir/<stem>.<format>`` at the file's own rate and length."""
        started = time.perf_counter()
        model = self.model
        rate, channels = int(model.samplerate), int(model.audio_channels)
        sources = list(model.sources)
        segment = self.settings.segment or model_segment(model)
        audio = open_blocks(path, channels)
        ext = self.settings.format
        paths = {name: Path(out_dir) / f"{name}.{ext}" for name in sources}
        writer = StemFileWriter(paths, audio.sample_rate, channels, self.settings.format)
        to_model = BlockResampler(audio.sample_rate, rate, channels)
        from_model = BlockResampler(rate, audio.sample_rate, len(sources) * channels)
        splitter = ShiftedSplit(
            lambda prefix: SplitStream(
                self._run_chunk, int(rate * segment), self.settings.overlap, len(sources),
                channels, self.device, prefix=prefix,
            ),
            self.settings.shifts,
            int(0.5 * rate),
        )  # fmt: skip
        total_s = audio.frames / audio.sample_rate if audio.frames else None
        # The container's declared length, at the model's rate: the total to show while
        # running; the count is made exact when the input ends (containers may lie).
        self._file_chunks = 0
        self._planned = (
            splitter.planned_chunks(round(audio.frames * rate / audio.sample_rate))
            if audio.frames
            else None
        )
        decoded = 0

        def write(outputs: list[torch.Tensor], last: bool = False) -> None:
            for out in outputs:
                # (sources, channels, n) -> (n, sources * channels) for one resampler
                frames = out.reshape(len(sources) * channels, -1).T.numpy()
                self._write(writer, sources, channels, from_model(frames))
            if last:
                tail = from_model(np.zeros((0, len(sources) * channels), np.float32), last=True)
                self._write(writer, sources, channels, tail)

        try:
            with torch.no_grad():  # inference_mode measured ~130 MB higher peak RSS
                for block in audio.blocks:
                    decoded += len(block)
                    resampled = to_model(block)
                    if len(resampled):
                        write(splitter.push(torch.from_numpy(resampled.T.copy())))
                    if self.progress:  # stems written so far: the separation's own pace
                        self.progress(writer.written / audio.sample_rate, total_s)
                tail = to_model(np.zeros((0, channels), np.float32), last=True)
                if len(tail):
                    write(splitter.push(torch.from_numpy(tail.T.copy())))
                if decoded == 0:
                    raise DecodeError("no audio frames in the file")
                writer.limit = decoded
                write(splitter.finish(), last=True)
            frames = writer.close()
            if self.progress:
                self.progress(frames / audio.sample_rate, total_s or frames / audio.sample_rate)
            if self.chunks:
                self.chunks(self._file_chunks, self._file_chunks)  # every chunk ran: exact
        except BaseException:
            writer.abort()
            raise
        return SeparatedFile(
            paths, audio.sample_rate, channels, frames, time.perf_counter() - started
        )

    @staticmethod
    def _write(writer: StemFileWriter, sources: list[str], channels: int, frames: np.ndarray):
        if len(frames):
            writer.write(
                {
                    name: frames[:, i * channels : (i + 1) * channels]
                    for i, name in enumerate(sources)
                }
            )
