"""Any layout unetkit reads -> an nnU-Net v2 raw data set, so the same data trains there too.

Images are written as unetkit reads them (8-bit, EXIF orientation applied, RGBA as RGB, the
channel count of the first image for all), masks as the class indices unetkit trains on;
pixels unetkit ignores get an "ignore" label, the highest value, as nnU-Net requires.
Grey and RGB images are one CASE_0000.png each (nnU-Net reads RGB PNGs as three channels);
other channel counts get one grey file per channel. Images without a mask go to imagesTs/.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unetkit.data.formats import Sample, open_dataset
from unetkit.data.loading import load_pair, read_sample_image
from unetkit.data.prepare import resolve_mask_spec
from unetkit.data.readers import match_channels
from unetkit.data.transforms import IGNORE
from unetkit.errors import UnetkitError, UsageError
from unetkit.io_utils import atomic_write_bytes, atomic_write_text, ensure_dir
from unetkit.progress import progress

TARGETS = ("nnunet",)
ENDING = ".png"


@dataclass
class ConvertResult:
    out: Path
    training: int  # labelled cases in imagesTr/ + labelsTr/
    test: int  # unlabelled cases in imagesTs/
    class_names: list[str]

    def summary(self) -> str:
        test = f" and {self.test} unlabelled in imagesTs/" if self.test else ""
        return (f"Wrote an nnU-Net data set to {self.out}: {self.training} training cases"
                f"{test}, classes {', '.join(self.class_names)}.")


def case_names(samples: list[Sample]) -> list[str]:
    """nnU-Net case identifiers: the sample names with unsafe characters as '_', deduplicated."""
    names, seen = [], set()
    for s in samples:
        base = re.sub(r"[^A-Za-z0-9_.-]", "_", s.name) or "case"
        name, n = base, 1
        while name in seen:
            n += 1
            name = f"{base}_{n}"
        seen.add(name)
        names.append(name)
    return names


def png_bytes(array: np.ndarray) -> bytes:
    """A lossless PNG of an HxW or HxWx3 uint8 array."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG")
    return buf.getvalue()


def write_image(folder: Path, case: str, image: np.ndarray) -> None:
    """CASE_0000.png (grey or RGB), or one grey CASE_000N.png per channel otherwise."""
    if image.shape[-1] in (1, 3):
        atomic_write_bytes(folder / f"{case}_0000{ENDING}",
                           png_bytes(image[..., 0] if image.shape[-1] == 1 else image))
        return
    for c in range(image.shape[-1]):
        atomic_write_bytes(folder / f"{case}_{c:04d}{ENDING}", png_bytes(image[..., c]))


def channel_names(channels: int) -> dict[str, str]:
    if channels == 3:
        return {"0": "R", "1": "G", "2": "B"}
    if channels == 1:
        return {"0": "image"}
    return {str(c): f"channel_{c}" for c in range(channels)}


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} already exists and is not an empty folder; choose a new "
                         "output folder.")


def convert(data: str | Path, to: str, out: str | Path, format: str = "auto",
            quiet: bool = False, **format_options: object) -> ConvertResult:
    """Write the data set at `data` to `out` in the `to` layout (only "nnunet" so far)."""
    if to not in TARGETS:
        raise UsageError(f"--to {to!r} is unknown; choose one of {', '.join(TARGETS)}.")
    out = Path(out)
    _check_out(out)
    spec = open_dataset(data, format, **format_options)
    mask_spec = resolve_mask_spec(spec)
    names = case_names(spec.samples)
    k = mask_spec.num_classes
    channels, training, test, ignored = 0, 0, 0, False
    for sample, case in progress(list(zip(spec.samples, names, strict=True)),
                                 total=len(names), desc="Converting", disable=quiet):
        if sample.mask is None and sample.mask_rle is None:
            image, mask = read_sample_image(sample), None
        else:
            image, mask = load_pair(sample, mask_spec)
        channels = channels or (3 if image.shape[-1] == 4 else image.shape[-1])
        image = match_channels(image, channels)
        if mask is None:
            write_image(ensure_dir(out / "imagesTs"), case, image)
            test += 1
            continue
        ignored |= bool((mask == IGNORE).any())
        mask = np.where(mask == IGNORE, k, mask).astype(np.uint8)
        write_image(ensure_dir(out / "imagesTr"), case, image)
        atomic_write_bytes(ensure_dir(out / "labelsTr") / f"{case}{ENDING}", png_bytes(mask))
        training += 1
    if not training:
        raise UnetkitError(f"No image in {spec.root} has a mask, so there is nothing to put "
                           "in imagesTr/ and labelsTr/.")
    labels = {name: i for i, name in enumerate(mask_spec.class_names)}
    if ignored or mask_spec.ignore_index is not None:
        labels["ignore"] = k
    meta = {"name": out.name, "description": f"Converted by unetkit from {spec.root} "
            f"(format {spec.format}).", "channel_names": channel_names(channels),
            "labels": labels, "numTraining": training, "file_ending": ENDING}
    atomic_write_text(out / "dataset.json", json.dumps(meta, indent=2) + "\n")
    return ConvertResult(out, training, test, list(mask_spec.class_names))
