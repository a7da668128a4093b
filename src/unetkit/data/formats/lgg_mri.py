"""`lgg-mri`: the Kaggle LGG brain MRI segmentation set (Buda et al., kaggle_3m).

    kaggle_3m/<patient>/<patient>_<n>.tif       RGB slice (pre-contrast, FLAIR, post-contrast)
    kaggle_3m/<patient>/<patient>_<n>_mask.tif  0/255 mask of the FLAIR abnormality

The data root may be kaggle_3m itself or a folder holding it. Samples are grouped by
patient, so one patient's slices never straddle splits.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path

from unetkit.data.formats.base import DatasetSpec, MaskSpec, Sample
from unetkit.data.readers import TIFF_EXTENSIONS
from unetkit.errors import UnetkitError

NAME = "lgg-mri"
DESCRIPTION = ("Kaggle LGG MRI (kaggle_3m): <patient>/<patient>_<n>.tif slices with "
               "<patient>_<n>_mask.tif; root is kaggle_3m or its parent; grouped by patient")
CLASS_NAMES = ["background", "abnormality"]
SUBFOLDER = "kaggle_3m"
_MAX_PROBE = 50  # patient folders looked at by detect()
_SLICE = re.compile(r"_(\d+)$")


def _patient_dirs(root: Path) -> list[Path]:
    try:
        return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    except OSError:
        return []


def _is_patient_dir(d: Path) -> bool:
    pattern = f"{glob.escape(d.name)}_*_mask.*"
    return any(p.suffix.lower() in TIFF_EXTENSIONS for p in d.glob(pattern))


def data_root(root: Path) -> Path | None:
    """The folder holding the patient folders: root itself or root/kaggle_3m."""
    for candidate in (root, root / SUBFOLDER):
        if any(_is_patient_dir(d) for d in _patient_dirs(candidate)[:_MAX_PROBE]):
            return candidate
    return None


def detect(root: Path) -> bool:
    return data_root(root) is not None


def _slice_number(path: Path) -> int:
    match = _SLICE.search(path.stem)
    return int(match[1]) if match else -1


def load(root: Path, **_: object) -> DatasetSpec:
    base = data_root(root)
    if base is None:
        raise UnetkitError(f"No patient folders (<patient>/<patient>_<n>.tif with "
                           f"<patient>_<n>_mask.tif) were found in {root} or {root / SUBFOLDER}.")
    samples = []
    for patient in _patient_dirs(base):
        tifs = [p for p in patient.iterdir() if p.is_file() and not p.name.startswith(".")
                and p.suffix.lower() in TIFF_EXTENSIONS]
        names = {p.name for p in tifs}
        slices = [p for p in tifs if not p.stem.lower().endswith("_mask")]
        for img in sorted(slices, key=lambda p: (_slice_number(p), p.name)):
            mask_name = f"{img.stem}_mask{img.suffix}"
            samples.append(Sample(name=img.stem, image=img,
                                  mask=img.with_name(mask_name) if mask_name in names else None,
                                  group=patient.name))
    if not samples:
        raise UnetkitError(f"The patient folders in {base} hold no .tif slices.")
    return DatasetSpec(root=root, format=NAME, samples=samples,
                       mask=MaskSpec(kind="binary", class_names=list(CLASS_NAMES)))
