"""Tiled prediction equals whole-image prediction where it must, and nearly where it can't."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unetkit.errors import UsageError
from unetkit.infer.tiling import _mirror_index, _positions, gaussian_weight, sliding_window


def _image(h: int = 97, w: int = 131, c: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(c, h, w, generator=torch.Generator().manual_seed(seed))


def _pixelwise(x: torch.Tensor) -> torch.Tensor:
    """A per-pixel 'model' with K=2 outputs: 2x and x^2 - 1 of channel sums."""
    s = x.sum(1, keepdim=True)
    return torch.cat([2 * s, s * s - 1], 1)


def test_positions_hand_computed() -> None:
    # 97 px, tile 32, overlap 0.25: step floor(32*0.75)=24, ceil(65/24)+1=4 tiles, 65/3 apart
    assert _positions(97, 32, 0.25) == [0, 22, 43, 65]
    # 131 px: ceil(99/24)+1=6 tiles, 99/5=19.8 apart
    assert _positions(131, 32, 0.25) == [0, 20, 40, 59, 79, 99]
    assert _positions(32, 32, 0.25) == [0]
    assert _positions(20, 32, 0.5) == [-6]  # one tile, centred


def test_mirror_index_matches_numpy_reflect_even_for_huge_pads() -> None:
    axis = np.arange(3)
    for pad in (1, 2, 7):
        idx = _mirror_index(-pad, 3 + 2 * pad, 3)
        np.testing.assert_array_equal(axis[np.asarray(idx)], np.pad(axis, pad, mode="reflect"))
    assert _mirror_index(2, 5, 10) == slice(2, 7)
    assert _mirror_index(-2, 5, 1).tolist() == [0] * 5  # a 1-px axis is replicated


def test_gaussian_weight() -> None:
    w = gaussian_weight((32, 16))
    assert w.dtype == torch.float32 and w.shape == (32, 16)
    assert w.max().item() == pytest.approx(1.0, abs=1e-3)
    # sigma = 32/8 = 4: the edge row is 15.5 px from the centre -> exp(-0.5*(15.5/4)^2)
    assert w[0, 7:9].mean().item() == pytest.approx(np.exp(-0.5 * (15.5 / 4) ** 2), rel=0.02)
    torch.testing.assert_close(w, w.flip(0).flip(1))
    assert w.min().item() > 0


@pytest.mark.parametrize("overlap", [0.25, 0.5])
def test_pixelwise_model_is_exact_at_odd_sizes(overlap: float) -> None:
    image = _image()
    out = sliding_window(_pixelwise, image, (32, 32), overlap=overlap)
    assert out.shape == (2, 97, 131) and out.dtype == torch.float32
    torch.testing.assert_close(out, _pixelwise(image[None])[0], atol=1e-5, rtol=1e-5)


def test_batches_are_bounded_and_counted() -> None:
    sizes: list[int] = []

    def fn(x: torch.Tensor) -> torch.Tensor:
        sizes.append(x.shape[0])
        return x[:, :1] * 2

    image = _image()
    sliding_window(fn, image, (32, 32), overlap=0.25, batch_size=5)
    assert sizes == [5, 5, 5, 5, 4]  # 4 x 6 = 24 tiles (see test_positions_hand_computed)


def test_numpy_output_and_rectangular_tile() -> None:
    image = _image(45, 70, c=1)
    out = sliding_window(lambda x: (x * 3).numpy(), image, (16, 24), overlap=0.5,
                         out_channels=1)
    torch.testing.assert_close(out, image * 3, atol=1e-5, rtol=1e-5)


def test_same_padding_conv_net_close_to_whole_image() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(8, 2, 3, padding=1)).eval()
    image = _image()
    with torch.no_grad():
        full = net(image[None])[0]
    # The net sees 3 px each way. A tile's output is exact where the pixel is >= 3 px from
    # every interior tile edge (tiles at the image border see the same zero padding as the
    # whole image). So: exact away from seams, and near seams only the tile that has the
    # pixel near its edge is wrong, weighted by exp(-0.5*(12.5/4)^2) ~ 0.8% of a centre
    # weight. Measured max error: 2.5% (overlap .25) and 0.5% (overlap .5) of the output's
    # std; we allow 10%, and more overlap must not be worse.
    errors = {}
    for overlap in (0.25, 0.5):
        out = sliding_window(net, image, (32, 32), overlap=overlap)
        err = (out - full).abs()
        errors[overlap] = err.max().item()
        assert errors[overlap] < 0.1 * full.std().item()

        def safe(length: int, overlap: float = overlap) -> torch.Tensor:
            ok = torch.ones(length, dtype=torch.bool)
            for start in _positions(length, 32, overlap):
                p = torch.arange(start, start + 32)
                near = torch.zeros(32, dtype=torch.bool)
                if start > 0:
                    near |= p - start < 3
                if start + 32 < length:
                    near |= start + 31 - p < 3
                ok[p[near]] = False
            return ok

        exact = safe(97)[:, None] & safe(131)[None, :]
        assert 0.3 < exact.float().mean().item() < 0.9  # the check is not vacuous
        assert err[:, exact].max().item() < 1e-5
    assert errors[0.5] <= errors[0.25]


def test_margin_crop_covers_every_pixel() -> None:
    margin = 6

    def valid_fn(x: torch.Tensor) -> torch.Tensor:  # 40 in -> 28 out
        return _pixelwise(x)[..., margin:-margin, margin:-margin]

    for h, w in ((97, 131), (5, 3)):  # the second is smaller than the pad: mirrored twice
        image = _image(h, w)
        out = sliding_window(valid_fn, image, (40, 40), overlap=0.25, margin=margin)
        assert out.shape == (2, h, w)
        torch.testing.assert_close(out, _pixelwise(image[None])[0], atol=1e-5, rtol=1e-5)


def test_valid_conv_net_with_margin_equals_mirror_padded_whole_image() -> None:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(),
                        nn.Conv2d(4, 1, 3)).eval()  # valid convs: 3 px lost per side
    image = _image(50, 61, c=2)
    with torch.no_grad():
        full = net(F.pad(image[None], (3, 3, 3, 3), mode="reflect"))[0]
    out = sliding_window(net, image, (22, 22), overlap=0.25, margin=3, batch_size=3)
    torch.testing.assert_close(out, full, atol=1e-5, rtol=1e-5)


def test_image_smaller_than_tile_is_one_padded_tile() -> None:
    shapes: list[tuple[int, ...]] = []

    def fn(x: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(x.shape))
        return _pixelwise(x)

    image = _image(20, 25)
    out = sliding_window(fn, image, (32, 32))
    assert shapes == [(1, 3, 32, 32)]
    torch.testing.assert_close(out, _pixelwise(image[None])[0], atol=1e-5, rtol=1e-5)


def test_bad_arguments_and_outputs() -> None:
    image = _image(20, 20)
    with pytest.raises(UsageError, match="--tile"):
        sliding_window(_pixelwise, image, (10, 10), margin=5)
    with pytest.raises(UsageError, match="--overlap"):
        sliding_window(_pixelwise, image, (8, 8), overlap=1.0)
    with pytest.raises(UsageError, match=r"check --tile\."):
        sliding_window(lambda x: x[..., 1:, :], image, (8, 8))
    with pytest.raises(UsageError, match="channels"):
        sliding_window(_pixelwise, image, (8, 8), out_channels=3)


@pytest.mark.parametrize("align", [4, 16, 32])
def test_aligned_positions_cover_and_sit_on_the_grid(align: int) -> None:
    for tile in (12, 24, 32, 48):
        for overlap in (0.0, 0.25, 0.5):
            for length in range(1, 200, 7):
                starts = _positions(length, tile, overlap, align)
                if align > tile:  # ignored: the plain positions
                    assert starts == _positions(length, tile, overlap)
                    continue
                assert all(s % align == 0 for s in starts)
                assert starts[0] <= 0 and starts[-1] + tile >= length
                assert starts[-1] < max(length - tile, 0) + align  # at most align-1 past
                gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
                assert all(0 < g <= max(tile * (1 - overlap), align) for g in gaps)
                assert all(g <= tile for g in gaps)  # no pixel left uncovered


def test_float16_result_matches_float32_blend() -> None:
    """The stored dtype changes; the blend (float32, band by band) does not."""
    image = _image(150, 90)
    full = sliding_window(_pixelwise, image, (32, 32), overlap=0.5)
    half = sliding_window(_pixelwise, image, (32, 32), overlap=0.5, out_dtype=torch.float16)
    assert half.dtype == torch.float16 and half.shape == full.shape
    torch.testing.assert_close(half.float(), full, atol=0, rtol=2e-3)


def test_multiclass_mask_by_row_chunks(monkeypatch) -> None:
    from unetkit.infer import predict as predict_mod

    monkeypatch.setattr(predict_mod, "ROWS_PER_CHUNK", 3)
    probs = np.random.default_rng(1).random((4, 10, 7)).astype(np.float16)
    predictor = predict_mod.Predictor.__new__(predict_mod.Predictor)
    predictor.binary = False
    mask = predictor.mask_from_probabilities(probs)
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, probs.argmax(0))
