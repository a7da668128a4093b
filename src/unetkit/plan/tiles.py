"""Turn one large annotated image into a small `folder` data set of crops.

Some data sets are a single image (e.g. a microscopy field with an instance-label image).
Planning and training want several images so a validation split exists; `tile_pair` cuts the
image and its mask into a grid of non-overlapping crops and writes them as
``out/images/rRcC.tif`` + ``out/masks/rRcC.tif`` (dtype kept, so 16-bit images and instance
labels stay as they are), which `unetkit plan` / `unetkit fit` then read as a `folder` layout::

    from unetkit.plan.tiles import tile_pair
    tile_pair("nuclei/image.tif", "nuclei/labels.tif", "/tmp/nuclei_tiles", grid=2)  # 4 crops

Crops of one image are spatially disjoint but not independent (same specimen, same
acquisition), so validation scores on them are somewhat optimistic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unetkit.errors import UnetkitError, UsageError


def tile_pair(image: str | Path, mask: str | Path, out: str | Path, grid: int = 2) -> Path:
    """Write a grid x grid tiling of `image` and `mask` to out/images and out/masks."""
    import tifffile

    from unetkit.data.readers import read_array, read_raw_mask

    if grid < 1:
        raise UsageError(f"grid {grid} must be at least 1.")
    img = read_array(image)
    lab = read_raw_mask(mask)
    if img.shape[:2] != lab.shape[:2]:
        raise UnetkitError(f"{mask} is {lab.shape[1]}x{lab.shape[0]} but {image} is "
                           f"{img.shape[1]}x{img.shape[0]} (mask size mismatch).")
    h, w = img.shape[0] // grid, img.shape[1] // grid
    if h < 16 or w < 16:
        raise UsageError(f"A {grid}x{grid} grid would make {w}x{h} px crops of {image}; use a "
                         "smaller grid.")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    for r in range(grid):
        for c in range(grid):
            name = f"r{r}c{c}.tif"
            tifffile.imwrite(out / "images" / name,
                             np.ascontiguousarray(img[r * h:(r + 1) * h, c * w:(c + 1) * w]))
            tifffile.imwrite(out / "masks" / name,
                             np.ascontiguousarray(lab[r * h:(r + 1) * h, c * w:(c + 1) * w]))
    return out


__all__ = ["tile_pair"]
