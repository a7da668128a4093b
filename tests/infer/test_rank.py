"""`rank_images` order on constructed cases (a stub predictor with known uncertainty), the
greedy diversity discount by hand, the data layer's unlabelled images, and `unetkit rank`
end to end on a tiny real model, bad inputs included."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from infer_fixtures import write_images
from PIL import Image
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.errors import UnetkitError, UsageError
from unetkit.infer.rank import (
    embedding,
    greedy_select,
    rank_images,
    unlabelled_images,
)
from unetkit.infer.uncertainty import UncertaintyMaps


class StubPredictor:
    """Uncertainty known per image: the image's mean pixel value / 255 (uniform maps)."""

    def probabilities_with_uncertainty(self, image: np.ndarray, name: str = "image"):
        u = float(image.mean()) / 255
        entropy = np.full(image.shape[:2], u, dtype=np.float32)
        maps = UncertaintyMaps(entropy, None, 1, "single", u, None, float(u > 0.5))
        return np.zeros((1, *image.shape[:2]), np.float32), maps


def _pattern(seed: int, level: float, size: int = 32) -> np.ndarray:
    """A random blocky greyscale pattern whose mean is `level` (0..255)."""
    rng = np.random.default_rng(seed)
    blocks = rng.normal(size=(4, 4))
    img = np.kron(blocks, np.ones((size // 4, size // 4)))
    img = (img - img.mean()) / img.std() * 20 + level
    return np.clip(img, 0, 255).astype(np.uint8)


def _save(folder: Path, name: str, array: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(folder / name)
    return folder / name


def test_greedy_discount_by_hand() -> None:
    e = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])  # unit vectors: 0·1 = 0.8, 0·2 = 0
    picked = greedy_select(np.array([1.0, 0.9, 0.5]), e, top=3)
    # 1st: the most uncertain. 2nd: 1 scores 0.9 × (1 - 0.8) = 0.18 < 0.5 of image 2.
    # 3rd: 1 is 0.8 like 0 and 0.6 like 2 -> 0.18
    assert [(i, round(s, 6), None if m is None else round(m, 6), j)
            for i, s, m, j in picked] == [(0, 1.0, None, -1), (2, 0.5, 0.0, 0), (1, 0.18, 0.8, 0)]
    assert [p[0] for p in greedy_select(np.array([1.0, 0.9, 0.5]), e, 3, diversity=0)] == \
        [0, 1, 2]
    assert len(greedy_select(np.array([1.0, 0.9, 0.5]), e, top=10)) == 3


def test_embedding_ignores_brightness_and_contrast() -> None:
    a = _pattern(0, 100)
    brighter = np.clip(a.astype(float) * 1.5 + 20, 0, 255).astype(np.uint8)
    assert float(embedding(a) @ embedding(brighter)) > 0.99
    assert abs(float(embedding(a) @ embedding(_pattern(1, 100)))) < 0.7
    assert np.linalg.norm(embedding(a)) == pytest.approx(1.0)
    assert not embedding(np.full((20, 20, 3), 7, np.uint8)).any()  # flat: no direction


def test_near_duplicates_are_not_both_in_the_top_two(tmp_path: Path) -> None:
    a = _pattern(0, 200)
    dup = np.clip(a.astype(int) + np.random.default_rng(5).integers(-2, 3, a.shape) - 3,
                  0, 255).astype(np.uint8)  # a, a little darker: next most uncertain
    paths = [_save(tmp_path, "a.png", a), _save(tmp_path, "a_copy.png", dup),
             _save(tmp_path, "b.png", _pattern(1, 190)), _save(tmp_path, "c.png", _pattern(2, 60))]
    ranked = rank_images(StubPredictor(), paths, top=4, quiet=True)
    # the copy, discounted to almost nothing, falls below even the least uncertain image
    assert [Path(r.image).name for r in ranked] == ["a.png", "b.png", "c.png", "a_copy.png"]
    assert ranked[0].uncertainty == pytest.approx(a.mean() / 255, abs=1e-6)
    assert ranked[0].similarity_to_chosen is None
    copy = ranked[3]
    assert copy.similarity_to_chosen > 0.95 and "resembles" in copy.reason
    assert copy.uncertainty > ranked[1].uncertainty  # more uncertain than b, yet below it
    assert copy.score == pytest.approx(copy.uncertainty * (1 - copy.similarity_to_chosen))
    plain = rank_images(StubPredictor(), paths, top=2, diversity=0.0, quiet=True)
    assert [Path(r.image).name for r in plain] == ["a.png", "a_copy.png"]
    assert [r.rank for r in ranked] == [1, 2, 3, 4] and ranked[0].preview.dtype == np.uint8


def test_rank_images_bad_arguments(tmp_path: Path) -> None:
    path = _save(tmp_path, "a.png", _pattern(0, 100))
    with pytest.raises(UsageError, match="--top 0 must be at least 1"):
        rank_images(StubPredictor(), [path], top=0)
    with pytest.raises(UsageError, match="--diversity 2"):
        rank_images(StubPredictor(), [path], diversity=2)
    with pytest.raises(UnetkitError, match="no images to rank"):
        rank_images(StubPredictor(), [])
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(UnetkitError, match="None of the 1 images"):
        rank_images(StubPredictor(), [tmp_path / "bad.png"], quiet=True)


def test_unlabelled_images_of_a_plain_folder_and_a_data_set(tmp_path: Path) -> None:
    plain = write_images(tmp_path / "plain", count=2)
    assert [s.image for s in unlabelled_images(tmp_path / "plain")] == plain
    data = tmp_path / "data"
    write_images(data / "images", count=3)
    _save(data / "masks", "img1.png", np.zeros((37, 53), np.uint8))
    assert sorted(s.image.name for s in unlabelled_images(data)) == ["img0.png", "img2.png"]
    for i in (0, 2):
        _save(data / "masks", f"img{i}.png", np.zeros((37, 53), np.uint8))
    with pytest.raises(UnetkitError, match="All 3 images in .* already have masks"):
        unlabelled_images(data)


def _rank(*args: object):
    return CliRunner().invoke(app, ["rank", *(str(a) for a in args)])


def _error(result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_rank_command_end_to_end(model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "unlabelled"
    write_images(folder, count=4, size=(40, 48))
    out = tmp_path / "rank"
    result = _rank(model_dir, folder, "--top", 3, "--out", out)
    assert result.exit_code == 0, result.output
    with open(out / "rank.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["rank", "image", "score", "uncertainty", "similarity_to_chosen",
                             "reason"]
    assert [r["rank"] for r in rows] == ["1", "2", "3"]
    assert len({r["image"] for r in rows}) == 3
    assert all(Path(r["image"]).parent == folder for r in rows)
    assert rows[0]["similarity_to_chosen"] == "" and rows[0]["score"] == rows[0]["uncertainty"]
    assert all("mc-dropout" in r["reason"] for r in rows)  # the tiny U-Net has dropout
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True) and 0 < scores[-1] <= scores[0] <= 2
    sheet = np.asarray(Image.open(out / "rank.png"))
    assert sheet.ndim == 3 and sheet.shape[1] > sheet.shape[0]  # one row of three pairs
    assert Path(rows[0]["image"]).name in result.stdout  # the table is printed


def test_rank_command_bad_input(model_dir: Path, tmp_path: Path) -> None:
    missing = _rank(model_dir, tmp_path / "nope")
    assert missing.exit_code == 1 and "nope does not exist" in _error(missing)
    write_images(tmp_path / "imgs", count=1)
    top = _rank(model_dir, tmp_path / "imgs", "--top", 0)
    assert top.exit_code == 2 and _error(top) == "error: --top 0 must be at least 1."
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    none = _rank(model_dir, tmp_path / "notes")
    assert none.exit_code == 1 and "holds no supported images" in _error(none)
