"""The peers of `unetkit bench race`, trained the way their users train them.

segmentation_models_pytorch's `Unet("resnet34", encoder_weights=None)` and the classic
milesial-style U-Net (bench/reference.py `ReferenceUNet`, 64 base filters), each in the loop
their READMEs show: Adam at 1e-3 with a cosine schedule over the budget (no warm-up), random
256-px crops with random horizontal and vertical flips, batch 8, BCE + soft Dice (binary)
or cross-entropy (multi-class), fp32, NCHW, eager. The loop runs on unetkit's training clock
(bench/race_score.py) and stops when the budget is spent.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import tv_tensors
from torchvision.transforms import v2

from unetkit.bench.race_score import Scorer, clock_time, started_clock
from unetkit.bench.reference import ReferenceUNet, reference_loss, smp_unet
from unetkit.data.dataset import SegmentationDataset
from unetkit.data.prepare import PreparedData
from unetkit.errors import UsageError
from unetkit.scoring import IGNORE
from unetkit.train.defaults import loader_workers, round_down
from unetkit.train.loaders import make_loader
from unetkit.train.schedules import lr_factor

PEER_LR, PEER_BATCH, PEER_CROP = 1e-3, 8, 256
PEERS = {
    "smp-resnet34": "segmentation_models_pytorch Unet('resnet34', encoder_weights=None)",
    "classic": "milesial/Pytorch-UNet layout (bench/reference.py ReferenceUNet, 64 filters)",
}


def build_peer(name: str, channels: int, classes: int, width: int | None = None) -> nn.Module:
    """A peer's model; `width` (tests) shrinks the classic U-Net's base filters and smp's
    decoder (width 16 is smp's default decoder) — smp's encoder stays resnet34."""
    if name == "classic":
        return ReferenceUNet(channels, classes, width or 64)
    if name == "smp-resnet34":
        require_smp()
        decoder = {"decoder_channels": [width * 2**k for k in (4, 3, 2, 1, 0)]} if width else {}
        return smp_unet("resnet34", classes, channels, **decoder)
    raise UsageError(f"--entrants {name!r} is not a peer; choose from {', '.join(PEERS)}.")


def require_smp() -> None:
    """Fail before the race starts, not after unetkit has spent its budget."""
    try:
        import segmentation_models_pytorch  # noqa: F401
    except ImportError:
        raise UsageError("--entrants smp-resnet34 needs segmentation_models_pytorch "
                         "(pip install 'unetkit[bench]'), or leave it out.") from None


def peer_crop(data: PreparedData, indices: list[int]) -> list[int]:
    """256-px crops, or the smallest image's side (a multiple of 32) when images are smaller."""
    h = min(data.cache.shapes[i][0] for i in indices)
    w = min(data.cache.shapes[i][1] for i in indices)
    return [min(PEER_CROP, round_down(h)), min(PEER_CROP, round_down(w))]


def peer_transforms(crop: list[int]) -> v2.Compose:
    """Random crop and random flips of image and mask together, nothing else."""
    return v2.Compose([
        v2.RandomCrop(crop, pad_if_needed=True, fill={tv_tensors.Image: 0,
                                                       tv_tensors.Mask: IGNORE}),
        v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(),
        v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64},
                   scale=True)])


def peer_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice for one logit (bench/reference.py), cross-entropy otherwise; pixels
    with the ignore value count in neither."""
    if logits.shape[1] > 1:
        return F.cross_entropy(logits, target, ignore_index=IGNORE)
    valid = target != IGNORE
    if bool(valid.all()):
        return reference_loss(logits, target)
    return reference_loss(logits[:, 0][valid].view(1, 1, 1, -1),
                          target[valid].view(1, 1, 1, -1))


def train_peer(model: nn.Module, data: PreparedData, train_idx: list[int], scorer: Scorer,
               budget_s: float, channels: int, seed: int = 0) -> dict[str, Any]:
    """Train `model` for `budget_s` seconds of training time, scored by `scorer` as it goes
    (the clock stopped while it scores); return its steps and training seconds."""
    device = scorer.device
    model = model.to(device)
    crop = peer_crop(data, train_idx)
    ds = SegmentationDataset(data.cache, train_idx, peer_transforms(crop), channels,
                             scorer.mean, scorer.std)
    loader = make_loader(ds, PEER_BATCH, True, loader_workers(device.type), seed, device,
                         max(len(ds), PEER_BATCH))
    optimizer = torch.optim.Adam(model.parameters(), lr=PEER_LR)
    clock = started_clock()
    scorer.score(0.0, model, clock, 0)
    steps, epoch, t = 0, 0, 0.0
    while t < budget_s:
        loader.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
        epoch += 1
        for x, y in loader:
            for group in optimizer.param_groups:
                group["lr"] = PEER_LR * lr_factor("cosine", t / budget_s, warmup=0.0)
            model.train()
            optimizer.zero_grad(set_to_none=True)
            peer_loss(model(x.to(device)), y.to(device)).backward()
            optimizer.step()
            steps += 1
            t = clock_time(clock, device)
            if t >= budget_s:
                break
            if scorer.due(t):
                scorer.score(t, model, clock, steps)
    scorer.score(t, model, clock, steps)
    return {"steps": steps, "train_s": round(t, 2), "epochs": epoch, "crop": crop,
            "batch_size": PEER_BATCH}
