"""`oxford-pet`: the Oxford-IIIT Pet data set (images.tar.gz + annotations.tar.gz unpacked).

    images/<Breed>_<n>.jpg                 photos (a few .mat files there are skipped)
    annotations/trimaps/<Breed>_<n>.png    trimaps: 1 = pet, 2 = background, 3 = boundary
    annotations/trainval.txt, test.txt     official split, lines "Abyssinian_100 1 1 1"

Option boundary: ignore (default; the uncertain boundary band is not learned or scored),
pet (it counts as pet) or class (it is a third class, "boundary").
"""

from __future__ import annotations

from pathlib import Path

from unetkit.data.formats.base import DatasetSpec, MaskSpec
from unetkit.data.formats.folder import list_images, no_images_message, option, pair_by_stem
from unetkit.errors import UnetkitError

NAME = "oxford-pet"
DESCRIPTION = ("Oxford-IIIT Pet: images/*.jpg with annotations/trimaps/*.png (1 pet, 2 "
               "background, 3 boundary); official split from annotations/trainval.txt and "
               "test.txt (option boundary=ignore|pet|class)")
BOUNDARY = ("ignore", "pet", "class")
VALUE_MAPS = {"ignore": {1: 1, 2: 0, 3: 255}, "pet": {1: 1, 2: 0, 3: 1},
              "class": {1: 1, 2: 0, 3: 2}}
SPLIT_FILES = (("trainval.txt", "train"), ("test.txt", "test"))


def detect(root: Path) -> bool:
    return (root / "images").is_dir() and (root / "annotations" / "trimaps").is_dir()


def read_split_file(path: Path) -> list[str]:
    """Image stems listed in an Oxford split file (first token of each non-comment line)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise UnetkitError(f"{path} could not be read ({exc.strerror or exc}).") from exc
    return [line.split()[0] for line in lines if line.strip() and not line.startswith("#")]


def mask_spec(boundary: str) -> MaskSpec:
    names = ["background", "pet"] + (["boundary"] if boundary == "class" else [])
    return MaskSpec(kind="map", class_names=names, value_map=dict(VALUE_MAPS[boundary]),
                    ignore_index=255 if boundary == "ignore" else None)


def load(root: Path, **options: object) -> DatasetSpec:
    boundary = option(NAME, options, "boundary", "ignore", BOUNDARY)
    if not detect(root):
        raise UnetkitError(f"No images/ and annotations/trimaps/ folders were found in {root}.")
    images = list_images(root / "images")
    if not images:
        raise UnetkitError(no_images_message(root / "images"))
    samples = pair_by_stem(images, list_images(root / "annotations" / "trimaps"),
                           suffixes=("",))
    split_of: dict[str, str] = {}
    official = False
    for filename, split in SPLIT_FILES:
        path = root / "annotations" / filename
        if path.is_file():
            official = True
            for stem in read_split_file(path):
                split_of.setdefault(stem, split)
    if official:
        for s in samples:  # photos listed in neither file still train; test stays official
            s.split = split_of.get(s.image.stem, "train")
    return DatasetSpec(root=root, format=NAME, samples=samples, mask=mask_spec(boundary),
                       official_splits=official)
