"""`carvana`: the Kaggle Carvana Image Masking Challenge layout.

    train/<car>_<NN>.jpg            photos, 16 angles (NN = 01..16) per car
    train_masks/<car>_<NN>_mask.gif binary GIF masks (palette 0/1 or grey 0/255), and/or
    train_masks.csv                 header img,rle_mask; 1-based row-major run-length masks
    test/                           photos without masks: for prediction only, never samples

Options: masks = auto (GIF if there is one, else the CSV row) | gif | csv; hq = false | true
(read photos from train_hq/, the full-resolution set, instead of train/).
"""

from __future__ import annotations

import re
from pathlib import Path

from unetkit.data.formats.base import DatasetSpec, MaskSpec, Sample
from unetkit.data.formats.folder import list_images, no_images_message, option
from unetkit.errors import UnetkitError

NAME = "carvana"
DESCRIPTION = ("Kaggle Carvana: train/*.jpg with train_masks/*_mask.gif and/or train_masks.csv "
               "(img,rle_mask run-length masks); grouped by car so a car never straddles "
               "splits; test/ is for prediction only (options: masks=auto|gif|csv, hq=true "
               "for train_hq/)")
CLASS_NAMES = ["background", "car"]
CSV_NAMES = ("train_masks.csv", "train_masks.csv.gz")
_ANGLE = re.compile(r"^(?P<car>.+)_(?P<angle>\d+)$")


def _csv(root: Path) -> Path | None:
    return next((root / n for n in CSV_NAMES if (root / n).is_file()), None)


def detect(root: Path) -> bool:
    has_images = (root / "train").is_dir() or (root / "train_hq").is_dir()
    return has_images and ((root / "train_masks").is_dir() or _csv(root) is not None)


def car_id(stem: str) -> str:
    """0cdf5b5d0ce1_01 -> 0cdf5b5d0ce1 (the part before the angle number)."""
    match = _ANGLE.match(stem)
    return match["car"] if match else stem


def load(root: Path, **options: object) -> DatasetSpec:
    from unetkit.data.rle import read_rle_csv

    masks_from = option(NAME, options, "masks", "auto", ("auto", "gif", "csv"))
    hq = option(NAME, options, "hq", "false", ("true", "false")) == "true"
    if not detect(root):
        raise UnetkitError(f"No train/ photos with train_masks/ or train_masks.csv were found "
                           f"in {root}.")
    images_dir = root / ("train_hq" if hq or not (root / "train").is_dir() else "train")
    if not images_dir.is_dir():
        raise UnetkitError(f"{images_dir} does not exist (hq=true reads photos from there).")
    images = list_images(images_dir)
    if not images:
        raise UnetkitError(no_images_message(images_dir))

    gifs: dict[str, Path] = {}
    if masks_from != "csv" and (root / "train_masks").is_dir():
        for m in list_images(root / "train_masks"):
            gifs.setdefault(m.stem.lower(), m)
    elif masks_from == "gif":
        raise UnetkitError(f"{root / 'train_masks'} does not exist (masks=gif reads it).")

    rles: dict[str, str] | None = None
    samples = []
    for img in images:
        stem = img.stem.lower()
        mask = gifs.get(stem + "_mask") or gifs.get(stem)
        rle = None
        if mask is None and masks_from != "gif":
            if rles is None:  # read the CSV only when some photo has no GIF
                csv_path = _csv(root)
                if csv_path is None and masks_from == "csv":
                    raise UnetkitError(f"{root / CSV_NAMES[0]} does not exist "
                                       f"(masks=csv reads it).")
                rles = read_rle_csv(csv_path) if csv_path else {}
            rle = rles.get(img.name, rles.get(img.stem))
        samples.append(Sample(name=img.stem, image=img, mask=mask, mask_rle=rle,
                              group=car_id(img.stem)))
    return DatasetSpec(root=root, format=NAME, samples=samples,
                       mask=MaskSpec(kind="binary", class_names=list(CLASS_NAMES)))
