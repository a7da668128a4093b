"""Losses against values worked out by hand on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from unetkit.errors import UnetkitError, UsageError
from unetkit.train.losses import LOSSES, build_loss, resolve_loss_name

LN2, LN3, LN4 = math.log(2), math.log(3), math.log(4)
LN43 = math.log(4 / 3)


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def binary_logits(probs: list[list[float]]) -> torch.Tensor:
    """1 x 1 x H x W logits whose sigmoid is `probs`."""
    return torch.tensor([[[[logit(p) for p in row] for row in probs]]], dtype=torch.float64).float()


def target(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor([rows], dtype=torch.int64)


# sigmoid: 0.5, 0.75 / 0.25, sigmoid(2)
BIN_LOGITS = torch.tensor([[[[0.0, LN3], [-LN3, 2.0]]]])
BIN_TARGET = target([[1, 1], [0, 0]])
# per pixel BCE: -log .5 = ln2; -log .75 = ln(4/3); -log(1-.25) = ln(4/3); -log(1-s(2)) = ln(1+e^2)
BIN_BCE = [LN2, LN43, LN43, math.log(1 + math.e**2)]

# 3 classes, 1 x 2 pixels: pixel a logits (0,0,0) -> p = (1/3,1/3,1/3), target 0;
# pixel b logits (ln2,0,0) -> p = (1/2,1/4,1/4), target 1
MC_LOGITS = torch.tensor([[[[0.0, LN2]], [[0.0, 0.0]], [[0.0, 0.0]]]])
MC_TARGET = target([[0, 1]])
MC_CE = (LN3 + LN4) / 2  # -log(1/3), -log(1/4)
# soft dice per class with smooth 1, (2 TP + 1) / (sum p + sum g + 1):
#   c0: TP 1/3, sum p 1/3+1/2 = 5/6, sum g 1 -> (5/3)/(17/6) = 10/17
#   c1: TP 1/4, sum p 1/3+1/4 = 7/12, sum g 1 -> (3/2)/(31/12) = 18/31
#   c2: TP 0,   sum p 7/12,           sum g 0 -> 1/(19/12)     = 12/19
MC_DICE = 1 - (10 / 17 + 18 / 31 + 12 / 19) / 3


def value(loss: torch.nn.Module, logits, tgt, weight_map=None) -> float:
    return float(loss(logits, tgt, weight_map))


# ----------------------------------------------------------------------- names and errors
def test_names_and_auto():
    assert set(LOSSES) == {"auto", "bce", "ce", "dice", "bce-dice", "ce-dice", "jaccard",
                           "focal", "tversky", "weighted-ce"}
    assert resolve_loss_name("auto", 1) == "bce-dice"
    assert resolve_loss_name("auto", 4) == "ce-dice"
    assert resolve_loss_name("CE_Dice", 4) == "ce-dice"
    assert build_loss("auto", 1).name == "bce-dice"
    assert build_loss("auto", 3).name == "ce-dice"


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"name": "foo", "num_classes": 1}, "--loss"),
        ({"name": "bce", "num_classes": 3}, "--loss"),
        ({"name": "bce-dice", "num_classes": 2}, "--loss"),
        ({"name": "ce", "num_classes": 3, "class_weights": [1.0, 2.0]}, "--class-weights"),
        ({"name": "ce", "num_classes": 1, "class_weights": [1.0]}, "--class-weights"),
        ({"name": "ce", "num_classes": 2, "class_weights": [1.0, -1.0]}, "--class-weights"),
        ({"name": "dice", "num_classes": 1, "dice_smooth": -1.0}, "--loss-option dice_smooth"),
        ({"name": "focal", "num_classes": 1, "focal_gamma": -0.5}, "--loss-option focal_gamma"),
        ({"name": "ce", "num_classes": 0}, "--classes"),
    ],
)
def test_bad_choices_raise_usage_error(kwargs, flag):
    with pytest.raises(UsageError, match=flag):
        build_loss(**kwargs)


def test_target_value_out_of_range_is_a_data_error():
    with pytest.raises(UnetkitError, match="value 2"):
        build_loss("bce", 1)(BIN_LOGITS, target([[1, 2], [0, 0]]))


def test_weighted_ce_needs_a_weight_map():
    with pytest.raises(UsageError, match="weight map"):
        build_loss("weighted-ce", 1)(BIN_LOGITS, BIN_TARGET)


# ----------------------------------------------------------------------- cross-entropy
def test_bce_hand_value_and_ce_on_binary_is_bce():
    expected = sum(BIN_BCE) / 4
    assert value(build_loss("bce", 1), BIN_LOGITS, BIN_TARGET) == pytest.approx(expected, rel=1e-6)
    assert value(build_loss("ce", 1), BIN_LOGITS, BIN_TARGET) == pytest.approx(expected, rel=1e-6)
    ref = F.binary_cross_entropy_with_logits(BIN_LOGITS[:, 0], BIN_TARGET.float())
    assert expected == pytest.approx(float(ref), rel=1e-6)


def test_bce_ignore_pixels_and_class_weights():
    tgt = target([[1, 255], [0, 0]])
    loss = build_loss("bce", 1)
    # pixel (0,1) is ignored: mean over the other three
    expected = (BIN_BCE[0] + BIN_BCE[2] + BIN_BCE[3]) / 3
    assert value(loss, BIN_LOGITS, tgt) == pytest.approx(expected, rel=1e-6)
    # class weights [background 1, foreground 3]: weighted mean, normalised by the weights
    weighted = build_loss("bce", 1, class_weights=[1.0, 3.0])
    expected_w = (3 * BIN_BCE[0] + 3 * BIN_BCE[1] + BIN_BCE[2] + BIN_BCE[3]) / (3 + 3 + 1 + 1)
    assert value(weighted, BIN_LOGITS, BIN_TARGET) == pytest.approx(expected_w, rel=1e-6)
    # the foreground pixels (lower loss here) now count three times: the mean moves towards them
    assert expected_w < value(build_loss("bce", 1), BIN_LOGITS, BIN_TARGET)
    assert value(build_loss("bce", 1, class_weights=[2.0, 2.0]), BIN_LOGITS, BIN_TARGET) == \
        pytest.approx(sum(BIN_BCE) / 4, rel=1e-6)


def test_multiclass_ce_hand_value_and_class_weights():
    assert value(build_loss("ce", 3), MC_LOGITS, MC_TARGET) == pytest.approx(MC_CE, rel=1e-6)
    cw = [1.0, 2.0, 5.0]
    expected = (1 * LN3 + 2 * LN4) / (1 + 2)
    got = value(build_loss("ce", 3, class_weights=cw), MC_LOGITS, MC_TARGET)
    assert got == pytest.approx(expected, rel=1e-6)
    ref = F.cross_entropy(MC_LOGITS, MC_TARGET, weight=torch.tensor(cw))
    assert got == pytest.approx(float(ref), rel=1e-6)


def test_weighted_ce_hand_value():
    tgt = target([[1, 1], [0, 255]])
    wmap = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    # sum w*l over valid pixels / sum w over valid pixels (the ignored pixel's 4 is dropped)
    expected = (1 * LN2 + 2 * LN43 + 3 * LN43) / (1 + 2 + 3)
    got = value(build_loss("weighted-ce", 1), BIN_LOGITS, tgt, wmap)
    assert got == pytest.approx(expected, rel=1e-6)
    # multi-class: weight 3 on pixel a, 1 on pixel b
    wmap_mc = torch.tensor([[[3.0, 1.0]]])
    got_mc = value(build_loss("weighted-ce", 3), MC_LOGITS, MC_TARGET, wmap_mc)
    assert got_mc == pytest.approx((3 * LN3 + LN4) / 4, rel=1e-6)
    # a constant map is plain CE
    assert value(build_loss("weighted-ce", 3), MC_LOGITS, MC_TARGET, torch.full((1, 1, 2), 7.0)) \
        == pytest.approx(MC_CE, rel=1e-6)


def test_focal_hand_values():
    logits = torch.tensor([[[[0.0, LN3]]]])
    tgt = target([[1, 1]])
    # p_t = 0.5 and 0.75: (1-p_t)^2 * -log p_t
    expected = (0.25 * LN2 + 0.0625 * LN43) / 2
    assert value(build_loss("focal", 1), logits, tgt) == pytest.approx(expected, rel=1e-6)
    # multi-class: p_t = 1/3 and 1/4
    expected_mc = ((2 / 3) ** 2 * LN3 + (3 / 4) ** 2 * LN4) / 2
    assert value(build_loss("focal", 3), MC_LOGITS, MC_TARGET) == pytest.approx(expected_mc,
                                                                              rel=1e-6)
    # gamma 0 is cross-entropy
    assert value(build_loss("focal", 3, focal_gamma=0), MC_LOGITS, MC_TARGET) == pytest.approx(
        MC_CE, rel=1e-6)


# ----------------------------------------------------------------------- overlap losses
P = [[0.8, 0.6], [0.3, 0.1]]  # predicted foreground probabilities for BIN_TARGET
# TP = 0.8 + 0.6 = 1.4, FP = 0.3 + 0.1 = 0.4, FN = 0.2 + 0.4 = 0.6, sum p = 1.8, sum g = 2


def test_binary_dice_jaccard_tversky_hand_values():
    logits = binary_logits(P)
    # dice = (2*1.4 + 1) / (1.8 + 2 + 1) = 3.8 / 4.8
    assert value(build_loss("dice", 1), logits, BIN_TARGET) == pytest.approx(1 - 3.8 / 4.8,
                                                                            rel=1e-5)
    # jaccard = (1.4 + 1) / (1.4 + 0.4 + 0.6 + 1) = 2.4 / 3.4
    assert value(build_loss("jaccard", 1), logits, BIN_TARGET) == pytest.approx(1 - 2.4 / 3.4,
                                                                               rel=1e-5)
    # tversky = (1.4 + 1) / (1.4 + 0.3*0.4 + 0.7*0.6 + 1) = 2.4 / 2.94
    assert value(build_loss("tversky", 1), logits, BIN_TARGET) == pytest.approx(1 - 2.4 / 2.94,
                                                                               rel=1e-5)
    # no smoothing: dice = 2*1.4 / 3.8, and tversky with alpha = beta = 0.5 is the same
    assert value(build_loss("dice", 1, dice_smooth=0), logits, BIN_TARGET) == pytest.approx(
        1 - 2.8 / 3.8, rel=1e-5)
    half = build_loss("tversky", 1, tversky_alpha=0.5, tversky_beta=0.5, dice_smooth=0)
    assert value(half, logits, BIN_TARGET) == pytest.approx(1 - 2.8 / 3.8, rel=1e-5)


def test_dice_all_background_and_all_foreground():
    dice = build_loss("dice", 1)
    quarter = binary_logits([[0.25, 0.25], [0.25, 0.25]])
    # all background: TP 0, sum p 1, sum g 0 -> dice = 1 / (1 + 1)
    assert value(dice, quarter, target([[0, 0], [0, 0]])) == pytest.approx(0.5, rel=1e-5)
    # confident all-background prediction on an all-background mask: ~no loss
    assert value(dice, torch.full((1, 1, 2, 2), -30.0), target([[0, 0], [0, 0]])) == \
        pytest.approx(0.0, abs=1e-6)
    # all foreground with p = .75: TP 3, sum p 3, sum g 4 -> (6 + 1) / (3 + 4 + 1) = 7/8
    three_q = binary_logits([[0.75, 0.75], [0.75, 0.75]])
    assert value(dice, three_q, target([[1, 1], [1, 1]])) == pytest.approx(1 / 8, rel=1e-5)
    # bce-dice adds the two: all-foreground BCE = -log .75
    assert value(build_loss("bce-dice", 1), three_q, target([[1, 1], [1, 1]])) == \
        pytest.approx(LN43 + 1 / 8, rel=1e-5)


def test_dice_per_image_differs_from_batch():
    logits = torch.cat([binary_logits([[0.75, 0.75], [0.75, 0.75]]),
                        binary_logits([[0.25, 0.25], [0.25, 0.25]])])
    tgt = torch.cat([target([[1, 1], [1, 1]]), target([[0, 0], [0, 0]])])
    # batch: TP 3, sum p 3 + 1 = 4, sum g 4 -> 7/9
    assert value(build_loss("dice", 1), logits, tgt) == pytest.approx(2 / 9, rel=1e-5)
    # per image: 7/8 and 1/2 -> mean 11/16
    per_image = build_loss("dice", 1, dice_per_image=True)
    assert value(per_image, logits, tgt) == pytest.approx(5 / 16, rel=1e-5)
    # an image with only ignored pixels does not enter the per-image mean
    tgt_ignored = tgt.clone()
    tgt_ignored[1] = 255
    assert value(per_image, logits, tgt_ignored) == pytest.approx(1 / 8, rel=1e-5)


def test_multiclass_dice_and_ce_dice_hand_values():
    assert value(build_loss("dice", 3), MC_LOGITS, MC_TARGET) == pytest.approx(MC_DICE, rel=1e-5)
    assert value(build_loss("ce-dice", 3), MC_LOGITS, MC_TARGET) == pytest.approx(
        MC_CE + MC_DICE, rel=1e-5)
    weighted = build_loss("ce-dice", 3, ce_weight=0.5, dice_weight=2.0)
    assert value(weighted, MC_LOGITS, MC_TARGET) == pytest.approx(0.5 * MC_CE + 2 * MC_DICE,
                                                                  rel=1e-5)
    assert value(build_loss("auto", 3), MC_LOGITS, MC_TARGET) == pytest.approx(MC_CE + MC_DICE,
                                                                               rel=1e-5)


def test_dice_excludes_ignored_pixels():
    # pixel (1,1) ignored: TP 1.4, sum p 1.7, sum g 2 -> (2.8 + 1) / (1.7 + 2 + 1) = 3.8 / 4.7
    tgt = target([[1, 1], [0, 255]])
    got = value(build_loss("dice", 1), binary_logits(P), tgt)
    assert got == pytest.approx(1 - 3.8 / 4.7, rel=1e-5)


# ----------------------------------------------------------------------- every loss
def _case(num_classes: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, num_classes, 5, 6, generator=gen) * 3
    tgt = torch.randint(0, max(num_classes, 2), (2, 5, 6), generator=gen)
    tgt[0, :2, :3] = 255
    tgt[1, 4, :] = 255
    wmap = torch.rand(2, 5, 6, generator=gen) * 5 + 0.5
    return logits, tgt, wmap


ALL = [(name, k) for name in LOSSES for k in (1, 3) if not (name.startswith("bce") and k != 1)]


@pytest.mark.parametrize(("name", "k"), ALL)
def test_ignored_logits_change_nothing_and_gradients_are_finite(name, k):
    loss = build_loss(name, k, class_weights=[1.0, 2.0, 0.5][: max(k, 2)])
    logits, tgt, wmap = _case(k)
    ignored = (tgt == 255)[:, None].expand_as(logits)
    a = logits.clone().requires_grad_(True)
    la = loss(a, tgt, wmap)
    la.backward()
    changed = logits.clone()
    changed[ignored] = torch.tensor([1e4, -1e4, float("nan"), float("inf")]).repeat(
        ignored.sum() // 4 + 1)[: int(ignored.sum())]
    wmap_changed = wmap.clone()
    wmap_changed[tgt == 255] = float("nan")
    b = changed.clone().requires_grad_(True)
    lb = loss(b, tgt, wmap_changed)
    lb.backward()
    assert la.ndim == 0 and la.dtype == torch.float32
    assert la.item() == lb.item()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
    assert torch.equal(a.grad, b.grad)
    assert (a.grad[ignored] == 0).all()
    assert a.grad.abs().sum() > 0


@pytest.mark.parametrize(("name", "k"), ALL)
def test_extreme_and_all_ignored_inputs_stay_finite(name, k):
    loss = build_loss(name, k, dice_smooth=0.0, focal_gamma=0.5)
    logits, tgt, wmap = _case(k, seed=1)
    x = (logits.sign() * 200).requires_grad_(True)
    out = loss(x, tgt, wmap)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(x.grad).all()
    y = logits.clone().requires_grad_(True)
    out = loss(y, torch.full_like(tgt, 255), wmap)
    out.backward()
    assert out.item() == 0.0 and (y.grad == 0).all()


@pytest.mark.parametrize(("name", "k"), ALL)
def test_bf16_autocast_on_cpu(name, k):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(2, k, 1)
    image = torch.randn(2, 2, 5, 6)
    _, tgt, wmap = _case(k)
    loss = build_loss(name, k)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = conv(image)
        out = loss(logits, tgt, wmap)
    assert logits.dtype == torch.bfloat16
    assert out.dtype == torch.float32 and torch.isfinite(out)
    out.backward()
    assert torch.isfinite(conv.weight.grad).all()
    # same value as float32 on the same (bf16-rounded) logits
    assert out.item() == pytest.approx(value(loss, logits.detach().float(), tgt, wmap), rel=1e-5)


def test_plain_ce_uses_a_weight_map_when_given():
    logits, tgt, wmap = _case(3)
    assert value(build_loss("ce", 3), logits, tgt, wmap) == pytest.approx(
        value(build_loss("weighted-ce", 3), logits, tgt, wmap), rel=1e-6)
    assert value(build_loss("ce", 3), logits, tgt) != pytest.approx(
        value(build_loss("ce", 3), logits, tgt, wmap), rel=1e-3)
