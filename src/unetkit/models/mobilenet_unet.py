"""U-Net with a torchvision MobileNetV2 encoder (the TensorFlow pix2pix/segmentation tutorial).

The encoder is `mobilenet_v2().features[0:18]` (the final 1x1 conv to 1280 channels is not
used); for a 224x224 RGB input its stages give 16@112, 24@56, 32@28, 96@14 and 320@7, and the
input itself is the 3@224 skip. Each decoder block is a 2x2 stride-2 transposed conv + ReLU,
concatenation with the skip, and a 3x3 conv (padding 1) + ReLU; every conv has a bias. With
3 classes that is 3,377,475 parameters, 1,811,712 of them in the encoder.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

from unetkit.errors import UnetkitError
from unetkit.models.encoders import (
    IMAGENET_NORMALIZATION,
    PretrainedEncoderUNet,
    adapt_input_conv,
    channel_stats,
    read_state_dict,
    short_reason,
    weights_choice,
)
from unetkit.models.geometry import Geometry, same_padding
from unetkit.models.layers import pad_to_multiple
from unetkit.models.weights_cache import cached_or_download, hub_checkpoint

ENCODER_STRIDE = 32  # the 320-channel stage; inputs are padded to a multiple of it
ENCODER_LAYERS = 18  # features[0:18]; features[18] is the 1x1 conv to 1280 channels
STAGE_ENDS = (1, 3, 6, 13, 17)  # last layer of each stage: 16@/2, 24@/4, 32@/8, 96@/16, 320@/32
STAGE_CHANNELS = (16, 24, 32, 96, 320)
DECODER_CHANNELS = (256, 128, 64, 32, 16)
IMAGENET_WEIGHTS = MobileNet_V2_Weights.IMAGENET1K_V1


def imagenet_weights_url() -> str:
    """torchvision's own download address for the ImageNet mobilenet_v2 weights."""
    return IMAGENET_WEIGHTS.url


def imagenet_weights_path() -> Path:
    """Where torchvision caches the ImageNet weights (shared with it)."""
    return hub_checkpoint(imagenet_weights_url())


def load_encoder_weights(encoder: nn.Sequential, path: Path, in_channels: int) -> None:
    """Load a torchvision mobilenet_v2 state dict (its `features.0-17`) into the encoder."""
    state = read_state_dict(path)
    if any(k.startswith("features.") for k in state):
        state = {k.removeprefix("features."): v for k, v in state.items()
                 if k.startswith("features.")}
    head = [k for k in state if k.split(".", 1)[0].isdigit()
            and int(k.split(".", 1)[0]) >= ENCODER_LAYERS]
    for k in head:  # the unused 1x1 conv to 1280 channels
        del state[k]
    first = "0.0.weight"
    if first in state and state[first].ndim == 4:
        state[first] = adapt_input_conv(state[first], in_channels)
    try:
        encoder.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise UnetkitError(f"{path} does not hold torchvision mobilenet_v2 weights "
                           f"({short_reason(exc)}).") from exc


class DecoderBlock(nn.Module):
    def __init__(self, in_ch: int, skip_ch: int, out_ch: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
        self.conv = nn.Conv2d(out_ch + skip_ch, out_ch, 3, padding=1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.up(x))
        return F.relu(self.conv(torch.cat([x, skip], dim=1)))


class MobileNetV2UNet(PretrainedEncoderUNet):
    def __init__(self, in_channels: int = 3, classes: int = 1,
                 encoder_weights: str | None = "imagenet", freeze_encoder: bool = True) -> None:
        super().__init__()
        weights = weights_choice(encoder_weights)
        self.encoder = mobilenet_v2(weights=None).features[:ENCODER_LAYERS]
        if in_channels != 3:
            self.encoder[0][0] = nn.Conv2d(in_channels, 32, 3, stride=2, padding=1, bias=False)
        if weights == "imagenet":
            path = cached_or_download(imagenet_weights_url(),
                                      "ImageNet weights for the mobilenet_v2 encoder")
            load_encoder_weights(self.encoder, path, in_channels)
        elif weights is not None:
            load_encoder_weights(self.encoder, Path(weights), in_channels)
        skips = (in_channels, *STAGE_CHANNELS[:-1])[::-1]
        ins = (STAGE_CHANNELS[-1], *DECODER_CHANNELS[:-1])
        self.decoder = nn.ModuleList(DecoderBlock(i, s, o)
                                     for i, s, o in zip(ins, skips, DECODER_CHANNELS, strict=True))
        self.head = nn.Conv2d(DECODER_CHANNELS[-1], classes, 3, padding=1)
        self.input_normalization = channel_stats(IMAGENET_NORMALIZATION["mean"],
                                                 IMAGENET_NORMALIZATION["std"], in_channels)
        self.set_encoder_trainable(not freeze_encoder)

    @property
    def geometry(self) -> Geometry:
        """Pads to the encoder's total stride, so any size works."""
        return same_padding(ENCODER_STRIDE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, (h, w) = pad_to_multiple(x, ENCODER_STRIDE)
        skips = [x]
        for i, layer in enumerate(self.encoder):
            x = layer(x)
            if i in STAGE_ENDS:
                skips.append(x)
        x = skips.pop()
        for block, skip in zip(self.decoder, reversed(skips), strict=True):
            x = block(x, skip)
        return self.head(x)[..., :h, :w]
