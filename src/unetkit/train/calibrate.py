"""Temperature scaling at the end of `fit`: one scalar T > 0, fitted on the validation split.

Segmentation networks trained with cross-entropy and Dice are over-confident: their
probabilities crowd near 0 and 1. Dividing the logits by one T (Guo et al., 2017) that
minimises the validation negative log-likelihood fixes most of that without touching the
masks: T > 0 keeps the sign of a binary logit and the argmax of several, so thresholded and
argmax masks are the same. T is stored in the artifact (`temperature` in config.json) and
applied wherever logits become probabilities (predict, evaluate, the exports).

The validation logits are collected from the best model on whole validation images, ignore
pixels left out, subsampled uniformly to at most `max_pixels` pixels (and `MAX_VALUES`
logits) so memory stays bounded; the fit is a bounded scalar search over log T.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar
from torchvision.transforms.v2.functional import center_crop

from unetkit.calibration import CalibrationStats, confidence_and_prediction
from unetkit.errors import UnetkitError
from unetkit.models.artifact import load_model, save_model
from unetkit.progress import progress, say
from unetkit.scoring import IGNORE

MAX_PIXELS = 2_000_000
MAX_VALUES = 16_000_000  # logits kept (pixels x channels): 64 MB of float32
T_BOUNDS = (0.05, 20.0)


@dataclass
class TemperatureFit:
    """The fitted temperature and the validation ECE and NLL before and after it."""

    temperature: float
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    pixels: int

    def as_meta(self) -> dict[str, Any]:
        """What the artifact records: `temperature`, and `calibration` (the evidence)."""
        return {"temperature": self.temperature, "calibration": {
            "split": "val", "pixels": self.pixels, "ece_before": self.ece_before,
            "ece_after": self.ece_after, "nll_before": self.nll_before,
            "nll_after": self.nll_after}}

    def line(self) -> str:
        return (f"calibrated: temperature {self.temperature:.2f}, validation ECE "
                f"{self.ece_before:.3f} -> {self.ece_after:.3f}")


def _thin(chunks: list[tuple[torch.Tensor, torch.Tensor]], gen: torch.Generator
          ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Keep each pixel with probability 1/2 (the sample stays uniform at half the rate)."""
    out = []
    for z, y in chunks:
        keep = torch.rand(y.shape, generator=gen) < 0.5
        out.append((z[keep], y[keep]))
    return out


@torch.inference_mode()
def collect_logits(model: torch.nn.Module, loader: Any, device: torch.device,
                   max_pixels: int = MAX_PIXELS, seed: int = 0, quiet: bool = True
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(n×K float32 logits, n int64 labels) of a uniform sample of the scored pixels.

    Pixels are kept at a rate that halves (thinning what was kept) whenever more than
    `max_pixels` are held, so every pixel had the same chance and at most `max_pixels` plus
    one batch are in memory.
    """
    model = model.to(device).eval()
    gen = torch.Generator().manual_seed(seed)
    chunks: list[tuple[torch.Tensor, torch.Tensor]] = []
    rate, held = 1.0, 0
    for batch in progress(loader, total=len(loader), desc="Calibrating", unit="batch",
                          disable=quiet):
        x, y = batch[0].to(device), batch[1]
        z = model(x).float().cpu()
        if z.shape[-2:] != y.shape[-2:]:  # valid-padding models predict a centre window
            y = center_crop(y, list(z.shape[-2:]))
        z = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        y = y.reshape(-1).long()
        keep = y != IGNORE
        if rate < 1.0:
            keep &= torch.rand(y.shape, generator=gen) < rate
        chunks.append((z[keep], y[keep]))
        held += int(keep.sum())
        while held > max_pixels:
            chunks, rate = _thin(chunks, gen), rate / 2
            held = sum(len(y) for _, y in chunks)
    if not held:
        raise UnetkitError("The validation split has no scored pixels to calibrate on.")
    return torch.cat([z for z, _ in chunks]), torch.cat([y for _, y in chunks])


def nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of `labels` under softmax (or, one channel, sigmoid)
    of logits / temperature."""
    z = logits.float() / temperature  # float32: at most MAX_VALUES logits, summed pairwise
    if z.shape[1] == 1:
        return float(F.binary_cross_entropy_with_logits(z[:, 0], labels.float()))
    return float(F.cross_entropy(z, labels))


def ece(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    """Expected calibration error (15 bins, unetkit.calibration) of logits / temperature."""
    z = logits.float() / temperature
    binary = z.shape[1] == 1
    probs = torch.sigmoid(z) if binary else torch.softmax(z, 1)
    confidence, pred = confidence_and_prediction(probs.T.numpy(), binary)
    stats = CalibrationStats()
    stats.add(confidence, pred == labels.numpy())
    return float(stats.ece() or 0.0)


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T in T_BOUNDS minimising the NLL of logits / T (bounded search over log T; the
    NLL is convex in 1/T, so the search finds the one minimum)."""
    lo, hi = (math.log(b) for b in T_BOUNDS)
    found = minimize_scalar(lambda s: nll(logits, labels, math.exp(s)), bounds=(lo, hi),
                            method="bounded", options={"xatol": 1e-4})
    return float(math.exp(found.x))


def calibrate(logits: torch.Tensor, labels: torch.Tensor) -> TemperatureFit:
    """Fit T and measure ECE and NLL before and after, on the same pixels."""
    t = fit_temperature(logits, labels)
    return TemperatureFit(t, ece(logits, labels), ece(logits, labels, t),
                          nll(logits, labels), nll(logits, labels, t), int(len(labels)))


def calibrate_artifact(artifact: Path, loader: Any, device: torch.device,
                       quiet: bool = False) -> TemperatureFit:
    """Fit the temperature of the artifact in `artifact` on `loader`'s (validation) batches,
    store it in the artifact, and print the one-line result."""
    model = load_model(artifact)
    channels = int(model.unetkit_arch["options"].get("classes", 1))
    logits, labels = collect_logits(model, loader, device, quiet=quiet,
                                    max_pixels=min(MAX_PIXELS, MAX_VALUES // max(channels, 1)))
    found = calibrate(logits, labels)
    save_model(model.cpu(), artifact, found.as_meta())
    say(found.line(), quiet)
    return found
