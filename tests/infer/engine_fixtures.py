"""A tiny trained-ish run for the engine tests: synthetic data, splits.json, config.yaml and
a model trained a few dozen steps, so its logits are confident away from object edges (an
untrained model puts many pixels near the threshold, where any engine's rounding flips them).

Import as `from engine_fixtures import make_run` from tests/infer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import yaml
from infer_fixtures import MEAN, STD, fit_meta

SIZE = (48, 64)
COUNT, TRAIN = 8, 6
STEPS = 40


def _batch(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image

    names = sorted(p.name for p in (root / "images").iterdir())
    x = np.stack([np.asarray(Image.open(root / "images" / n)) for n in names])
    y = np.stack([np.asarray(Image.open(root / "masks" / n)) > 0 for n in names])
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    xt = (torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255 - mean) / std
    return xt, torch.from_numpy(y).float()[:, None]


def train_tiny(x: torch.Tensor, y: torch.Tensor, steps: int = STEPS) -> torch.nn.Module:
    """A 4-filter, depth-2 U-Net (BatchNorm) fitted to the masks with Adam, in eval mode."""
    import unetkit

    torch.manual_seed(0)
    model = unetkit.build_model("unet", in_channels=3, classes=1, filters=4, depth=2,
                                norm="batch")
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(steps):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.unetkit_meta = fit_meta()
    return model.eval()


def make_run(root: Path, temperature: float | None = None) -> Path:
    """root/run (config.yaml, splits.json, model/) trained on root/data (8 synthetic images,
    6 train, 2 val); the artifact gets `temperature` when given."""
    from unetkit.data.synthetic import write_folder
    from unetkit.models.artifact import save_model

    data = write_folder(root / "data", count=COUNT, size=SIZE, seed=3)
    x, y = _batch(data)
    model = train_tiny(x[:TRAIN], y[:TRAIN])
    run = root / "run"
    meta = {"temperature": temperature} if temperature is not None else None
    save_model(model, run / "model", meta)
    names = [f"{i:04d}" for i in range(COUNT)]
    (run / "splits.json").write_text(json.dumps({"train": names[:TRAIN], "val": names[TRAIN:],
                                                 "test": []}))
    (run / "config.yaml").write_text(yaml.safe_dump({"data": str(data), "format": "folder"}))
    return run


def copy_run(run: Path, dest: Path) -> Path:
    """A private copy of a made run (its data stays shared), for tests that write into it."""
    import shutil

    return Path(shutil.copytree(run, dest))


def val_images(run: Path) -> list[np.ndarray]:
    """The run's validation images, as the engine check reads them."""
    from unetkit.infer.engine_check import run_images

    return run_images(run, run / "model").check_images()


def flip_int8(monkeypatch, share: float = 0.1) -> None:
    """A constructed disagreeing engine: every int8 engine (onnxruntime's and OpenVINO's)
    returns its logits with the sign flipped in the leftmost `share` of the columns."""
    from unetkit.infer.onnx import OnnxEngine

    original = OnnxEngine.logits

    def flipped(self, batch: torch.Tensor) -> torch.Tensor:
        out = original(self, batch)
        if self.precision == "int8":
            k = max(1, int(out.shape[-1] * share))
            out = out.clone()
            out[..., :k] = -out[..., :k]
        return out

    monkeypatch.setattr(OnnxEngine, "__call__", flipped)


def make_run_one_thread(root: Path) -> Path:
    """`make_run` on one thread (the engines' timings and roundings then match), restoring
    torch's thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return make_run(root)
    finally:
        torch.set_num_threads(before)
