"""What every on-disk layout turns into: a list of samples plus how to read their masks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".tif", ".tiff", ".bmp")


@dataclass
class Sample:
    """One image and its mask. `page` selects a slice of a multi-page TIFF."""

    name: str
    image: Path
    mask: Path | None = None
    image_page: int | None = None
    mask_page: int | None = None
    mask_rle: str | None = None  # run-length encoded mask (Carvana train_masks.csv)
    group: str | None = None  # samples sharing a group never straddle splits (patients)
    split: str | None = None  # official split: train | val | test
    region: tuple[int, int, int, int] | None = None  # (top, left, bottom, right) crop of both
    # masks composed from one binary file per object (Data Science Bowl): see loading.py
    mask_parts: tuple[Path, ...] | None = None
    # one greyscale file per image channel, stacked in order (nnU-Net's CASE_0000, _0001...)
    channels: tuple[Path, ...] | None = None
    drop_alpha: bool = False  # read an RGBA image as RGB (DSB PNGs carry an opaque alpha)

    def crop(self, array: np.ndarray) -> np.ndarray:
        """The sample's region of a decoded image or mask (all of it without a region)."""
        if self.region is None:
            return array
        top, left, bottom, right = self.region
        return np.ascontiguousarray(array[top:bottom, left:right])


@dataclass
class MaskSpec:
    """How raw mask pixels become class indices.

    kind: binary (>127 for 8-bit or >0 for 0/1 masks is foreground), index (value = class),
    instance (label > 0 is foreground, instance ids kept), palette (RGB colour -> class via
    `colors`), map (raw value -> class via `value_map`, e.g. Oxford-IIIT trimaps).
    """

    kind: str = "binary"
    class_names: list[str] = field(default_factory=lambda: ["background", "foreground"])
    ignore_index: int | None = None
    value_map: dict[int, int] | None = None
    colors: list[list[int]] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass
class DatasetSpec:
    """A data set as a format module found it on disk."""

    root: Path
    format: str
    samples: list[Sample]
    mask: MaskSpec
    official_splits: bool = False
