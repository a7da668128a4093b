"""Run-length encoded masks on disk: Kaggle-style strings and `img,rle_mask` CSV files.

Convention (Carvana train_masks.csv): runs are "start length start length ...", starts are
1-based positions in the flattened mask, runs are ascending and do not overlap. Carvana
flattens row-major (order="row"); the Data Science Bowl and Airbus flatten column-major
(order="column"). An empty mask encodes as "".
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np

from unetkit.errors import UnetkitError, UsageError

HEADER = ("img", "rle_mask")
_ORDERS = {"row": "C", "column": "F"}


def numpy_order(order: str) -> str:
    if order not in _ORDERS:
        raise UsageError(f"RLE order must be 'row' or 'column', not {order!r}.")
    return _ORDERS[order]


def rle_encode(mask: np.ndarray, order: str = "row") -> str:
    """Encode a 2-D mask (any non-zero pixel is foreground) as a 1-based RLE string."""
    flat_order = numpy_order(order)
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise UnetkitError(f"RLE needs a 2-D mask, but got one with shape {mask.shape}.")
    pixels = (mask != 0).ravel(order=flat_order)
    if pixels.size == 0:
        return ""
    # run edges (0-based): where a run starts and one past where it ends. Compared as bool,
    # two bytes a pixel: padding with [0] and np.diff would make int64 copies (16 B/pixel)
    inner = np.flatnonzero(pixels[1:] != pixels[:-1]) + 1
    edges = np.concatenate([np.array([0] if pixels[0] else [], np.int64), inner,
                            np.array([pixels.size] if pixels[-1] else [], np.int64)])
    if edges.size == 0:
        return ""
    starts, ends = edges[0::2], edges[1::2]
    runs = np.empty(edges.size, dtype=np.int64)
    runs[0::2] = starts + 1
    runs[1::2] = ends - starts
    return " ".join(map(str, runs.tolist()))


def rle_decode(rle: str, shape: tuple[int, int], order: str = "row",
               name: str = "RLE mask") -> np.ndarray:
    """Decode an RLE string to an HxW uint8 0/1 mask; `name` says where it came from in errors.

    Malformed strings (non-integers, an odd count, starts below 1, lengths below 1, runs
    out of order or overlapping, runs past the end of the image) raise UnetkitError rather
    than decoding to a silently wrong mask.
    """
    flat_order = numpy_order(order)
    if len(shape) != 2 or min(shape) < 1:
        raise UnetkitError(f"{name} needs a 2-D shape of positive sizes, not {tuple(shape)}.")
    h, w = int(shape[0]), int(shape[1])
    n = h * w
    tokens = (rle or "").split()
    if not tokens:
        return np.zeros((h, w), dtype=np.uint8)
    values = []
    for token in tokens:
        try:
            values.append(int(token))
        except ValueError:
            raise UnetkitError(f"{name} is malformed: {token!r} is not an integer.") from None
    if max(abs(v) for v in values) >= 2**62:
        raise UnetkitError(f"{name} is malformed: it has a number too large for any image.")
    runs = np.array(values, dtype=np.int64)
    if runs.size % 2:
        raise UnetkitError(f"{name} is malformed: it has {runs.size} numbers, but runs come "
                           f"in start/length pairs.")
    starts, lengths = runs[0::2] - 1, runs[1::2]
    if (starts < 0).any():
        raise UnetkitError(f"{name} is malformed: run starts are 1-based, but one is "
                           f"{int(starts.min()) + 1}.")
    if (lengths < 1).any():
        raise UnetkitError(f"{name} is malformed: a run has length {int(lengths.min())}.")
    ends = starts + lengths
    if (starts[1:] < ends[:-1]).any():
        raise UnetkitError(f"{name} is malformed: its runs are out of order or overlap "
                           f"(is it the other pixel order?).")
    if ends[-1] > n:
        raise UnetkitError(f"{name} runs to pixel {int(ends[-1])}, past the {h}x{w} image's "
                           f"{n} pixels (wrong image size?).")
    delta = np.zeros(n + 1, dtype=np.int8)
    delta[starts] += 1  # starts are distinct, and so are ends; a run may start where
    delta[ends] -= 1  # the previous one ended, so add rather than assign
    flat = np.cumsum(delta[:-1], dtype=np.int8).astype(np.uint8)
    return flat.reshape((h, w), order=flat_order)


def is_gzip(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


def read_rle_csv(path: str | Path) -> dict[str, str]:
    """Read an `img,rle_mask` CSV (or .csv.gz) into {image name: RLE string}.

    The header must name the columns (`img,rle_mask`; any other two-column header is read
    positionally). A missing or empty RLE means an empty mask and maps to "".
    """
    path = Path(path)
    if not path.is_file():
        raise UnetkitError(f"RLE file {path} does not exist.")
    opener = gzip.open if is_gzip(path) else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as fh:
            rows = csv.reader(fh)
            header = next(rows, None)
            if header is None:
                raise UnetkitError(f"RLE file {path} is empty (expected a header img,rle_mask).")
            names = [h.strip().lower() for h in header]
            if "img" in names and "rle_mask" in names:
                i_img, i_rle = names.index("img"), names.index("rle_mask")
            elif len(names) >= 2 and not names[-1].replace(" ", "").isdigit():
                i_img, i_rle = 0, 1
            else:
                raise UnetkitError(f"RLE file {path} has no header row (expected img,rle_mask).")
            out: dict[str, str] = {}
            for line_no, row in enumerate(rows, start=2):
                if not row or not any(cell.strip() for cell in row):
                    continue
                img = row[i_img].strip() if len(row) > i_img else ""
                if not img:
                    raise UnetkitError(f"RLE file {path} line {line_no} has no image name.")
                if img in out:
                    raise UnetkitError(f"RLE file {path} lists image {img} twice "
                                       f"(line {line_no}).")
                out[img] = row[i_rle].strip() if len(row) > i_rle else ""
            return out
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise UnetkitError(f"RLE file {path} could not be read ({exc}).") from exc
