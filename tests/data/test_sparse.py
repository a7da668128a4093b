"""Partial labels on disk: the `unlabeled` declaration, and 255 kept through cache, scaling,
augmentation and weight maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from torchvision import tv_tensors
from torchvision.transforms import v2

from unetkit.data.dataset import border_weights
from unetkit.data.prepare import prepare
from unetkit.data.transforms import IGNORE, RandomRot90, build_transforms
from unetkit.errors import UnetkitError


def sparse_mask(size: int = 64, seed: int = 0) -> np.ndarray:
    """0 background, 1 a square and a disc, 255 two unlabeled blocks and a border strip."""
    m = np.zeros((size, size), np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    m[8 + seed:24 + seed, 8:24] = 1
    m[(yy - 44) ** 2 + (xx - 20) ** 2 <= 64] = 1
    m[30:50, 36:56] = IGNORE
    m[4:14, 40 - seed:60 - seed] = IGNORE
    m[:, :3] = IGNORE
    return m


def write_set(root: Path, masks: list[np.ndarray], classes: str | None) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, m in enumerate(masks):
        Image.fromarray((40 + 3 * i + (m == 1) * 100).astype(np.uint8)).save(
            root / "images" / f"{i:02d}.png")
        Image.fromarray(m).save(root / "masks" / f"{i:02d}.png")
    if classes is not None:
        (root / "classes.txt").write_text(classes)
    return root


# ---------------------------------------------------------------- the declaration


@pytest.mark.parametrize("line", ["unlabeled", "Unlabelled", "IGNORE"])
def test_declared_unlabeled_reads_index_masks_and_keeps_255(tmp_path: Path, line: str) -> None:
    masks = [sparse_mask(seed=i) for i in range(3)]
    data = prepare(write_set(tmp_path / "s", masks, f"background\ncell\n{line}\n"))
    assert (data.mask.kind, data.mask.ignore_index) == ("index", 255)
    assert data.mask.class_names == ["background", "cell"]  # the line is no class
    for i, m in enumerate(masks):
        np.testing.assert_array_equal(np.asarray(data.cache.mask(data.index_of()[f"{i:02d}"])), m)


def test_zero_255_masks_with_the_declaration_are_not_binary(tmp_path: Path) -> None:
    """Without it 0/255 masks are binary (255 = foreground); with it 255 is unlabeled."""
    m = np.where(sparse_mask() == IGNORE, 255, 0).astype(np.uint8)
    plain = prepare(write_set(tmp_path / "plain", [m, m], "background\nforeground\n"))
    assert plain.mask.kind == "binary"
    np.testing.assert_array_equal(np.asarray(plain.cache.mask(0)), (m == 255).astype(np.uint8))
    declared = prepare(write_set(tmp_path / "decl", [m, m], "background\nforeground\nunlabeled\n"))
    assert declared.mask.kind == "index" and declared.mask.num_classes == 2
    np.testing.assert_array_equal(np.asarray(declared.cache.mask(0)), m)


def test_a_value_beyond_the_classes_names_the_unlabeled_value(tmp_path: Path) -> None:
    bad = sparse_mask()
    bad[0, 0] = 7
    root = write_set(tmp_path / "s", [sparse_mask(), bad], "background\ncell\nunlabeled\n")
    with pytest.raises(UnetkitError) as exc:
        prepare(root)
    assert str(exc.value) == (f"{root / 'masks' / '01.png'} has value 7 but "
                              f"{root / 'classes.txt'} lists 2 classes (values 0..1, and "
                              "255 = unlabeled).")


def test_a_value_in_a_mask_not_sampled_names_the_unlabeled_value(tmp_path: Path) -> None:
    masks = [sparse_mask() for _ in range(18)]  # the spec is decided from 16 of them
    masks[17][5, 5] = 9
    root = write_set(tmp_path / "s", masks, "background\ncell\nunlabeled\n")
    with pytest.raises(UnetkitError) as exc:
        prepare(root)
    assert str(exc.value).startswith(f"{root / 'masks' / '17.png'} has value 9 but the data "
                                     "set declares 2 classes (0..1, 255 = unlabeled)")


def test_colour_masks_cannot_declare_unlabeled(tmp_path: Path) -> None:
    root = tmp_path / "c"
    write_set(root, [sparse_mask()], "background\ncell\nunlabeled\n")
    rgb = np.stack([sparse_mask()] * 3, -1)
    rgb[..., 1] = 0
    Image.fromarray(rgb).save(root / "masks" / "00.png")
    with pytest.raises(UnetkitError, match="needs single-channel class-index masks"):
        prepare(root)


# ---------------------------------------------------------------- scaling and the cache


@pytest.mark.parametrize(("scale", "expected"), [
    (0.5, lambda m: m[1::2, 1::2]),  # nearest: no 255 blends into a class
    (2.0, lambda m: m.repeat(2, 0).repeat(2, 1)),
])
def test_scaled_cache_resamples_masks_nearest(tmp_path: Path, scale, expected) -> None:
    m = sparse_mask()
    data = prepare(write_set(tmp_path / "s", [m], "bg\ncell\nunlabeled\n"), scale=scale)
    np.testing.assert_array_equal(np.asarray(data.cache.mask(0)), expected(m))


# ---------------------------------------------------------------- augmentation

GREY = np.array([100, 180], np.uint8)  # image grey level of class 0 and 1; unlabeled is 255
CLASS_OF = {100: 0, 180: 1, 255: IGNORE, 0: IGNORE}  # 0: image fill of uncovered corners


def geometric_ops(size: list[int]) -> dict[str, torch.nn.Module]:
    """The geometric steps of the strong training pipeline, each forced to apply."""
    found: dict[str, torch.nn.Module] = {}
    for op in build_transforms(size, "strong", train=True, grey=True).transforms:
        inner = op.transforms[0] if isinstance(op, v2.RandomApply) else op
        kinds = {v2.RandomCrop: "crop", v2.RandomHorizontalFlip: "hflip",
                 v2.RandomVerticalFlip: "vflip", RandomRot90: "rot90",
                 v2.RandomAffine: "affine", v2.ElasticTransform: "elastic"}
        name = next((n for t, n in kinds.items() if isinstance(inner, t)), None)
        if name:
            if hasattr(inner, "p"):
                inner.p = 1.0
            found[name] = inner
    return found


@pytest.mark.parametrize("size", [48, 80])  # 80: the crop pads (mask fill 255)
@pytest.mark.parametrize("name", ["crop", "hflip", "vflip", "rot90", "affine", "elastic"])
def test_geometry_carries_255_to_where_the_image_goes(name: str, size: int) -> None:
    """The image encodes the mask (grey per class, white where unlabeled) and is resampled
    linearly or nearest; wherever it is flat after the transform, the mask must hold
    exactly the class of that grey level, and nothing but 0, 1 and 255 ever appears."""
    op = geometric_ops([size, size])[name]
    m = sparse_mask()
    grey = np.where(m == IGNORE, 255, GREY[np.minimum(m, 1)]).astype(np.uint8)
    checked = {0: 0, 1: 0, IGNORE: 0}
    for seed in range(4):
        torch.manual_seed(seed)
        img_t, m_t = op(tv_tensors.Image(torch.from_numpy(grey)[None]),
                        tv_tensors.Mask(torch.from_numpy(m)))
        img, out = img_t[0].numpy(), m_t.numpy()
        assert set(np.unique(out).tolist()) <= {0, 1, IGNORE}
        flat = ndimage.maximum_filter(img, 3) == ndimage.minimum_filter(img, 3)
        for level, cls in CLASS_OF.items():
            where = flat & (img == level)
            np.testing.assert_array_equal(out[where], cls)
            checked[cls] += int(where.sum())
    assert min(checked.values()) > 50, checked  # every kind of pixel was really checked


def test_whole_strong_pipeline_keeps_the_three_values() -> None:
    tf = build_transforms([48, 48], "strong", train=True)
    m = sparse_mask()
    image = tv_tensors.Image(torch.from_numpy(np.stack([m] * 3)))
    seen: set[int] = set()
    for seed in range(8):
        torch.manual_seed(seed)
        _, out = tf(image, tv_tensors.Mask(torch.from_numpy(m)))
        seen |= set(torch.unique(out).tolist())
    assert seen == {0, 1, IGNORE}


# ---------------------------------------------------------------- weight maps


def test_border_weights_balance_classes_over_annotated_pixels() -> None:
    """w_c = n_background / n_foreground counted where annotated: 12 bg, 4 fg -> 3."""
    m = np.full((10, 10), IGNORE, np.uint8)
    m[0, :6] = 0
    m[9, :6] = 0
    m[5, 2:4] = 1
    m[5, 7:9] = 1  # two objects: the border term is on, far from them it is ~0
    w = border_weights(torch.from_numpy(m)).numpy()
    np.testing.assert_allclose(w[m == 1], 3.0)
    assert w[0, 0] == pytest.approx(1.0 + 10 * np.exp(-(np.hypot(5, 2) + np.hypot(5, 7)) ** 2
                                                      / 50), rel=1e-5)
