"""What `predict --uncertainty` writes: per-image maps (TIFF and a picture) and one CSV.

Maps are float16 TIFFs in 0..1 (entropy / log K), so a viewer or a script reads the values;
the PNG is the same entropy through a fixed colour map (0 dark, 1 bright) so pictures of
different images compare at a glance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from unetkit.infer.batch import save_png
from unetkit.infer.evaluate import write_per_image
from unetkit.infer.uncertainty import UncertaintyMaps
from unetkit.io_utils import atomic_path

CSV_NAME = "uncertainty.csv"
COLOUR_MAP = "magma"
CSV_FIELDS = ("image", "mean_entropy", "mean_mutual_info", "uncertain_fraction", "members",
              "source")


def colour_map(values: np.ndarray) -> np.ndarray:
    """H×W values in 0..1 -> H×W×3 uint8 RGB through COLOUR_MAP (a fixed 0..1 scale)."""
    import matplotlib

    lut = (matplotlib.colormaps[COLOUR_MAP](np.linspace(0, 1, 256))[:, :3] * 255).round()
    index = np.clip(np.nan_to_num(values.astype(np.float32)) * 255 + 0.5, 0, 255)
    return lut.astype(np.uint8)[index.astype(np.uint8)]


def save_float16_tiff(array: np.ndarray, path: Path) -> None:
    import tifffile

    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, array.astype(np.float16, copy=False), photometric="minisblack")


def csv_row(maps: UncertaintyMaps, image: str) -> dict[str, Any]:
    """One row of uncertainty.csv (mean_mutual_info empty with one member)."""
    return {"image": image, "mean_entropy": maps.mean_entropy,
            "mean_mutual_info": maps.mean_mutual_info,
            "uncertain_fraction": maps.uncertain_fraction, "members": maps.members,
            "source": maps.source}


class UncertaintyWriter:
    """Writes each image's maps as it comes and the CSV at the end (`predict_files` calls
    `write`; use as a context manager, or call `close`). `csv_path` moves the CSV (a
    distributed rank writes its part there; default OUT/uncertainty.csv)."""

    def __init__(self, out: Path, csv_path: Path | None = None) -> None:
        self.out = Path(out)
        self.csv_path = Path(csv_path) if csv_path is not None else self.out / CSV_NAME
        self.rows: list[dict[str, Any]] = []

    def write(self, maps: UncertaintyMaps, stem: str, image: str) -> None:
        save_float16_tiff(maps.entropy, self.out / f"{stem}_uncertainty.tif")
        save_png(colour_map(maps.entropy), self.out / f"{stem}_uncertainty.png")
        if maps.mutual_info is not None:
            save_float16_tiff(maps.mutual_info, self.out / f"{stem}_mutual_info.tif")
        self.rows.append(csv_row(maps, image))

    def close(self) -> None:
        write_per_image(self.rows, self.csv_path)

    def __enter__(self) -> UncertaintyWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
