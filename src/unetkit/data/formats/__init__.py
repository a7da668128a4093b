"""On-disk layouts. Each module has NAME, DESCRIPTION, detect(root) and load(root, **options)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from unetkit.data.formats import (
    camvid,
    carvana,
    dsb,
    folder,
    isbi,
    lgg_mri,
    nnunet,
    oxford_pet,
    single,
)
from unetkit.data.formats.base import DatasetSpec, MaskSpec, Sample
from unetkit.errors import UnetkitError, UsageError

__all__ = ["DatasetSpec", "MaskSpec", "Sample", "FORMATS", "open_dataset"]

# Order matters for auto-detection: the most specific layouts first, `folder` last.
# isbi's PNG variant uses generic folder names (image(s)/ + label(s)/), so it comes after the
# layouts with distinctive names, and only claims binary labels with greyscale images.
# nnunet needs dataset.json + imagesTr/; dsb needs sub-folders whose images/ holds a file
# named after the sub-folder, which folder's train/ val/ test/ splits never have.
FORMATS: dict[str, ModuleType] = {
    m.NAME: m for m in (nnunet, carvana, oxford_pet, camvid, lgg_mri, isbi, dsb, single, folder)
}


def _hint(root: Path) -> str:
    """What is missing for the commonest layout, when nothing was detected."""
    images = next((root / d for d in folder.IMAGE_DIRS if (root / d).is_dir()), None)
    if images is not None:
        return (f"{images} has no masks/ (or labels/) folder beside it; "
                f"see `unetkit formats` for the layouts understood")
    return (f"expected a layout such as {root}/images + {root}/masks "
            f"(see `unetkit formats`)")


def open_dataset(root: str | Path, format: str = "auto", **options: object) -> DatasetSpec:
    """Find the layout of `root` (or use the one named) and list its samples."""
    root = Path(root)
    if not root.exists():
        raise UnetkitError(f"Data folder {root} does not exist.")
    if not root.is_dir():
        raise UnetkitError(f"Data path {root} is not a folder.")
    if format != "auto":
        if format not in FORMATS:
            raise UsageError(f"--format {format!r} is unknown; choose one of "
                             f"{', '.join(['auto', *FORMATS])}.")
        return FORMATS[format].load(root, **options)
    for module in FORMATS.values():
        if module.detect(root):
            return module.load(root, **options)
    raise UnetkitError(f"No data set layout was recognised in {root}: {_hint(root)}.")
