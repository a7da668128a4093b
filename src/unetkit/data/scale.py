"""The scale rule: the size an image is trained and predicted at, from the run's scale.

A scale is a factor applied to both sides (rounded, at least 1 pixel) or "stretch:HxW"
(every image resized to H x W). The training cache and prediction both call `scaled_size`,
and "stretch:HxW" is written and read only here, so the two can never disagree.
"""

from __future__ import annotations

from unetkit.errors import UsageError

STRETCH = "stretch:"


def stretch_scale(size: tuple[int, int] | list[int]) -> str:
    """The scale that resizes every image to `size` (H, W)."""
    return f"{STRETCH}{int(size[0])}x{int(size[1])}"


def parse_stretch(scale: float | str) -> tuple[int, int] | None:
    """(H, W) of a "stretch:HxW" scale; None for a factor."""
    if not (isinstance(scale, str) and scale.startswith(STRETCH)):
        return None
    try:
        h, w = scale[len(STRETCH):].split("x")
        return int(h), int(w)
    except ValueError:
        raise UsageError(f"scale {scale!r} is neither a factor nor stretch:HxW.") from None


def scaled_size(shape: tuple[int, ...], scale: float | str) -> tuple[int, int]:
    """(H, W) of an image of `shape` (H, W, ...) at `scale`."""
    stretch = parse_stretch(scale)
    if stretch is not None:
        return stretch
    s = float(scale)
    return max(1, round(shape[0] * s)), max(1, round(shape[1] * s))
