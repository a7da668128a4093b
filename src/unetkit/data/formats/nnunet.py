"""`nnunet`: an nnU-Net v2 raw data set (2D files), so data prepared for nnU-Net trains here.

    <root>/dataset.json              channel_names, labels, file_ending (numTraining optional)
    <root>/imagesTr/CASE_0000.png    channel 0 of each case (_0001, _0002... more channels)
    <root>/labelsTr/CASE.png         class indices, values as in dataset.json "labels"
    <root>/imagesTs/                 optional unlabelled cases (predict reads them directly)

Only 2D files are read (.png, .tif, .tiff, .bmp); the channel files of a case are stacked
into one multi-channel image in channel order (an RGB _0000.png, as nnU-Net's natural-image
data sets use, stays three channels). Class names come from "labels", ordered by value; a
label named "ignore" becomes the ignore index. Region-based labels (lists of values) are
not supported.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from unetkit.data.formats.base import DatasetSpec, MaskSpec, Sample
from unetkit.errors import UnetkitError, UsageError

NAME = "nnunet"
DESCRIPTION = ("nnU-Net raw data set: dataset.json + imagesTr/CASE_0000.png (more _000N "
               "channels stacked) + labelsTr/CASE.png, 2D png/tif; class names and an "
               "'ignore' label from dataset.json")
ENDINGS = (".png", ".tif", ".tiff", ".bmp")
_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def detect(root: Path) -> bool:
    return (root / "dataset.json").is_file() and (root / "imagesTr").is_dir()


def read_dataset_json(root: Path) -> dict:
    """dataset.json, checked for the keys this reader needs."""
    path = root / "dataset.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnetkitError(f"{path} is not readable JSON ({exc}).") from None
    if not isinstance(meta, dict):
        raise UnetkitError(f"{path} should hold a JSON object.")
    missing = [k for k in ("channel_names", "labels", "file_ending") if k not in meta]
    if missing:
        raise UnetkitError(f"{path} lacks {', '.join(missing)} (an nnU-Net dataset.json has "
                           "channel_names, labels and file_ending).")
    if str(meta["file_ending"]).lower() not in ENDINGS:
        raise UnetkitError(f"{path} has file_ending {meta['file_ending']!r}; only 2D files "
                           f"({', '.join(ENDINGS)}) are read, not volumes.")
    return meta


def mask_spec(labels: dict, path: Path) -> MaskSpec:
    """Class names by value (0..n-1) and the optional ignore label, from dataset.json."""
    if not isinstance(labels, dict) or not labels:
        raise UnetkitError(f"{path} 'labels' should map class names to values.")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in labels.values()):
        raise UnetkitError(f"{path} uses region-based labels (lists of values), which unetkit "
                           "does not read; give each label one integer value.")
    ignore = labels.get("ignore")
    classes = sorted((v, k) for k, v in labels.items() if k != "ignore")
    if [v for v, _ in classes] != list(range(len(classes))):
        raise UnetkitError(f"{path} label values {[v for v, _ in classes]} should run "
                           f"0..{len(classes) - 1} (0 = background), plus 'ignore'.")
    return MaskSpec(kind="index", class_names=[k for _, k in classes], ignore_index=ignore)


def _cases(images: Path, ending: str) -> dict[str, dict[int, Path]]:
    """Channel files per case: {case: {channel: path}}."""
    cases: dict[str, dict[int, Path]] = {}
    for p in sorted(images.iterdir()):
        if not p.is_file() or p.name.startswith(".") or not p.name.endswith(ending):
            continue
        match = _CHANNEL.match(p.name[: -len(ending)])
        if match is None:
            raise UnetkitError(f"{p} is not named CASE_0000{ending} (nnU-Net names each "
                               "channel file with a 4-digit channel number).")
        cases.setdefault(match["case"], {})[int(match["channel"])] = p
    return cases


def _sample(case: str, channels: dict[int, Path], want: int, labels: Path,
            ending: str) -> Sample:
    if sorted(channels) != list(range(want)):
        first = next(iter(channels.values()))
        raise UnetkitError(f"Case {case} has channel files {sorted(channels)} (first: "
                           f"{first}) but the other cases have 0..{want - 1}.")
    mask = labels / f"{case}{ending}"
    if not mask.is_file():
        raise UnetkitError(f"{mask} is missing (every case in imagesTr needs a label file "
                           "in labelsTr).")
    files = tuple(channels[c] for c in range(want))
    return Sample(name=case, image=files[0], mask=mask,
                  channels=files if len(files) > 1 else None)


def load(root: Path, **options: object) -> DatasetSpec:
    if options:
        raise UsageError(f"Format nnunet takes no options, not {', '.join(options)}.")
    meta = read_dataset_json(root)
    ending = str(meta["file_ending"])
    spec = mask_spec(meta["labels"], root / "dataset.json")
    cases = _cases(root / "imagesTr", ending)
    if not cases:
        raise UnetkitError(f"{root / 'imagesTr'} holds no CASE_0000{ending} files.")
    want = max(len(c) for c in cases.values())
    samples = [_sample(case, ch, want, root / "labelsTr", ending)
               for case, ch in cases.items()]
    return DatasetSpec(root=root, format=NAME, samples=samples, mask=spec)
