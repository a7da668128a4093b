"""One sample from disk to (HxWxC uint8 image, HxW uint8 class-index mask), checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from unetkit.data.formats.base import MaskSpec, Sample
from unetkit.data.masks import to_class_index
from unetkit.data.readers import orientation_hint, read_image, read_raw_mask
from unetkit.data.scale import scaled_size
from unetkit.data.transforms import IGNORE
from unetkit.errors import UnetkitError


def mask_label(sample: Sample) -> str:
    """Where a sample's mask comes from, for error messages."""
    if sample.mask_rle is not None or sample.mask is None:
        return f"The mask of {sample.image}"
    if sample.mask_page is not None:
        return f"{sample.mask} page {sample.mask_page}"
    return str(sample.mask)


def stack_channels(paths: tuple[Path, ...]) -> np.ndarray:
    """One HxWxC uint8 image from one file per channel (nnU-Net's CASE_0000, _0001...)."""
    arrays = [read_image(p) for p in paths]
    for path, arr in zip(paths[1:], arrays[1:], strict=True):
        if arr.shape[:2] != arrays[0].shape[:2]:
            raise UnetkitError(f"{path} is {arr.shape[1]}x{arr.shape[0]} but {paths[0]} is "
                               f"{arrays[0].shape[1]}x{arrays[0].shape[0]} (channel files "
                               f"of one image must have the same size).")
    return np.ascontiguousarray(np.concatenate(arrays, axis=-1))


def compose_instances(parts: tuple[Path, ...]) -> np.ndarray:
    """A uint16 label image from one binary mask file per object (label k = k-th file).

    Where objects overlap the later file wins, so every pixel keeps one label; the result is
    always 16-bit so that evaluate/predict --instances read it as instance labels.
    """
    labels: np.ndarray | None = None
    for k, path in enumerate(parts, start=1):
        raw = read_raw_mask(path)
        if raw.ndim == 3:
            raw = raw[..., 0]
        if labels is None:
            labels = np.zeros(raw.shape, dtype=np.uint16)
        elif raw.shape != labels.shape:
            raise UnetkitError(f"{path} is {raw.shape[1]}x{raw.shape[0]} but {parts[0]} is "
                               f"{labels.shape[1]}x{labels.shape[0]} (mask size mismatch).")
        labels[raw > (127 if raw.max() > 1 else 0)] = k
    if labels is None:
        raise UnetkitError("A sample has an empty list of object masks.")
    return labels


def read_sample_image(sample: Sample) -> np.ndarray:
    """The sample's image as HxWxC uint8 (its region only, for crops of one large image)."""
    if sample.channels is not None:
        image = stack_channels(sample.channels)
    else:
        image = read_image(sample.image, sample.image_page)
    if sample.drop_alpha and image.shape[-1] == 4:
        image = np.ascontiguousarray(image[..., :3])
    return sample.crop(image)


def read_sample_raw_mask(sample: Sample) -> np.ndarray:
    """The sample's mask file (or object files, composed), values unchanged (its region only)."""
    if sample.mask_parts is not None:
        return sample.crop(compose_instances(sample.mask_parts))
    if sample.mask is None:
        raise UnetkitError(f"{sample.image} has no mask file.")
    return sample.crop(read_raw_mask(sample.mask, sample.mask_page))


def read_mask(sample: Sample, spec: MaskSpec, shape: tuple[int, int] | None = None
              ) -> np.ndarray:
    """The class-index mask of a sample (ignore index mapped to the internal IGNORE).

    `shape` (the image's HxW, if already known) spares decoding the image again to size a
    run-length mask.
    """
    if sample.mask_rle is not None:
        from unetkit.data.rle import rle_decode

        h, w = shape or read_sample_image(sample).shape[:2]
        raw = rle_decode(sample.mask_rle, (h, w),
                         name=f"The run-length mask of {sample.image.name}")
    elif sample.mask is None:
        raise UnetkitError(f"{sample.image} has no mask (no mask file or run-length entry "
                           f"matches its name).")
    else:
        raw = read_sample_raw_mask(sample)
    index = to_class_index(raw, spec, mask_label(sample))
    if spec.ignore_index is not None and spec.ignore_index != IGNORE:
        index = np.where(index == spec.ignore_index, IGNORE, index).astype(np.uint8)
    return index


def resize_pair(image: np.ndarray, mask: np.ndarray | None, size: tuple[int, int]
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """Image bilinear with antialiasing, mask nearest neighbour (never interpolate labels)."""
    if tuple(image.shape[:2]) == tuple(size):
        return image, mask
    t = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1)[None]
    t = F.interpolate(t, size=size, mode="bilinear", antialias=True, align_corners=False)
    image = t[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
    if mask is not None:
        m = torch.from_numpy(np.ascontiguousarray(mask))[None, None]
        mask = F.interpolate(m, size=size, mode="nearest-exact")[0, 0].numpy()
    return image, mask


def load_pair(sample: Sample, spec: MaskSpec, scale: float | str = 1.0
              ) -> tuple[np.ndarray, np.ndarray]:
    image = read_sample_image(sample)
    mask = read_mask(sample, spec, image.shape[:2])
    if image.shape[:2] != mask.shape[:2]:
        hint = "" if sample.region is not None else orientation_hint(
            sample.image, image.shape[:2], sample.mask, mask.shape[:2])
        raise UnetkitError(f"{mask_label(sample)} is {mask.shape[1]}x{mask.shape[0]} "
                           f"but its image {sample.image.name} is "
                           f"{image.shape[1]}x{image.shape[0]} (mask size mismatch{hint}).")
    return resize_pair(image, mask, scaled_size(image.shape, scale))
