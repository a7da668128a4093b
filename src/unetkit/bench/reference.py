"""The baselines unetkit is measured against, written the straightforward way.

`ReferenceUNet` is the classic U-Net as the popular PyTorch repositories write it
(milesial/Pytorch-UNet with `bilinear=False`): Conv-BN-ReLU twice per level, max-pool
down, 2x2 stride-2 transposed convolution up, pad-and-concatenate skips, a 1x1 head. With
3 input channels, 1 class and 64 base filters it has 31,037,633 parameters, exactly as
many as `unetkit.build_model("unet", norm="batch")` (unetkit's adds a dropout without
parameters before the bottleneck).

`ReferenceRunner` trains and predicts the way users of those repositories (and of
segmentation_models_pytorch) run it: fp32, NCHW, eager, `model(x)`, BCE + soft Dice loss,
`loss.backward()`, `optimizer.step()`; inference under `torch.no_grad()` with a sigmoid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DoubleConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.double_conv = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


class Down(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)


class Up(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
        self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        x1 = self.up(x1)
        diff_y = x2.size()[2] - x1.size()[2]
        diff_x = x2.size()[3] - x1.size()[3]
        x1 = F.pad(x1, [diff_x // 2, diff_x - diff_x // 2, diff_y // 2, diff_y - diff_y // 2])
        return self.conv(torch.cat([x2, x1], dim=1))


class ReferenceUNet(nn.Module):
    """milesial/Pytorch-UNet's UNet(n_channels, n_classes, bilinear=False), base width 64."""

    def __init__(self, in_channels: int = 3, classes: int = 1, filters: int = 64) -> None:
        super().__init__()
        f = filters
        self.inc = DoubleConv(in_channels, f)
        self.down1 = Down(f, 2 * f)
        self.down2 = Down(2 * f, 4 * f)
        self.down3 = Down(4 * f, 8 * f)
        self.down4 = Down(8 * f, 16 * f)
        self.up1 = Up(16 * f, 8 * f)
        self.up2 = Up(8 * f, 4 * f)
        self.up3 = Up(4 * f, 2 * f)
        self.up4 = Up(2 * f, f)
        self.outc = nn.Conv2d(f, classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        x = self.up1(x5, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        x = self.up4(x, x1)
        return self.outc(x)


def reference_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits plus soft Dice on the sigmoid, over the whole batch (binary)."""
    target = target.float().unsqueeze(1) if target.ndim == 3 else target.float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    probs = torch.sigmoid(logits)
    inter = (probs * target).sum()
    dice = (2 * inter + 1.0) / (probs.sum() + target.sum() + 1.0)
    return bce + (1 - dice)


class ReferenceRunner:
    """A model trained and run the plain way: fp32, NCHW, eager, AdamW."""

    def __init__(self, model: nn.Module, device: torch.device, lr: float = 1e-3,
                 weight_decay: float = 1e-4) -> None:
        self.model = model.to(device)
        self.device = device
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr,
                                           weight_decay=weight_decay)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = reference_loss(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        with torch.no_grad():
            return torch.sigmoid(self.model(x.to(self.device))).cpu()


def smp_unet(encoder: str = "mobilenet_v2", classes: int = 1, in_channels: int = 3,
             **options: object) -> nn.Module:
    """segmentation_models_pytorch's Unet with random encoder weights, as users build it
    (`options`: smp's own, e.g. decoder_channels)."""
    import segmentation_models_pytorch as smp

    return smp.Unet(encoder, encoder_weights=None, in_channels=in_channels, classes=classes,
                    **options)
