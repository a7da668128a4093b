"""Decode images and masks from disk into numpy arrays, with one-sentence errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from unetkit.errors import UnetkitError

TIFF_EXTENSIONS = (".tif", ".tiff")


def _read_tiff(path: Path, page: int | None) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if len(tif.pages) == 0:
            raise UnetkitError(f"{path} is not a readable image (a TIFF without image pages).")
        if page is None:
            return tif.pages[0].asarray()
        if page >= len(tif.pages):
            raise UnetkitError(f"{path} has {len(tif.pages)} pages; page {page} does not exist.")
        return tif.pages[page].asarray()


def _grey_palette(im: Image.Image) -> bool:
    """True if every palette entry a P-mode image uses is a grey (r == g == b).

    Such masks (e.g. Carvana GIFs, or any L image saved as GIF) mean the grey value, and
    their palette order is arbitrary: a GIF writer may put white at index 0. Colour
    palettes (PASCAL VOC style) keep their indices, which are the class ids.
    """
    palette = im.getpalette() or []
    used = np.unique(np.asarray(im))
    for i in used.tolist():
        rgb = palette[3 * i:3 * i + 3]
        if len(rgb) < 3 or not rgb[0] == rgb[1] == rgb[2]:
            return False
    return True


def read_array(path: str | Path, page: int | None = None, keep_palette: bool = False) -> np.ndarray:
    """Decode any supported file to HxW or HxWxC; palette images stay indices if asked."""
    path = Path(path)
    if not path.is_file():
        raise UnetkitError(f"{path} does not exist.")
    try:
        if path.suffix.lower() in TIFF_EXTENSIONS:
            arr = _read_tiff(path, page)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    if page:
                        try:
                            im.seek(page)
                        except EOFError:
                            raise UnetkitError(f"{path} has {getattr(im, 'n_frames', 1)} "
                                               f"pages; page {page} does not exist.") from None
                    if im.mode == "P" and not keep_palette:
                        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                    elif im.mode == "P" and _grey_palette(im):
                        im = im.convert("L")  # grey palette: the grey value is the meaning
                    elif im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                        im = im.convert("RGB")
                    elif im.mode == "1":
                        im = im.convert("L")
                    im.load()
                    arr = np.asarray(im)
    except UnetkitError:
        raise
    except UnidentifiedImageError as exc:
        raise UnetkitError(f"{path} is not a readable image (unknown format or corrupt "
                           f"file).") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        reason = str(exc).split("\n")[0] or type(exc).__name__
        raise UnetkitError(f"{path} is not a readable image ({reason}).") from exc
    except Exception as exc:  # tifffile raises its own error types
        reason = str(exc).split("\n")[0]
        raise UnetkitError(f"{path} is not a readable image ({type(exc).__name__}: "
                           f"{reason}).") from exc
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise UnetkitError(f"{path} has shape {arr.shape}; expected a 2D image (HxW or HxWxC).")
    if arr.ndim == 3 and arr.shape[0] <= 4 < arr.shape[-1]:  # CHW TIFF -> HWC
        arr = np.moveaxis(arr, 0, -1)
    return arr


def to_uint8_image(arr: np.ndarray) -> np.ndarray:
    """HxWxC uint8 for any input; 16-bit/float data get a robust per-image 0.5-99.8% stretch.

    Per-image percentile scaling is what microscopy tools do for 16-bit data whose useful
    range varies from image to image; 8-bit images are left alone.
    """
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == bool:
        return (arr.astype(np.uint8) * 255)
    data = arr.astype(np.float32)
    lo, hi = np.percentile(data, [0.5, 99.8])
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((data - lo) / (hi - lo) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def read_image(path: str | Path, page: int | None = None) -> np.ndarray:
    """Read an input image as HxWxC uint8."""
    return to_uint8_image(read_array(path, page))


def match_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Make HxWxC uint8 have `channels` channels: grey repeats, RGBA drops alpha."""
    c = image.shape[-1]
    if c == channels:
        return image
    if c == 1:
        return np.repeat(image, channels, axis=-1)
    if channels == 1:
        return image[..., :3].mean(axis=-1, keepdims=True).round().astype(np.uint8)
    if c > channels:
        return image[..., :channels]
    return np.concatenate([image, np.repeat(image[..., -1:], channels - c, axis=-1)], axis=-1)


def read_raw_mask(path: str | Path, page: int | None = None) -> np.ndarray:
    """Read a mask without changing its values (palette indices are kept)."""
    arr = read_array(path, page, keep_palette=True)
    if arr.ndim == 3 and arr.shape[-1] == 4:
        arr = arr[..., :3]
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and np.array_equal(arr[..., 0], arr[..., 1]) \
            and np.array_equal(arr[..., 0], arr[..., 2]):
        arr = arr[..., 0]  # grey saved as RGB
    return arr
