"""RLE strings vs hand-worked answers, round trips in both orders, CSV files read back."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from unetkit.data.rle import read_rle_csv, rle_decode, rle_encode
from unetkit.errors import UnetkitError, UsageError
from unetkit.infer.rle import RleWriter

# 3x4 mask, worked by hand:
#   0 1 1 0
#   0 0 1 1
#   1 0 0 0
# row-major    0 1 1 0 0 0 1 1 1 0 0 0  -> ones at 2,3 and 7,8,9      -> "2 2 7 3"
# column-major 0 0 1 1 0 0 1 1 0 0 1 0  -> ones at 3,4 and 7,8 and 11 -> "3 2 7 2 11 1"
HAND = np.array([[0, 1, 1, 0], [0, 0, 1, 1], [1, 0, 0, 0]], dtype=np.uint8)
HAND_ROW = "2 2 7 3"
HAND_COLUMN = "3 2 7 2 11 1"


def test_hand_worked_example_both_orders() -> None:
    assert rle_encode(HAND) == HAND_ROW
    assert rle_encode(HAND, order="column") == HAND_COLUMN
    decoded = rle_decode(HAND_ROW, (3, 4))
    assert decoded.dtype == np.uint8 and decoded.shape == (3, 4)
    np.testing.assert_array_equal(decoded, HAND)
    np.testing.assert_array_equal(rle_decode(HAND_COLUMN, (3, 4), order="column"), HAND)


def test_nonzero_values_count_as_foreground_and_edges() -> None:
    assert rle_encode(HAND * 255) == HAND_ROW
    assert rle_encode(np.zeros((5, 7), np.uint8)) == ""
    assert rle_encode(np.ones((2, 3), bool)) == "1 6"
    corners = np.zeros((2, 3), np.uint8)
    corners[0, 0] = corners[1, 2] = 1
    assert rle_encode(corners) == "1 1 6 1"
    np.testing.assert_array_equal(rle_decode("", (2, 3)), np.zeros((2, 3), np.uint8))
    np.testing.assert_array_equal(rle_decode("  ", (2, 3)), np.zeros((2, 3), np.uint8))


def test_adjacent_runs_decode_as_one_run() -> None:
    # "1 2 3 2" is not what rle_encode writes, but it is valid: pixels 1..4 are set
    np.testing.assert_array_equal(rle_decode("1 2 3 2", (1, 5)), [[1, 1, 1, 1, 0]])


@settings(max_examples=60, deadline=None)
@given(mask=arrays(np.uint8, st.tuples(st.integers(1, 9), st.integers(1, 9)),
                   elements=st.integers(0, 1)),
       order=st.sampled_from(["row", "column"]))
def test_round_trip_random_masks(mask: np.ndarray, order: str) -> None:
    rle = rle_encode(mask, order=order)
    np.testing.assert_array_equal(rle_decode(rle, mask.shape, order=order), mask)
    # run count equals the number of 0->1 transitions in the flattened mask
    flat = mask.ravel(order="C" if order == "row" else "F")
    assert len(rle.split()) == 2 * int(np.sum(np.diff(np.r_[0, flat]) == 1))


def test_orders_differ_on_transposes() -> None:
    rng = np.random.default_rng(0)
    mask = (rng.random((6, 5)) > 0.5).astype(np.uint8)
    assert rle_encode(mask, order="column") == rle_encode(mask.T, order="row")


@pytest.mark.parametrize("rle, problem", [
    ("1 2 x 3", "'x' is not an integer"),
    ("1 2 3", "start/length pairs"),
    ("0 2", "1-based"),
    ("1 0", "length 0"),
    ("5 2 1 2", "out of order or overlap"),
    ("1 3 2 2", "out of order or overlap"),
    ("11 3", "past the 3x4 image"),
])
def test_malformed_strings_raise(rle: str, problem: str) -> None:
    with pytest.raises(UnetkitError, match=problem):
        rle_decode(rle, (3, 4), name="mask of car_01.jpg")


def test_bad_order_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="order"):
        rle_encode(HAND, order="diagonal")


def test_writer_plain_and_gz_read_back(tmp_path: Path) -> None:
    masks = {"a.jpg": HAND, "b.jpg": np.zeros((3, 4), np.uint8), "c,d.jpg": 1 - HAND}
    for name in ("sub.csv", "sub.csv.gz"):
        path = tmp_path / name
        with RleWriter(path) as writer:
            for img, mask in masks.items():
                writer.write_mask(img, mask)
        assert writer.rows == 3
        back = read_rle_csv(path)
        assert list(back) == list(masks)
        assert back["a.jpg"] == HAND_ROW and back["b.jpg"] == ""
        for img, mask in masks.items():
            np.testing.assert_array_equal(rle_decode(back[img], (3, 4)), mask)
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []
    raw = gzip.decompress((tmp_path / "sub.csv.gz").read_bytes()).decode()
    assert raw == (tmp_path / "sub.csv").read_text()
    assert raw.splitlines()[:2] == ["img,rle_mask", "a.jpg,2 2 7 3"]


def test_writer_column_order(tmp_path: Path) -> None:
    with RleWriter(tmp_path / "dsb.csv", order="column") as writer:
        writer.write_mask("x", HAND)
    assert read_rle_csv(tmp_path / "dsb.csv") == {"x": HAND_COLUMN}


def test_writer_is_atomic_on_error(tmp_path: Path) -> None:
    path = tmp_path / "sub.csv.gz"
    with RleWriter(path) as writer:
        writer.write("old.jpg", "1 1")
    with pytest.raises(RuntimeError), RleWriter(path) as writer:
        writer.write("new.jpg", "1 2")
        raise RuntimeError("crash mid-way")
    assert read_rle_csv(path) == {"old.jpg": "1 1"}  # the old file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["sub.csv.gz"]


def test_read_tolerates_missing_rle_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "train_masks.csv"
    path.write_text("img,rle_mask\n00087a6bd4dc_01.jpg,879386 40 881253 141\nempty.jpg,\n"
                    "\nshort.jpg\n")
    assert read_rle_csv(path) == {"00087a6bd4dc_01.jpg": "879386 40 881253 141",
                                  "empty.jpg": "", "short.jpg": ""}


def test_read_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(UnetkitError, match="nope.csv does not exist"):
        read_rle_csv(tmp_path / "nope.csv")
    headless = tmp_path / "headless.csv"
    headless.write_text("a.jpg,1 2 5 6\n")
    with pytest.raises(UnetkitError, match="headless.csv has no header"):
        read_rle_csv(headless)
    twice = tmp_path / "twice.csv"
    twice.write_text("img,rle_mask\na.jpg,1 2\na.jpg,3 4\n")
    with pytest.raises(UnetkitError, match="twice.csv lists image a.jpg twice"):
        read_rle_csv(twice)
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(b"not gzip at all")
    with pytest.raises(UnetkitError, match="broken.csv.gz could not be read"):
        read_rle_csv(broken)
