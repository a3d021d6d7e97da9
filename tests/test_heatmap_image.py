"""The heatmap PNG reads on a phone: fixed size, large labels that never collide, a colour bar."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from embeddings import heatmap_image as hm
from embeddings.frontend import FrontendConfig
from embeddings.gradcam import mel_band_centres

PHONE_PX = 360  # the image's width on a 390-px screen, margins aside


def render(frames: int, start_s: float = 0.0, title: str = "t") -> np.ndarray:
    rng = np.random.default_rng(0)
    mel = rng.random((128, frames))
    cam = np.zeros((128, frames))
    cam[20:40, frames // 3 : frames // 2] = 1.0
    png = hm.render_heatmap_png(mel, cam, FrontendConfig(), start_s, title)
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


@pytest.mark.parametrize("frames", [130, 520, 1300])  # a 3-s window, 12 s, 30 s
def test_one_size_whatever_the_window(frames):
    image = render(frames, start_s=42.0, title="Grad-CAM for 'rock': " + "long name " * 20)
    assert image.shape == (hm.TOP + hm.PLOT_H + hm.BOTTOM, hm.LEFT + hm.PLOT_W + hm.RIGHT, 3)


def test_ticks_are_spaced_for_their_type_and_keep_the_band_edges():
    centres = mel_band_centres(FrontendConfig())
    ticks = hm.hz_ticks(centres)
    assert {250, 4000} <= set(ticks) and len(ticks) >= 4
    heights = sorted(hm._height_of(hz, centres) for hz in ticks)
    assert min(np.diff(heights)) >= hm.FONT_PX  # no two labels overlap
    for seconds in (3.0, 12.0, 30.0, 90.0):
        assert seconds / hm.time_step(seconds) < hm.MAX_TIME_LABELS


def test_labels_stay_readable_when_a_phone_shrinks_the_image():
    image = render(130)
    width = image.shape[1]
    centres = mel_band_centres(FrontendConfig())
    dark = image.sum(axis=2) < 200
    margin = dark[:, : hm.LEFT - 8]  # the Hz labels, left of the tick marks
    for hz in hm.hz_ticks(centres):
        y = int(hm.TOP + hm.PLOT_H - hm._height_of(hz, centres))
        rows = np.flatnonzero(margin[y - hm.FONT_PX : y + hm.FONT_PX].any(axis=1))
        glyph = rows.max() - rows.min() + 1
        # digit height on the phone: 8 px is what a 11-12 px font draws
        assert glyph * PHONE_PX / width >= 8, (hz, glyph)
    # the band names beside the plot
    assert dark[hm.TOP : hm.TOP + hm.PLOT_H, hm.LEFT + hm.PLOT_W + 10 :].any()


def test_the_colour_bar_runs_from_dark_to_bright():
    image = render(130).astype(int)
    bar_y = hm.TOP + hm.PLOT_H + 8 + hm.FONT_PX + 18 + hm.BAR_H // 2
    brightness = image[bar_y].sum(axis=1)
    # the bar is the one long run of non-white columns on its row (text has gaps)
    coloured = np.concatenate([[0], (brightness < 740).astype(int), [0]])
    edges = np.flatnonzero(np.diff(coloured))
    starts, ends = edges[::2], edges[1::2]
    longest = int(np.argmax(ends - starts))
    start, end = starts[longest], ends[longest]
    assert end - start >= hm.BAR_W
    left, right = brightness[start + 3 : start + 8].mean(), brightness[end - 8 : end - 3].mean()
    assert left < 100 and right > 550  # inferno: near-black to pale yellow
