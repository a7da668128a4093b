"""From an image on disk to class probabilities and a mask at the image's own size.

The model is run at the scale it was trained at (the artifact records it), whole-image when
the image is small enough and by overlapping tiles otherwise, optionally averaged over flips
(TTA); probabilities are resized back to the original size before thresholding.
`probabilities_with_uncertainty` adds per-pixel entropy and mutual information over the
members available (ensemble folds, TTA views or Monte-Carlo dropout), with the same mask.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unetkit.device import autocast_context, check_precision, pick_device, resolve_precision
from unetkit.errors import UsageError
from unetkit.infer import engines, preprocess
from unetkit.infer.tiling import sliding_window
from unetkit.infer.uncertainty import (
    UncertaintyMaps,
    max_entropy,
    predictive_entropy,
    uncertainty_maps,
)
from unetkit.models.artifact import temperature_of
from unetkit.models.ensemble import Ensemble
from unetkit.models.geometry import geometry_of

WHOLE_IMAGE_PIXELS = 1024 * 1024  # above this, predict by tiles to bound memory
FLOAT32_VALUES = 8000 * 8000  # larger probability maps are stored as float16 (half the memory)
ROWS_PER_CHUNK = 1024  # argmax by row bands: no int64 H×W temporary
MC_SAMPLES, MC_SEED = 8, 0  # Monte-Carlo dropout: passes per batch, and their fixed seed
DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                 nn.FeatureAlphaDropout)


def tta_transforms(square: bool) -> list[tuple[Callable, Callable]]:
    """(forward, inverse) pairs: identity, flips, and 90-degree rotations for square tiles."""
    ops = [(lambda t: t, lambda t: t),
           (lambda t: t.flip(-1), lambda t: t.flip(-1)),
           (lambda t: t.flip(-2), lambda t: t.flip(-2)),
           (lambda t: t.flip(-1, -2), lambda t: t.flip(-1, -2))]
    if square:
        ops += [(lambda t: t.rot90(1, (-2, -1)), lambda t: t.rot90(-1, (-2, -1))),
                (lambda t: t.rot90(-1, (-2, -1)), lambda t: t.rot90(1, (-2, -1)))]
    return ops


class Predictor:
    """Runs one model on numpy images; holds the device, tiling and TTA choices.

    `model` is a PyTorch model (from `load_model`/`build_model`), an `OnnxEngine` (onnxruntime
    or OpenVINO, float32 or int8: infer/engines.py builds them), or an onnxruntime
    InferenceSession of a `unetkit export` file. `engine="onnx"` exports a
    PyTorch model in memory and runs it on onnxruntime (infer/engines.py chooses). The engine
    only changes the function that maps a normalised batch to logits; preparing the input
    (infer/preprocess.py), tiling, TTA and thresholding are shared, and the tiles follow the
    model's declared geometry (models/geometry.py).
    `precision` "auto" resolves per `purpose` (see `unetkit.device.resolve_precision`): masks
    may run in bf16 where the CPU has it natively, evaluation always in float32; an
    OnnxEngine runs at the precision it was built at. The resolved value is `self.precision`.
    """

    def __init__(self, model: Any, device: str | torch.device | None = None,
                 tile: int | None = None, overlap: float = 0.25, tta: bool = False,
                 batch_size: int = 4, precision: str = "auto", engine: str = "torch",
                 fold_bn: bool = True, purpose: str = "predict") -> None:
        engines.check_engine(engine)
        check_precision(precision)
        runner = engines.onnx_runner(model, engine)
        self.engine = "torch" if runner is None else runner.engine_name  # onnx, openvino
        if runner is not None:
            model = runner
            if precision not in ("auto", "32"):
                raise UsageError(f"--precision {precision} runs on the torch engine only; "
                                 f"--engine onnx runs float32 (use --precision 32 or auto).")
            self.device = torch.device("cpu")  # onnxruntime takes and returns host arrays
            self.model = model
            self.precision = runner.precision  # what the engine was built at: 32, int8, ...
        else:
            self.device = pick_device(device)
            self.precision = resolve_precision(precision, self.device, purpose)
            self.model = _fold_for_inference(model.to(self.device).eval(), self.device) \
                if fold_bn else model.to(self.device).eval()
        self.meta = dict(getattr(model, "unetkit_meta", {}) or {})
        self.binary = bool(self.meta.get("binary", True))
        self.class_names: list[str] = self.meta.get("class_names", ["background", "foreground"])
        self.channels = preprocess.input_channels(self.meta)
        self.mean, self.std = preprocess.normalization(self.meta)
        self.tile = tile
        self.overlap, self.tta, self.batch_size = overlap, tta, batch_size
        self.geometry = geometry_of(model)  # tiles start on its pooling grid

    @property
    def out_channels(self) -> int:
        return 1 if self.binary else len(self.class_names)

    def _normalize(self, batch: torch.Tensor) -> torch.Tensor:
        return preprocess.normalize(batch, self.mean, self.std)

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """The engine's one job: a normalised N×C×H×W batch -> N×K×h×w float32 logits,
        divided by the artifact's temperature (calibrated; ONNX exports have it built in)."""
        if self.engine != "torch":
            return self.model(batch)
        batch = batch.to(self.device).contiguous(memory_format=torch.channels_last)
        with autocast_context(self.device, self.precision):
            out = self.model(batch).float()
        t = temperature_of(self.meta)
        return out if t == 1.0 else out / t

    @torch.inference_mode()
    def batch_probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """N×C×H×W (uint8 or normalised) -> N×K×H×W probabilities, TTA-averaged: the step
        whole-image and tiled prediction share (and the bench times)."""
        return self._views_mean(self._normalize(batch).to(self.device))[0].cpu()

    def _views_mean(self, batch: torch.Tensor, entropy: bool = False
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The TTA-averaged probabilities of a normalised batch and, with `entropy`, the mean
        entropy (nats, N×H×W) of the members: each view's, or each ensemble member's in each
        view (caught by hooks on the one forward pass, so the mean is the ensemble's own;
        their logits divided by the same temperature as the ensemble's)."""
        outs, total, count = [], torch.zeros(()), 0
        ops = tta_transforms(batch.shape[-1] == batch.shape[-2]) if self.tta else \
            tta_transforms(False)[:1]
        caught: list[torch.Tensor] = []
        hooks = [m.register_forward_hook(lambda _m, _x, out: caught.append(out))
                 for m in (self._ensemble_members() if entropy else [])]
        t = temperature_of(self.meta)
        try:
            for fwd, inv in ops:
                caught.clear()
                outs.append(self._to_probabilities(inv(self.logits(fwd(batch)).float())))
                if entropy:
                    members = [self._to_probabilities(inv(o.float()) / t) for o in caught]
                    for p in members or outs[-1:]:
                        total, count = total + predictive_entropy(p, self.binary), count + 1
        finally:
            for hook in hooks:
                hook.remove()
        return torch.stack(outs).mean(0), (total / count if entropy else None)

    def _to_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits) if self.binary else torch.softmax(logits, 1)

    def _ensemble_members(self) -> list[nn.Module]:
        model = self.model
        return list(model.members) if isinstance(model, Ensemble) and len(model.members) > 1 \
            else []

    def _dropout_layers(self) -> list[nn.Module]:
        if self.engine != "torch":
            return []
        return [m for m in self.model.modules() if isinstance(m, DROPOUT_TYPES) and m.p > 0]

    @property
    def uncertainty_source(self) -> str:
        """Where the members come from, best first: the folds of an ensemble (in every view
        with --tta), the TTA views, Monte-Carlo dropout, else the one prediction."""
        if self._ensemble_members():
            return "ensemble+tta" if self.tta else "ensemble"
        if self.tta:
            return "tta"
        return "mc-dropout" if self._dropout_layers() else "single"

    def uncertainty_members(self, square: bool) -> int:
        """How many predictions the maps average (TTA adds rotations on square inputs)."""
        views = len(tta_transforms(square)) if self.tta else 1
        if self._ensemble_members():
            return views * len(self._ensemble_members())
        return MC_SAMPLES if self.uncertainty_source == "mc-dropout" else views

    def _dropout_samples(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean probability and mean entropy (nats) of MC_SAMPLES passes with only the dropout
        layers in train mode; seeded, so the maps repeat, and the global RNG is untouched."""
        layers = self._dropout_layers()
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        mean, total = torch.zeros(()), torch.zeros(())
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(MC_SEED)
            try:
                for layer in layers:
                    layer.train()
                for _ in range(MC_SAMPLES):
                    p = self._to_probabilities(self.logits(batch).float())
                    mean, total = mean + p, total + predictive_entropy(p, self.binary)
            finally:
                for layer in layers:
                    layer.eval()
        return mean / MC_SAMPLES, total / MC_SAMPLES

    @torch.inference_mode()
    def batch_uncertainty(self, batch: torch.Tensor) -> torch.Tensor:
        """N×C×H×W -> N×(K+1)×H×W: what batch_probabilities gives (the mask's), then the
        members' mean entropy / log K. With MC dropout the samples' mean probability (K more
        channels) comes between them: the mask stays the deterministic prediction's."""
        batch = self._normalize(batch).to(self.device)
        probs, expected = self._views_mean(batch, entropy=True)
        parts = [probs]
        if self.uncertainty_source == "mc-dropout":
            mean, expected = self._dropout_samples(batch)
            parts.append(mean)
        scale = max_entropy(2 if self.binary else self.out_channels)
        return torch.cat([*parts, (expected / scale)[:, None]], 1).cpu()

    def _tiling(self, wh: int, ww: int) -> tuple[int | None, int]:
        """(tile, output margin) for a working size; tile None: whole-image prediction."""
        if self.geometry.valid_padding:  # the output is smaller: always overlap-tile
            tile = self.tile or int((self.meta.get("input_size") or [572, 572])[0])
            return tile, self.geometry.output_margin(tile)
        if self.tile is None and wh * ww > WHOLE_IMAGE_PIXELS:
            return 512, 0
        return self.tile, 0

    def _storage(self, wh: int, ww: int) -> torch.dtype:
        """How a tiled map is stored (the same with or without extra channels)."""
        return torch.float32 if self.out_channels * wh * ww <= FLOAT32_VALUES else torch.float16

    def _full_size(self, image: np.ndarray, name: str, fn: Callable, channels: int,
                   sink: Callable[[int, torch.Tensor], None] | None = None
                   ) -> torch.Tensor | None:
        """`fn` (a batch_* method) over the image, whole or by tiles, at the input's size.
        With `sink` (tiled and unscaled images only) the rows go there, band by band."""
        h, w = image.shape[:2]
        x = preprocess.prepare_image(image, self.channels, name)
        wh, ww = preprocess.working_size(self.meta, h, w)
        if (wh, ww) != (h, w):
            x = preprocess.resize(self._normalize(x[None]), (wh, ww))[0]
        tile, margin = self._tiling(wh, ww)
        if tile is None:
            probs = fn(x[None])[0]
        else:
            probs = sliding_window(fn, x, (tile, tile), overlap=self.overlap,
                                   batch_size=self.batch_size, out_channels=channels,
                                   margin=margin, align=self.geometry.pooling_grid,
                                   out_dtype=self._storage(wh, ww), sink=sink)
            if probs is None:
                return None
            probs = probs.clamp_(0, 1)  # rounding
        if (wh, ww) != (h, w):
            probs = F.interpolate(probs[None], size=(h, w), mode="bilinear",
                                  align_corners=False)[0]
        return probs

    def probabilities(self, image: np.ndarray, name: str = "image") -> np.ndarray:
        """K x H x W at the input's size (K = 1 foreground channel for binary models).

        float32, or float16 beyond FLOAT32_VALUES values (an 8000x8000 multi-class map would
        otherwise take 1 GB per class pair): masks and saved probabilities are the same.
        """
        return self._full_size(image, name, self.batch_probabilities, self.out_channels).numpy()

    def probabilities_with_uncertainty(self, image: np.ndarray, name: str = "image"
                                       ) -> tuple[np.ndarray, UncertaintyMaps]:
        """What `probabilities` gives (so the same mask) and the uncertainty maps.

        Memory stays as in `probabilities`: no member's map is kept; tiles accumulate the
        mean probability and the mean member entropy (one more channel), and the mutual
        information H(mean) - mean(H(member)) is computed at the end.
        """
        k, source = self.out_channels, self.uncertainty_source
        mc = source == "mc-dropout"
        stats = self._full_size(image, name, self.batch_uncertainty, (2 if mc else 1) * k + 1)
        wh, ww = preprocess.working_size(self.meta, *image.shape[:2])
        square = self._tiling(wh, ww)[0] is not None or wh == ww
        maps = uncertainty_maps(stats[k:2 * k] if mc else stats[:k], stats[-1], self.binary,
                                self.uncertainty_members(square), source)
        return stats[:k].numpy(), maps

    def mask_from_probabilities(self, probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        if self.binary:
            return (probs[0] > threshold).astype(np.uint8)
        mask = np.empty(probs.shape[1:], dtype=np.uint8)
        for r in range(0, mask.shape[0], ROWS_PER_CHUNK):
            mask[r:r + ROWS_PER_CHUNK] = probs[:, r:r + ROWS_PER_CHUNK].argmax(0)
        return mask

    def predict(self, image: np.ndarray, threshold: float = 0.5, name: str = "image") -> np.ndarray:
        """The H×W uint8 mask: the one `mask_from_probabilities(probabilities(...))` gives,
        but a tiled image at its own scale is thresholded band by band as the tiles finish,
        so no K×H×W probability map is held (1 GB per class at 16k², in float32)."""
        h, w = image.shape[:2]
        if preprocess.working_size(self.meta, h, w) != (h, w) or self._tiling(h, w)[0] is None:
            return self.mask_from_probabilities(self.probabilities(image, name), threshold)
        mask = np.empty((h, w), dtype=np.uint8)
        storage = self._storage(h, w)

        def rows(first: int, band: torch.Tensor) -> None:  # as stored, clamped: same mask
            probs = band.to(storage).clamp_(0, 1).numpy()
            mask[first:first + probs.shape[1]] = self.mask_from_probabilities(probs, threshold)

        self._full_size(image, name, self.batch_probabilities, self.out_channels, sink=rows)
        return mask


def _fold_for_inference(model: Any, device: torch.device) -> Any:
    """BatchNorm folded into convolutions (a copy; `model` is untouched), channels-last."""
    from torch import nn

    from unetkit.models.fold import fold_batchnorm

    geometry = geometry_of(model)
    if geometry.valid_padding or \
            not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        return model
    channels = int((getattr(model, "unetkit_meta", None) or {}).get(
        "in_channels", model.unetkit_arch["options"].get("in_channels", 3))
        if hasattr(model, "unetkit_arch") else 3)
    side = max(32, geometry.pad_multiple)
    folded, _, _ = fold_batchnorm(model, torch.zeros(1, channels, side, side, device=device))
    return folded.to(memory_format=torch.channels_last)
