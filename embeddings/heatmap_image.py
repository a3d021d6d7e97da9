"""Drawing an attribution map over its mel spectrogram, as a PNG.

The y axis is labelled in Hz at the mel bands' real centre frequencies (the bands
are not evenly spaced in Hz), the x axis in seconds from the start of the track,
and dashed lines mark the 250 Hz and 4 kHz band-focus edges, so a listener can find
the moment and the register the model relied on.

Why a fixed size and large type: the same PNG is shown full width on a 1400-px
screen and squeezed to ~360 px on a phone, and stands alone (``sonic explain``).
The plot is always :data:`PLOT_W` x :data:`PLOT_H` pixels whatever the window's
length (3 s or 30 s), the text :data:`FONT_PX` high, about 1/28 of the image's
width, so labels still read at ~12 px on a phone; ticks that would collide at that
size are left out (the band edges first kept), the low / mid / high bands are named
beside the plot, and a colour bar says what bright means.

Drawn with Pillow and NumPy rather than matplotlib: ingest renders one per track,
and a matplotlib figure costs about as much as analysing the track (~0.2 s); this
costs a few milliseconds.
"""

from __future__ import annotations

import io
from functools import lru_cache
from itertools import pairwise

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from embeddings.bands import HIGH_HZ, LOW_HZ
from embeddings.frontend import FrontendConfig
from embeddings.gradcam import mel_band_centres
from embeddings.inferno import inferno_table

# Preferred first: the band edges, then the octaves that spread the axis.
HZ_TICKS = (250, 4000, 1000, 8000, 500, 2000, 125, 60)
PLOT_W, PLOT_H = 600, 320  # the plot's pixels, whatever the window's frames
FONT_PX = 26  # ~12.5 px once a phone shows the image 360 px wide
LEFT, RIGHT, TOP = 64, 76, 66  # Hz labels; band names; title and the axis unit
BOTTOM = 90  # time labels, then the colour bar
BAR_W, BAR_H = 220, 18
EDGE_COLOUR = (0, 220, 255)
TIME_STEPS = (0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0)
MAX_TIME_LABELS = 7


def _inferno() -> np.ndarray:
    """matplotlib's perceptually uniform 'inferno' colour map as a 256 x 3 table."""
    return inferno_table()


@lru_cache(maxsize=4)
def _font(size: int = FONT_PX) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the bitmap font
        return ImageFont.load_default()


def _unit(x: np.ndarray) -> np.ndarray:
    lo, hi = float(np.min(x)), float(np.max(x))
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x, dtype=np.float64)


