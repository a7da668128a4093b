"""Predict many files: expand inputs, write masks/overlays/probabilities, skip bad files."""

from __future__ import annotations

import glob
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from unetkit.data.formats.base import IMAGE_EXTENSIONS
from unetkit.data.overlay import colorize, overlay
from unetkit.data.readers import read_image
from unetkit.errors import UnetkitError, UsageError
from unetkit.infer.postprocess import keep_largest as keep_largest_fn
from unetkit.infer.postprocess import label_instances, remove_small
from unetkit.infer.predict import Predictor
from unetkit.io_utils import atomic_path, ensure_dir
from unetkit.progress import progress


@dataclass
class BatchResult:
    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files, folders (their images, sorted) and glob patterns -> image paths."""
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            images = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_EXTENSIONS)
            if not images:
                raise UnetkitError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) found in {p}.")
            found += images
        elif p.is_file():
            found.append(p)
        elif any(ch in item for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True)
                             if Path(m).is_file())
            if not matches:
                raise UnetkitError(f"The pattern {item} matches no files.")
            found += matches
        else:
            raise UnetkitError(f"Input {item} does not exist.")
    return found


def save_png(array: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def make_postprocess(num_classes: int, keep_largest: bool = False, min_size: int = 0
                     ) -> Callable[[np.ndarray], np.ndarray] | None:
    """The mask clean-up the flags ask for: drop foreground components smaller than
    `min_size` pixels, then keep only the largest component of each foreground class."""
    if min_size < 0:
        raise UsageError(f"--min-size {min_size} must be 0 or more pixels.")
    if not keep_largest and min_size <= 1:
        return None
    classes = range(1, max(num_classes, 2))

    def clean(mask: np.ndarray) -> np.ndarray:
        if min_size > 1:
            mask = remove_small(mask, min_size, classes)
        if keep_largest:
            mask = keep_largest_fn(mask, classes)
        return mask

    return clean


def to_uint16(probs: np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] as 0..65535, a channel at a time (float16 would overflow)."""
    out = np.empty(probs.shape, dtype=np.uint16)
    for k in range(probs.shape[0]):
        out[k] = np.round(probs[k].astype(np.float32) * 65535)
    return out


def save_labels_tiff(labels: np.ndarray, path: Path) -> None:
    import tifffile

    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, labels.astype(np.uint16), photometric="minisblack")


def predict_files(predictor: Predictor, paths: list[Path], out: Path, threshold: float = 0.5,
                  write_overlay: bool = False, probabilities: str | None = None,
                  palette: bool = False, postprocess=None, rle_writer=None,
                  quiet: bool = False, instances: bool = False,
                  split_touching: bool = True, uncertainty_writer=None) -> BatchResult:
    """Write one mask per input at its original size; a bad file is reported and skipped.

    `postprocess` maps a class-index mask to a cleaned one (see make_postprocess);
    `rle_writer` (an open RleWriter) gets one row per image, foreground = any class > 0;
    `instances` also writes `<stem>_instances.tif`, 16-bit object labels of the foreground;
    `uncertainty_writer` (an infer.uncertainty_files.UncertaintyWriter) gets the maps.
    """
    ensure_dir(out, f"--out {out}")
    result = BatchResult()
    names = predictor.class_names
    for path in progress(paths, total=len(paths), desc="Predicting", disable=quiet or
                         len(paths) < 2):
        try:
            image = read_image(path)
            if uncertainty_writer is not None:
                probs, maps = predictor.probabilities_with_uncertainty(image, name=str(path))
            elif probabilities is None:  # mask only: large images never hold the K×H×W map
                probs, mask = None, predictor.predict(image, threshold, name=str(path))
            else:
                probs = predictor.probabilities(image, name=str(path))
        except UnetkitError as exc:
            result.skipped.append((str(path), str(exc)))
            tqdm.write(f"skipped: {exc}", file=sys.stderr)  # on its own line, under the bar
            continue
        if probs is not None:
            mask = predictor.mask_from_probabilities(probs, threshold)
        if postprocess is not None:
            mask = postprocess(mask)
        stem = path.stem
        if palette:
            encoded = colorize(mask, len(names))
        elif predictor.binary:
            encoded = mask * 255
        else:
            encoded = mask
        save_png(encoded.astype(np.uint8, copy=False), out / f"{stem}.png")
        result.written.append(out / f"{stem}.png")
        if write_overlay:
            save_png(overlay(image, mask, names), out / f"{stem}_overlay.png")
        if probabilities == "npy":
            with atomic_path(out / f"{stem}_prob.npy") as tmp, open(tmp, "wb") as f:
                np.save(f, probs.astype(np.float16, copy=False))
        elif probabilities == "tiff":
            import tifffile

            with atomic_path(out / f"{stem}_prob.tif") as tmp:
                tifffile.imwrite(tmp, to_uint16(probs), photometric="minisblack")
        if instances:
            labels = label_instances(mask > 0, split_touching=split_touching)
            save_labels_tiff(labels, out / f"{stem}_instances.tif")
        if rle_writer is not None:
            rle_writer.write_mask(path.name, mask > 0)
        if uncertainty_writer is not None:
            uncertainty_writer.write(maps, stem, path.name)
    return result
