"""The built-in models, each with its one-line description and preset options.

registry.py calls `register_builtin` on first use; this module never imports the registry."""

from __future__ import annotations

from collections.abc import Callable

from unetkit.models.mobilenet_unet import MobileNetV2UNet
from unetkit.models.timm_unet import TimmUNet
from unetkit.models.unet import UNet
from unetkit.models.unet3d import UNet3D
from unetkit.models.unet_valid import UNetValid


def register_builtin(register: Callable[..., None]) -> None:
    """Register every built-in model but the ensemble (registry.py adds it: it builds by name)."""
    register("unet", UNet, "Classic U-Net (Keras/R `unet` package): 3x3 same convs, "
             "transposed-conv upsampling, 64 filters, 4 down blocks.")
    register("unet-bn", UNet, "Classic U-Net with Conv-BatchNorm-ReLU blocks (Carvana practice).",
             norm="batch")
    register("unet1024", UNet, "U-Net for 1024x1024 inputs (Carvana unet_1024 layout): 7 down "
             "blocks from 8 filters to a 1024-channel 8x8 bottleneck, BatchNorm.",
             filters=8, depth=7, norm="batch")
    register("unet-valid", UNetValid, "Original 2015 U-Net: unpadded 3x3 convs, "
             "crop-and-concatenate skips, 572x572 in -> 388x388 out; predicts by overlap-tiles.")
    register("mobilenet_v2-unet", MobileNetV2UNet, "TF-tutorial U-Net: torchvision MobileNetV2 "
             "encoder (ImageNet, frozen by default) + transposed-conv decoder.",
             reference={"in_channels": 3, "classes": 3, "encoder_weights": None})
    register("timm-unet", TimmUNet, "smp-style U-Net decoder on any timm backbone (--encoder, "
             "default resnet34), ImageNet weights from the local cache.",
             reference={"in_channels": 3, "classes": 1, "encoder_weights": None})
    register("unet3d", UNet3D, "3D U-Net for volumes (B x C x D x H x W): 3x3x3 convs, 2x2x2 "
             "pooling, 32 filters, 3 down blocks, BatchNorm.",
             reference={"in_channels": 1, "classes": 1})