def _height_of(hz: float, centres: np.ndarray, height: float = PLOT_H) -> float:
    """Pixels above the plot's bottom edge of the middle of the band centred at ``hz``."""
    row = float(np.interp(hz, centres, np.arange(len(centres))))
    return (row + 0.5) / len(centres) * height


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: float) -> str:
    """``text`` shortened in the middle with an ellipsis until it fits ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    keep = len(text)
    while keep > 4:
        keep -= 1
        short = text[: keep // 2] + "…" + text[len(text) - (keep - keep // 2) :]
        if draw.textlength(short, font=font) <= width:
            return short
    return text[:4] + "…"


def hz_ticks(centres: np.ndarray, height: float = PLOT_H, gap: float = FONT_PX + 2) -> list[int]:
    """The ticks drawn: in order of preference, each at least ``gap`` px from the others."""
    kept: list[tuple[int, float]] = []
    for hz in HZ_TICKS:
        if not centres[0] <= hz <= centres[-1]:
            continue
        y = _height_of(hz, centres, height)
        if all(abs(y - other) >= gap for _, other in kept) and gap / 2 <= y <= height:
            kept.append((hz, y))
    return sorted(hz for hz, _ in kept)


def time_step(seconds: float) -> float:
    """The smallest round step that gives at most :data:`MAX_TIME_LABELS` labels."""
    for step in TIME_STEPS:
        if seconds / step < MAX_TIME_LABELS:
            return step
    return max(seconds / MAX_TIME_LABELS, TIME_STEPS[-1])


def render_heatmap_png(
    mel: np.ndarray,
    attribution: np.ndarray,
    config: FrontendConfig,
    start_s: float,
    title: str,
) -> bytes:
    """PNG bytes of ``attribution`` (n_mels x frames) drawn over ``mel`` (same shape)."""
    frames = mel.shape[1]
    relevance = _unit(np.maximum(attribution, 0))[::-1]  # image rows run top-down
    gray = _unit(mel)[::-1][..., None] * 255.0
    colour = _inferno()[(relevance * 255).astype(np.uint8)]
    alpha = 0.25 + 0.6 * relevance[..., None]
    pixels = (gray * (1 - alpha) + colour * alpha).clip(0, 255).astype(np.uint8)
    plot = Image.fromarray(pixels).resize((PLOT_W, PLOT_H), Image.BILINEAR)

    width, height = PLOT_W + LEFT + RIGHT, PLOT_H + TOP + BOTTOM
    canvas = Image.new("RGB", (width, height), "white")
    canvas.paste(plot, (LEFT, TOP))
    draw, font, small = ImageDraw.Draw(canvas), _font(), _font(FONT_PX - 4)
    draw.text((6, 6), _fit(draw, title, font, width - 12), fill="black", font=font)

    centres = mel_band_centres(config)
    bottom = TOP + PLOT_H

    def y_of(hz: float) -> float:
        return bottom - _height_of(hz, centres)

    for hz in hz_ticks(centres):
        y = y_of(hz)
        label = f"{hz // 1000}k" if hz >= 1000 else str(hz)
        draw.line((LEFT - 6, y, LEFT, y), fill="black", width=2)
        draw.text((LEFT - 9, y), label, fill="black", font=font, anchor="rm")
    draw.text((LEFT - 9, TOP - 6), "Hz", fill="black", font=small, anchor="rb")
    edges = [bottom, y_of(LOW_HZ), y_of(HIGH_HZ), TOP]
    for y in edges[1:3]:
        for x in range(LEFT, LEFT + PLOT_W, 12):
            draw.line((x, y, x + 6, y), fill=EDGE_COLOUR, width=2)
        draw.line((LEFT + PLOT_W, y, LEFT + PLOT_W + 8, y), fill="black", width=2)
    for name, (low, high) in zip(("low", "mid", "high"), pairwise(edges), strict=True):
        font_here = font if low - high >= FONT_PX else small
        draw.text((LEFT + PLOT_W + 12, (low + high) / 2), name, fill="black",
                  font=font_here, anchor="lm")  # fmt: skip

    seconds = frames * config.hop_length / config.sample_rate
    step = time_step(seconds)
    t = np.ceil(start_s / step) * step
    while t <= start_s + seconds + 1e-6:
        x = LEFT + (t - start_s) / seconds * PLOT_W
        draw.line((x, bottom, x, bottom + 6), fill="black", width=2)
        draw.text((x, bottom + 8), f"{t:g} s", fill="black", font=font, anchor="ma")
        t += step

    # the colour bar: what the colours mean, under the time axis
    bar_y = bottom + 8 + FONT_PX + 18
    less = "less"
    x0 = LEFT + draw.textlength(less + " ", font=small)
    draw.text((LEFT, bar_y + BAR_H / 2), less, fill="black", font=small, anchor="lm")
    ramp = _inferno()[np.linspace(0, 255, BAR_W).astype(int)].astype(np.uint8)
    bar = Image.fromarray(np.repeat(ramp[None], BAR_H, axis=0))
    canvas.paste(bar, (int(x0), int(bar_y)))
    draw.rectangle((x0 - 1, bar_y - 1, x0 + BAR_W, bar_y + BAR_H), outline="black")
    draw.text((x0 + BAR_W + 8, bar_y + BAR_H / 2), "more relevant", fill="black", font=small,
              anchor="lm")  # fmt: skip
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", optimize=False, compress_level=3)
    return buffer.getvalue()
