"""Segmentation losses: logits B x K x H x W and int64 targets B x H x W -> one scalar.

Conventions shared by every loss built here:

* Binary tasks have K = 1 logit channel (sigmoid); the target holds 0/1.
  Multi-class tasks have K >= 2 channels (softmax); the target holds class indices.
* Target pixels equal to ``ignore_index`` (255 by default) take part in no loss term
  and in no denominator; changing their logits changes neither the loss nor the gradient
  of the other pixels, and their logits get a gradient of exactly zero.
* Everything is computed in float32 with autocast switched off, so the losses run
  unchanged inside ``torch.autocast(..., dtype=torch.bfloat16)``.

Cross-entropy-type terms (``bce``, ``ce``, ``focal``, ``weighted-ce`` and the CE part of
``bce-dice`` / ``ce-dice``) are a weighted mean over valid pixels::

    loss = sum_x w(x) * l(x) / sum_x w(x),    w(x) = class_weights[y(x)] * weight_map(x)

where a missing ``class_weights`` or ``weight_map`` counts as 1, so with neither this is the
plain mean over valid pixels, and with class weights only it is what
``torch.nn.functional.cross_entropy(weight=..., ignore_index=...)`` computes.  For binary
tasks ``class_weights`` is ``[w_background, w_foreground]``.  ``weighted-ce`` is this term
with a weight map that must be given (the U-Net paper's pixel-weighted cross-entropy).

Overlap terms (``dice``, ``jaccard``, ``tversky``) use soft probabilities p and one-hot
targets g restricted to valid pixels.  Per class c, summing over the batch and all pixels
(or over each image's pixels with ``dice_per_image=True``)::

    TP = sum p*g,  FP = sum p*(1-g),  FN = sum (1-p)*g,  s = dice_smooth
    dice    = (2 TP + s) / (2 TP + FP + FN + s)
    jaccard = (TP + s) / (TP + FP + FN + s)
    tversky = (TP + s) / (TP + alpha FP + beta FN + s)     (alpha weighs false positives)

and the loss is 1 - the mean score over classes (and over images that have at least one
valid pixel, in per-image mode).  Multi-class averages over all K classes, background
included; binary uses the foreground class only.  Overlap terms use neither class weights
nor the weight map.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unetkit.data.transforms import IGNORE
from unetkit.errors import UnetkitError, UsageError

LOSSES: tuple[str, ...] = (
    "auto",
    "bce",
    "ce",
    "dice",
    "bce-dice",
    "ce-dice",
    "jaccard",
    "focal",
    "tversky",
    "weighted-ce",
)

# name -> (cross-entropy-type term, overlap term)
_TERMS: dict[str, tuple[str | None, str | None]] = {
    "bce": ("ce", None),
    "ce": ("ce", None),
    "weighted-ce": ("ce", None),
    "focal": ("focal", None),
    "dice": (None, "dice"),
    "jaccard": (None, "jaccard"),
    "tversky": (None, "tversky"),
    "bce-dice": ("ce", "dice"),
    "ce-dice": ("ce", "dice"),
}

_EPS = 1e-7  # keeps overlap ratios finite when dice_smooth is 0


def resolve_loss_name(name: str, num_classes: int) -> str:
    """Normalise a --loss value and resolve "auto"; raise UsageError for unknown names."""
    key = str(name).strip().lower().replace("_", "-")
    if key not in LOSSES:
        raise UsageError(f"--loss {name!r} is unknown; choose one of {', '.join(LOSSES)}.")
    if key == "auto":
        return "bce-dice" if num_classes == 1 else "ce-dice"
    if key in ("bce", "bce-dice") and num_classes != 1:
        alternative = "ce" if key == "bce" else "ce-dice"
        raise UsageError(f"--loss {key!r} is for binary tasks (1 logit channel) but this model "
                         f"has {num_classes} classes; use {alternative!r} instead.")
    return key


def _check_non_negative(value: float, flag: str) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"{flag} must be a finite number >= 0, got {value}.")
    return value


class SegmentationLoss(nn.Module):
    """ce_weight * (CE-type term) + dice_weight * (overlap term); built by `build_loss`."""

    def __init__(
        self,
        name: str,
        num_classes: int,
        *,
        ce_term: str | None,
        overlap_term: str | None,
        class_weights: list[float] | None,
        ignore_index: int,
        require_weight_map: bool,
        dice_smooth: float,
        dice_per_image: bool,
        dice_weight: float,
        ce_weight: float,
        focal_gamma: float,
        tversky_alpha: float,
        tversky_beta: float,
    ) -> None:
        super().__init__()
        self.name = name
        self.num_classes = num_classes
        self.ce_term = ce_term
        self.overlap_term = overlap_term
        self.ignore_index = ignore_index
        self.require_weight_map = require_weight_map
        self.dice_smooth = dice_smooth
        self.dice_per_image = dice_per_image
        # a single-term loss is not scaled by the weight of the absent term
        self.ce_weight = ce_weight if overlap_term is not None else 1.0
        self.dice_weight = dice_weight if ce_term is not None else 1.0
        self.focal_gamma = focal_gamma
        self.tversky_alpha = tversky_alpha
        self.tversky_beta = tversky_beta
        cw = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        self.register_buffer("class_weights", cw, persistent=False)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, num_classes={self.num_classes}"

    # ------------------------------------------------------------------ forward
    def forward(self, logits: Tensor, target: Tensor, weight_map: Tensor | None = None) -> Tensor:
        if self.require_weight_map and weight_map is None:
            raise UsageError(f"--loss {self.name!r} needs a per-pixel weight map for every "
                             "batch, but none was given; use another --loss or enable weight maps.")
        with torch.autocast(device_type=logits.device.type, enabled=False):
            logits, target, valid, weight_map = self._prepare(logits, target, weight_map)
            loss = logits.new_zeros(())
            if self.ce_term is not None:
                loss = loss + self.ce_weight * self._ce(logits, target, valid, weight_map)
            if self.overlap_term is not None:
                loss = loss + self.dice_weight * self._overlap(logits, target, valid)
        return loss

    def _prepare(
        self, logits: Tensor, target: Tensor, weight_map: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        if logits.ndim != 4:
            raise ValueError(f"logits must be B x K x H x W, got shape {tuple(logits.shape)}")
        if target.ndim == 4 and target.shape[1] == 1:
            target = target[:, 0]
        b, k, h, w = logits.shape
        if k != self.num_classes:
            raise ValueError(f"logits have {k} channels but the loss was built for "
                             f"{self.num_classes}")
        if tuple(target.shape) != (b, h, w):
            raise ValueError(f"target shape {tuple(target.shape)} does not match logits "
                             f"{tuple(logits.shape)} (expected {(b, h, w)})")
        target = target.long()
        valid = target != self.ignore_index
        n_cls = max(k, 2)
        bad = valid & ((target < 0) | (target >= n_cls))
        if bool(bad.any()):
            value = int(target[bad][0])
            raise UnetkitError(f"A mask holds value {value}, but the task has {n_cls} classes "
                               f"(0..{n_cls - 1}) and the ignore value is {self.ignore_index}.")
        # zero the logits of ignored pixels: their values (even inf/nan) cannot leak into the
        # loss, and the `where` sends them exactly zero gradient
        logits = torch.where(valid[:, None], logits.float(), 0.0)
        target = torch.where(valid, target, 0)
        if weight_map is not None:
            if weight_map.ndim == 4 and weight_map.shape[1] == 1:
                weight_map = weight_map[:, 0]
            if tuple(weight_map.shape) != (b, h, w):
                raise ValueError(f"weight map shape {tuple(weight_map.shape)} does not match "
                                 f"the target {(b, h, w)}")
            weight_map = torch.where(valid, weight_map.float(), 0.0)
        return logits, target, valid, weight_map

    # ------------------------------------------------------------------ terms
    def _ce(
        self, logits: Tensor, target: Tensor, valid: Tensor, weight_map: Tensor | None
    ) -> Tensor:
        if self.num_classes == 1:
            sign = target.to(logits.dtype) * 2 - 1
            log_pt = F.logsigmoid(sign * logits[:, 0])  # log p(true class)
        else:
            log_pt = F.log_softmax(logits, dim=1).gather(1, target[:, None])[:, 0]
        per_pixel = -log_pt
        if self.ce_term == "focal" and self.focal_gamma != 0:
            one_minus_pt = (-torch.expm1(log_pt)).clamp_min(1e-12)
            per_pixel = one_minus_pt.pow(self.focal_gamma) * per_pixel
        weights = valid.to(per_pixel.dtype)
        if self.class_weights is not None:
            weights = weights * self.class_weights.to(per_pixel.device)[target]
        if weight_map is not None:
            weights = weights * weight_map
        total = (weights * per_pixel).sum()
        return total / weights.sum().clamp_min(1e-12)

    def _overlap(self, logits: Tensor, target: Tensor, valid: Tensor) -> Tensor:
        mask = valid[:, None].to(logits.dtype)
        if self.num_classes == 1:
            probs = torch.sigmoid(logits)
            onehot = target[:, None].to(logits.dtype)
        else:
            probs = torch.softmax(logits, dim=1)
            onehot = F.one_hot(target, self.num_classes).permute(0, 3, 1, 2).to(logits.dtype)
        probs = probs * mask
        onehot = onehot * mask
        dims = (2, 3) if self.dice_per_image else (0, 2, 3)
        tp = (probs * onehot).sum(dims)
        fp = (probs.sum(dims) - tp).clamp_min(0)
        fn = (onehot.sum(dims) - tp).clamp_min(0)
        s = self.dice_smooth
        if self.overlap_term == "dice":
            num, den = 2 * tp + s, 2 * tp + fp + fn + s
        elif self.overlap_term == "jaccard":
            num, den = tp + s, tp + fp + fn + s
        else:  # tversky
            num, den = tp + s, tp + self.tversky_alpha * fp + self.tversky_beta * fn + s
        loss = 1 - num / den.clamp_min(_EPS)  # B x K (per image) or K (batch)
        if self.dice_per_image:
            has_valid = valid.flatten(1).any(1).to(loss.dtype)[:, None].expand_as(loss)
            return (loss * has_valid).sum() / has_valid.sum().clamp_min(1)
        return loss.mean() * valid.any().to(loss.dtype)


# what `--loss-option KEY=VALUE` (config: loss_options) may set, besides --class-weights
LOSS_OPTIONS = ("dice_smooth", "dice_per_image", "dice_weight", "ce_weight", "focal_gamma",
                "tversky_alpha", "tversky_beta", "edge_weight")


def check_loss_options(options: dict[str, object]) -> None:
    """Names and values of loss options, before any data is read (the class count, needed
    for --class-weights' length, is checked by build_loss)."""
    unknown = sorted(set(options) - set(LOSS_OPTIONS) - {"class_weights"})
    if unknown:
        raise UsageError(f"--loss-option {unknown[0]} is unknown; use one of "
                         f"{', '.join(LOSS_OPTIONS)}.")
    for key, value in options.items():
        if key == "dice_per_image":
            if not isinstance(value, bool):
                raise UsageError(f"--loss-option dice_per_image={value!r} must be true or "
                                 "false.")
        elif key != "class_weights":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UsageError(f"--loss-option {key}={value!r} must be a number.")
            _check_non_negative(value, f"--loss-option {key}")


def build_loss(
    name: str,
    num_classes: int,
    *,
    class_weights: list[float] | None = None,
    ignore_index: int = IGNORE,
    dice_smooth: float = 1.0,
    dice_per_image: bool = False,
    dice_weight: float = 1.0,
    ce_weight: float = 1.0,
    focal_gamma: float = 2.0,
    tversky_alpha: float = 0.3,
    tversky_beta: float = 0.7,
) -> nn.Module:
    """Build the loss called `name` for a model with `num_classes` logit channels.

    The module's forward is ``(logits, target, weight_map=None) -> scalar tensor``; see the
    module docstring for the exact definitions.  Invalid choices raise UsageError.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise UsageError(f"--classes must be a whole number >= 1, got {num_classes!r}.")
    key = resolve_loss_name(name, num_classes)
    ce_term, overlap_term = _TERMS[key]
    n_cls = max(num_classes, 2)
    if class_weights is not None:
        class_weights = [_check_non_negative(v, "--class-weights") for v in class_weights]
        if len(class_weights) != n_cls:
            what = "background and foreground" if num_classes == 1 else "each class"
            raise UsageError(f"--class-weights needs {n_cls} values (one for {what}), got "
                             f"{len(class_weights)}.")
        if sum(class_weights) == 0:
            raise UsageError("--class-weights must not all be 0.")
    dice_smooth = _check_non_negative(dice_smooth, "--loss-option dice_smooth")
    dice_weight = _check_non_negative(dice_weight, "--loss-option dice_weight")
    ce_weight = _check_non_negative(ce_weight, "--loss-option ce_weight")
    if ce_term is not None and overlap_term is not None and dice_weight + ce_weight == 0:
        raise UsageError(f"--loss-option ce_weight and dice_weight are both 0, so --loss "
                         f"{key!r} would always be 0.")
    focal_gamma = _check_non_negative(focal_gamma, "--loss-option focal_gamma")
    tversky_alpha = _check_non_negative(tversky_alpha, "--loss-option tversky_alpha")
    tversky_beta = _check_non_negative(tversky_beta, "--loss-option tversky_beta")
    if overlap_term == "tversky" and tversky_alpha + tversky_beta == 0:
        raise UsageError("--loss-option tversky_alpha and tversky_beta must not both be 0.")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise UsageError(f"The loss's ignore_index must be a whole number, got "
                         f"{ignore_index!r}.")
    return SegmentationLoss(
        key,
        num_classes,
        ce_term=ce_term,
        overlap_term=overlap_term,
        class_weights=class_weights,
        ignore_index=ignore_index,
        require_weight_map=key == "weighted-ce",
        dice_smooth=dice_smooth,
        dice_per_image=bool(dice_per_image),
        dice_weight=dice_weight,
        ce_weight=ce_weight,
        focal_gamma=focal_gamma,
        tversky_alpha=tversky_alpha,
        tversky_beta=tversky_beta,
    )
