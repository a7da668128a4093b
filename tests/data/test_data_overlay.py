"""Overlays: background untouched, foreground blended by hand-computed weights, a legend."""

from __future__ import annotations

import numpy as np

from unetkit.data import overlay as overlay_mod
from unetkit.data.overlay import overlay, palette


def test_overlay_blends_foreground_only_in_every_band(monkeypatch) -> None:
    monkeypatch.setattr(overlay_mod, "ROWS_PER_BAND", 7)  # many bands on a small image
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    mask = np.zeros((60, 80), dtype=np.uint8)
    mask[30:50, 40:70] = 2
    out = overlay(image, mask, ["background", "a", "b"], alpha=0.5, legend=False)
    assert out.dtype == np.uint8 and out.shape == image.shape
    np.testing.assert_array_equal(out[mask == 0], image[mask == 0])
    expected = np.round(0.5 * image[30:50, 40:70].astype(np.float32)
                        + 0.5 * palette(3)[2].astype(np.float32)).astype(np.uint8)
    np.testing.assert_array_equal(out[30:50, 40:70], expected)


def test_legend_is_drawn_in_the_corner_only() -> None:
    image = np.full((200, 300), 128, dtype=np.uint8)  # greyscale input becomes RGB
    mask = np.zeros((200, 300), dtype=np.uint8)
    out = overlay(image, mask, ["background", "cell"])
    assert out.shape == (200, 300, 3)
    assert (out[:24, :60] != 128).any()  # swatch and name
    assert (out[40:, :] == 128).all() and (out[:, 120:] == 128).all()
    swatch = out[8, 8]
    np.testing.assert_array_equal(swatch, palette(2)[1])
