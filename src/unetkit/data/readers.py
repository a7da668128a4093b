"""Decode images and masks from disk into numpy arrays, with one-sentence errors.

`read_array` is the one reader behind fit, evaluate and predict, so these rules hold everywhere:

- EXIF orientation: a file with an EXIF Orientation tag (phone and camera JPEGs; any PIL-read
  file) is read as viewers and annotation tools display it (`ImageOps.exif_transpose`), images
  and masks alike. A mask must therefore be drawn on the displayed image; the size-mismatch
  error says when a tag explains a mismatch (`orientation_hint`). TIFFs are read as stored.
- Size: a file declaring more than `PIL.Image.MAX_IMAGE_PIXELS` pixels is refused from its
  header, before any pixel is decoded (a decompression bomb).
- Colour: CMYK (JPEG or TIFF), YCbCr, LAB and HSV become RGB; grey+alpha (LA) becomes grey.
  RGBA keeps its alpha here; `match_channels` drops it when the model wants 3 channels.
- 16 bits: greyscale PNGs and TIFFs keep uint16 (`to_uint8_image` stretches them per image);
  PIL decodes 16-bit colour PNGs (RGB, RGBA) to 8 bits per channel (the high byte, a fixed
  full-range scale, so no stretch), alpha included.
- Palettes: a mask whose used palette entries are all grey means the grey values (two indices
  with the same grey are one value); a colour palette keeps its indices as class ids, even
  when two indices share a colour (see `_grey_palette`).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from unetkit.errors import UnetkitError

if TYPE_CHECKING:
    from tifffile import TiffPage

TIFF_EXTENSIONS = (".tif", ".tiff")
ORIENTATION_TAG = 0x0112
# EXIF orientations that swap width and height, and what they do to the stored pixels
_TURNS = {5: "mirrors it and turns it 90°", 6: "turns it 90° clockwise",
          7: "mirrors it and turns it 90°", 8: "turns it 90° anticlockwise"}


def _read_tiff(path: Path, page: int | None) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if len(tif.pages) == 0:
            raise UnetkitError(f"{path} is not a readable image (a TIFF without image pages).")
        if tif.is_ome and page is None:
            return _read_ome(tif, path)
        if page is not None and page >= len(tif.pages):
            raise UnetkitError(f"{path} has {len(tif.pages)} pages; page {page} does not exist.")
        tiff_page = tif.pages[page or 0]
        arr = tiff_page.asarray()
        return _cmyk_to_rgb(arr, tiff_page) if _is_cmyk(tiff_page) else arr


def _read_ome(tif: Any, path: Path) -> np.ndarray:
    """An OME-TIFF's first series at full resolution (level 0 of a pyramid), as H x W or
    H x W x C with the channel axis taken from the OME metadata; single T/Z planes only."""
    series = tif.series[0]
    level = series.levels[0] if getattr(series, "levels", None) else series
    axes, arr = level.axes.upper(), level.asarray()
    for ax in ("T", "Z", "Q", "I"):  # time, depth and unnamed stacks of length 1 only
        if ax in axes:
            if arr.shape[axes.index(ax)] != 1:
                raise UnetkitError(f"{path} is an OME-TIFF with {arr.shape[axes.index(ax)]} "
                                   f"{ax}-planes; unetkit reads 2-D images (one plane).")
            arr = arr.take(0, axis=axes.index(ax))
            axes = axes.replace(ax, "")
    if "S" in axes and "C" not in axes:
        axes = axes.replace("S", "C")
    if "C" in axes:
        arr = np.moveaxis(arr, axes.index("C"), -1)
        axes = axes.replace("C", "") + "C"
    if axes not in ("YX", "YXC"):
        raise UnetkitError(f"{path} is an OME-TIFF with axes {level.axes}, which unetkit does "
                           "not read as a 2-D image.")
    return arr


def _is_cmyk(page: TiffPage) -> bool:
    """A TIFF page of four CMYK inks (photometric SEPARATED, InkSet 1 or absent)."""
    import tifffile

    inkset = page.tags.get("InkSet")
    inks = page.samplesperpixel - len(page.extrasamples)
    return (page.photometric == tifffile.PHOTOMETRIC.SEPARATED and inks == 4
            and (inkset is None or inkset.value == 1))


def _cmyk_to_rgb(arr: np.ndarray, page: TiffPage) -> np.ndarray:
    """Ink amounts to RGB as PIL converts CMYK, (1 - c)(1 - k) per channel; extra samples
    (alpha) are kept after the three colours."""
    if arr.ndim == 3 and arr.shape[-1] != page.samplesperpixel:
        arr = np.moveaxis(arr, 0, -1)  # planar (CHW) storage
    top = float(np.iinfo(arr.dtype).max) if arr.dtype.kind in "ui" else 1.0
    ink = arr[..., :4].astype(np.float64) / top
    rgb = np.round((1.0 - ink[..., :3]) * (1.0 - ink[..., 3:4]) * top).astype(arr.dtype)
    return np.concatenate([rgb, arr[..., 4:]], axis=-1) if arr.shape[-1] > 4 else rgb


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


def _not_a_file(path: Path) -> str:
    if path.is_dir():
        return f"{path} is a folder, not an image file."
    if path.is_symlink():
        return f"{path} is a symbolic link that leads nowhere (a missing target or a loop)."
    return f"{path} does not exist."


def _too_large_message(path: Path, width: int, height: int) -> str:
    return (f"{path} declares {width}x{height} pixels, more than the "
            f"{Image.MAX_IMAGE_PIXELS:,} an image may have, so it was not decoded (a possible "
            f"decompression bomb).")


def _check_pixels(path: Path, im: Image.Image) -> None:
    """Refuse an opened (not yet decoded) image above PIL's pixel limit.

    Image.open already warns or raises, but the warnings filter that turns the warning into
    an error is process-wide and the cache decodes in threads; this check does not depend on it.
    """
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and im.width * im.height > limit:
        raise UnetkitError(_too_large_message(path, im.width, im.height))


def declared_size(source: Path | IO[bytes]) -> tuple[int, int] | None:
    """(width, height) from a file's header alone (PNG, JPEG, GIF, BMP, TIFF), or None.

    Nothing is decoded and no size limit applies, so a decompression bomb can be measured
    (and refused) before it costs memory; `source` is a path or a seekable binary file.
    """
    from PIL import BmpImagePlugin, GifImagePlugin, JpegImagePlugin, PngImagePlugin, TiffImagePlugin

    for plugin in (PngImagePlugin.PngImageFile, JpegImagePlugin.JpegImageFile,
                   GifImagePlugin.GifImageFile, BmpImagePlugin.BmpImageFile,
                   TiffImagePlugin.TiffImageFile):
        try:
            if not isinstance(source, Path):
                source.seek(0)
            with plugin(source) as im:  # parses the header only; no size check, no decoding
                return im.size
        except Exception:  # noqa: BLE001 — not this format
            continue
    return None


def _too_large(path: Path, exc: Exception) -> str:
    size = declared_size(path)
    if size is not None:
        return _too_large_message(path, *size)
    found = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
    return (f"{path} declares {pixels}, more than the {Image.MAX_IMAGE_PIXELS:,} an image may "
            f"have, so it was not decoded (a possible decompression bomb).")


def _oriented(im: Image.Image) -> Image.Image:
    """The image as viewers show it: its EXIF orientation applied (unchanged without one)."""
    if im.getexif().get(ORIENTATION_TAG, 1) in range(2, 9):
        return ImageOps.exif_transpose(im)
    return im


def exif_orientation(path: str | Path) -> int:
    """The EXIF orientation (1-8) `read_array` applies to a file: 1 for none, TIFFs, errors."""
    path = Path(path)
    if path.suffix.lower() in TIFF_EXTENSIONS:
        return 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                value = im.getexif().get(ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 — unreadable files are reported by read_array
        return 1
    return value if value in range(1, 9) else 1


def orientation_hint(image: Path, image_hw: tuple[int, int], mask: Path | None,
                     mask_hw: tuple[int, int]) -> str:
    """Why an image and its mask differ in size, if an EXIF orientation tag explains it.

    Returns "" or a clause to append to the size-mismatch sentence: the file named carries an
    orientation that swaps width and height, and unrotated it would match the other file.
    """
    for path, hw, other in ((image, image_hw, mask_hw), (mask, mask_hw, image_hw)):
        if path is None or tuple(hw[::-1]) != tuple(other):
            continue
        orientation = exif_orientation(path)
        if orientation in _TURNS:
            return (f"; the EXIF orientation tag of {path} {_TURNS[orientation]}, as viewers "
                    f"show it and unetkit reads it, and unrotated it would match")
    return ""


def read_array(path: str | Path, page: int | None = None, keep_palette: bool = False) -> np.ndarray:
    """Decode any supported file to HxW or HxWxC; palette images stay indices if asked.

    The EXIF orientation is applied (see the module docstring); a file declaring more than
    `Image.MAX_IMAGE_PIXELS` pixels is refused before it is decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise UnetkitError(_not_a_file(path))
    try:
        if path.suffix.lower() in TIFF_EXTENSIONS:
            arr = _read_tiff(path, page)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    _check_pixels(path, im)
                    if page:
                        try:
                            im.seek(page)
                        except EOFError:
                            raise UnetkitError(f"{path} has {getattr(im, 'n_frames', 1)} "
                                               f"pages; page {page} does not exist.") from None
                        _check_pixels(path, im)
                    im = _oriented(im)
                    if im.mode == "P" and not keep_palette:
                        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                    elif im.mode == "P" and _grey_palette(im):
                        im = im.convert("L")  # grey palette: the grey value is the meaning
                    elif im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                        im = im.convert("RGB")
                    elif im.mode in ("1", "LA", "La"):
                        im = im.convert("L")
                    im.load()
                    arr = np.asarray(im)
    except UnetkitError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UnetkitError(_too_large(path, exc)) from None
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
