"""What a header may declare and what a sample may hold, checked in one place.

Hostile or damaged files have made the decoders allocate gigabytes (a WAV declaring
1 Hz) and the network answer NaN (float files holding infinities). Every decoder of
:mod:`embeddings.audio` runs these checks, so ingest, uploads, stems and training
refuse and repair the same files with the same words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embeddings.audio.errors import DecodeError

SILENCE_PEAK = 1e-4  # -80 dBFS: below one 16-bit LSB of dither counts as silence

# What a header may declare before anything is allocated for it. The resampler's
# output per block grows with target rate / source rate: a WAV declaring 1 Hz made
# one 64k-frame read come out as 1.4 billion samples (a 9 GB process). Real audio
# lives well inside these bounds (8 kHz telephony to 384 kHz studio masters, 7.1.4
# and ambisonic layouts well under 32 channels).
MIN_SAMPLE_RATE = 4_000
MAX_SAMPLE_RATE = 384_000
MAX_CHANNELS = 32

# Float files can hold any value; audio is nominally within +-1. A sample beyond
# +-SAMPLE_BOUND (60 dB over full scale) is damage, and squares of values like 1e30
# overflow float32 in the power spectrum, so such samples are clipped to the bound.
SAMPLE_BOUND = 1_000.0

NO_FINITE_SAMPLES = "no finite audio samples (every sample is NaN or infinite)"


class HeaderRefused(DecodeError):
    """The header declares what no real audio has: no other decoder is tried on it."""


def check_header(sample_rate: int, channels: int) -> None:
    """Refuse a header whose rate or channel count no real audio has, before any read.

    Every open path calls this (libsndfile and FFmpeg, streaming and whole-file), so
    ingest, uploads, stems and training share one rule and one wording.
    """
    if sample_rate <= 0 or channels <= 0:
        raise HeaderRefused("file declares no sample rate or channels")
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise HeaderRefused(
            f"the file declares a sample rate of {sample_rate:,} Hz; only "
            f"{MIN_SAMPLE_RATE:,}–{MAX_SAMPLE_RATE:,} Hz are read"
        )
    if channels > MAX_CHANNELS:
        raise HeaderRefused(
            f"the file declares {channels:,} channels; at most {MAX_CHANNELS} are read"
        )


@dataclass
class SampleCleaning:
    """Counts what :meth:`clean` had to repair, so the track's warning can say so.

    A NaN or an infinity anywhere would reach the network and turn every
    probability into NaN; one resampler pass spreads it over the whole filter
    length first. So samples are cleaned as they leave the decoder, before
    resampling: non-finite ones become 0 (silence) and huge ones are clipped.
    """

    seen: int = 0
    nonfinite: int = 0
    clipped: int = 0

    def clean(self, block: np.ndarray) -> np.ndarray:
        """``block`` with non-finite samples zeroed and huge ones clipped (counted)."""
        self.seen += block.size
        if block.size == 0:
            return block
        # Two reductions and no copy on the common path; NaN fails both comparisons.
        if -SAMPLE_BOUND <= block.min() and block.max() <= SAMPLE_BOUND:
            return block
        finite = np.isfinite(block)
        bad = block.size - int(np.count_nonzero(finite))
        out = np.where(finite, block, 0).astype(block.dtype, copy=False)
        huge = np.abs(out) > SAMPLE_BOUND
        self.nonfinite += bad
        self.clipped += int(np.count_nonzero(huge))
        return np.clip(out, -SAMPLE_BOUND, SAMPLE_BOUND, out=out)

    @property
    def none_finite(self) -> bool:
        """True when every sample read so far was NaN or infinite."""
        return self.seen > 0 and self.nonfinite == self.seen

    def note(self) -> str | None:
        """What was repaired, in words for the track's warning; None if nothing was."""
        parts = []
        if self.nonfinite:
            parts.append(
                f"replaced {self.nonfinite:,} non-finite samples (NaN or infinity) with silence"
            )
        if self.clipped:
            parts.append(
                f"clipped {self.clipped:,} samples beyond ±{SAMPLE_BOUND:,.0f} "
                "(far outside the usual ±1 range)"
            )
        return "; ".join(parts) or None


def silent_peak(peak: float) -> str | None:
    """The reason a track whose loudest sample is ``peak`` counts as silent, else None."""
    if peak > SILENCE_PEAK:
        return None
    level = "-inf" if peak == 0 else f"{20 * np.log10(peak):.0f}"
    return f"silent: peak level {level} dBFS"


def silence_reason(audio: np.ndarray) -> str | None:
    """Why ``audio`` holds nothing to learn from or index (no samples, or silence), else None."""
    if len(audio) == 0:
        return "no audio decoded"
    return silent_peak(float(np.max(np.abs(audio))))
