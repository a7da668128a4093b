"""From an image on disk to class probabilities and a mask at the image's own size.

The model is run at the scale it was trained at (the artifact records it), whole-image when
the image is small enough and by overlapping tiles otherwise, optionally averaged over flips
(TTA); probabilities are resized back to the original size before thresholding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from unetkit.device import autocast_context, check_precision, pick_device, resolve_precision
from unetkit.errors import UsageError
from unetkit.infer import engines, preprocess
from unetkit.infer.tiling import sliding_window
from unetkit.models.geometry import geometry_of

WHOLE_IMAGE_PIXELS = 1024 * 1024  # above this, predict by tiles to bound memory
FLOAT32_VALUES = 8000 * 8000  # larger probability maps are stored as float16 (half the memory)
ROWS_PER_CHUNK = 1024  # argmax by row bands: no int64 H×W temporary


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

    `model` is a PyTorch model (from `load_model`/`build_model`), an `OnnxEngine`, or an
    onnxruntime InferenceSession of a `unetkit export` file. `engine="onnx"` exports a
    PyTorch model in memory and runs it on onnxruntime (infer/engines.py chooses). The engine
    only changes the function that maps a normalised batch to logits; preparing the input
    (infer/preprocess.py), tiling, TTA and thresholding are shared, and the tiles follow the
    model's declared geometry (models/geometry.py).
    `precision` "auto" resolves per `purpose` (see `unetkit.device.resolve_precision`): masks
    may run in bf16 where the CPU has it natively, evaluation always in float32; onnxruntime
    runs float32 only. The resolved value is `self.precision`.
    """

    def __init__(self, model: Any, device: str | torch.device | None = None,
                 tile: int | None = None, overlap: float = 0.25, tta: bool = False,
                 batch_size: int = 4, precision: str = "auto", engine: str = "torch",
                 fold_bn: bool = True, purpose: str = "predict") -> None:
        engines.check_engine(engine)
        check_precision(precision)
        runner = engines.onnx_runner(model, engine)
        self.engine = "torch" if runner is None else "onnx"
        if runner is not None:
            model = runner
            if precision not in ("auto", "32"):
                raise UsageError(f"--precision {precision} runs on the torch engine only; "
                                 f"--engine onnx runs float32 (use --precision 32 or auto).")
            self.device = torch.device("cpu")  # onnxruntime takes and returns host arrays
            self.model = model
            self.precision = "32"
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
        """The engine's one job: a normalised N×C×H×W batch -> N×K×h×w float32 logits."""
        if self.engine == "onnx":
            return self.model(batch)
        batch = batch.to(self.device).contiguous(memory_format=torch.channels_last)
        with autocast_context(self.device, self.precision):
            return self.model(batch).float()

    @torch.inference_mode()
    def batch_probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """N×C×H×W (uint8 or normalised) -> N×K×H×W probabilities, TTA-averaged: the step
        whole-image and tiled prediction share (and the bench times)."""
        batch = self._normalize(batch).to(self.device)
        outs = []
        ops = tta_transforms(batch.shape[-1] == batch.shape[-2]) if self.tta else \
            tta_transforms(False)[:1]
        for fwd, inv in ops:
            logits = inv(self.logits(fwd(batch)).float())
            outs.append(torch.sigmoid(logits) if self.binary else torch.softmax(logits, 1))
        return torch.stack(outs).mean(0).cpu()

    def probabilities(self, image: np.ndarray, name: str = "image") -> np.ndarray:
        """K x H x W at the input's size (K = 1 foreground channel for binary models).

        float32, or float16 beyond FLOAT32_VALUES values (an 8000x8000 multi-class map would
        otherwise take 1 GB per class pair): masks and saved probabilities are the same.
        """
        h, w = image.shape[:2]
        x = preprocess.prepare_image(image, self.channels, name)
        wh, ww = preprocess.working_size(self.meta, h, w)
        if (wh, ww) != (h, w):
            x = preprocess.resize(self._normalize(x[None]), (wh, ww))[0]
        margin = 0
        tile = self.tile
        if self.geometry.valid_padding:  # the output is smaller: always overlap-tile
            size = self.meta.get("input_size") or [572, 572]
            tile = tile or int(size[0])
            margin = self.geometry.output_margin(tile)
        if tile is None and wh * ww <= WHOLE_IMAGE_PIXELS:
            probs = self.batch_probabilities(x[None])[0]
        else:
            tile = tile or 512
            values = self.out_channels * wh * ww
            probs = sliding_window(self.batch_probabilities, x, (tile, tile), overlap=self.overlap,
                                   batch_size=self.batch_size, out_channels=self.out_channels,
                                   margin=margin, align=self.geometry.pooling_grid,
                                   out_dtype=torch.float32 if values <= FLOAT32_VALUES
                                   else torch.float16).clamp_(0, 1)  # rounding
        if (wh, ww) != (h, w):
            probs = F.interpolate(probs[None], size=(h, w), mode="bilinear",
                                  align_corners=False)[0]
        return probs.numpy()

    def mask_from_probabilities(self, probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        if self.binary:
            return (probs[0] > threshold).astype(np.uint8)
        mask = np.empty(probs.shape[1:], dtype=np.uint8)
        for r in range(0, mask.shape[0], ROWS_PER_CHUNK):
            mask[r:r + ROWS_PER_CHUNK] = probs[:, r:r + ROWS_PER_CHUNK].argmax(0)
        return mask

    def predict(self, image: np.ndarray, threshold: float = 0.5, name: str = "image") -> np.ndarray:
        return self.mask_from_probabilities(self.probabilities(image, name), threshold)


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
