"""U-Net on any timm backbone, with segmentation_models_pytorch's Unet decoder.

The decoder mirrors `smp.Unet` (0.6) module for module, so the two have the same parameters
and state-dict names (ours: `encoder.*`, smp's: `encoder.model.*`): five blocks of nearest x2
upsampling, concatenation with the encoder map at that stride (none at stride 1, and none at
stride 2 for backbones whose first map is at stride 4), then two Conv-BN-ReLU, with channels
(256, 128, 64, 32, 16) unless `decoder_channels` says otherwise, and a 3x3 segmentation
head.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import huggingface_hub
import huggingface_hub.constants  # a submodule: not an attribute until imported
import timm
import torch
import torch.nn.functional as F
from timm.data import resolve_model_data_config
from torch import nn

from unetkit.errors import UnetkitError, UsageError
from unetkit.models.encoders import (
    LOAD_ERRORS,
    PretrainedEncoderUNet,
    channel_stats,
    read_state_dict,
    short_reason,
    weights_choice,
)
from unetkit.models.geometry import Geometry, same_padding
from unetkit.models.layers import pad_to_multiple
from unetkit.models.weights_cache import cached_or_download, hub_checkpoint, offline

DECODER_CHANNELS = (256, 128, 64, 32, 16)
SKIP_REDUCTIONS = (16, 8, 4, 2, 1)  # target stride of each decoder block
HEAD_REDUCTION = 32
HF_FILES = ("model.safetensors", "pytorch_model.bin")


def feature_plan(encoder: str) -> tuple[list[int], list[int], list[int]]:
    """(out_indices, reductions, channels): the deepest feature map at each stride 2..32."""
    if not timm.is_model(encoder):
        raise UsageError(f"--encoder {encoder!r} is not a timm model; see "
                         "timm.list_models() for names such as resnet34 or mobilenetv2_100.")
    try:
        with torch.device("meta"):
            info = timm.create_model(encoder, pretrained=False).feature_info
    except Exception:  # some models cannot be built on the meta device
        info = timm.create_model(encoder, pretrained=False).feature_info
    best: dict[int, int] = {}
    for i, f in enumerate(info):
        if f["reduction"] in (2, 4, 8, 16, HEAD_REDUCTION):
            best[f["reduction"]] = i
    if HEAD_REDUCTION not in best:
        raise UsageError(f"--encoder {encoder!r} has no stride-32 feature map (its strides are "
                         f"{sorted({f['reduction'] for f in info})}); pick a CNN backbone such "
                         "as resnet34.")
    indices = sorted(best.values())
    return indices, [info[i]["reduction"] for i in indices], [info[i]["num_chs"] for i in indices]


def cached_imagenet_weights(encoder: str) -> str | None:
    """timm's default pretrained weights if the HF or torch hub cache already holds them
    (no network: the planner asks this to know what is on disk)."""
    cfg = timm.models.get_pretrained_cfg(encoder)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        repo, _, revision = cfg.hf_hub_id.partition("@")
        for name in ((cfg.hf_hub_filename,) if cfg.hf_hub_filename else HF_FILES):
            found = huggingface_hub.try_to_load_from_cache(
                repo, name, cache_dir=huggingface_hub.constants.HF_HUB_CACHE,
                revision=revision or None)
            if isinstance(found, str):
                return found
    if cfg.url and hub_checkpoint(cfg.url).is_file():
        return str(hub_checkpoint(cfg.url))
    return None


def imagenet_weights_file(encoder: str) -> str:
    """timm's default pretrained weights: from the HF or torch hub cache, else downloaded
    into it (Hugging Face first, as timm does), else one sentence on what to put where."""
    cfg = timm.models.get_pretrained_cfg(encoder)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise UnetkitError(f"timm has no pretrained weights for encoder {encoder!r}; pass "
                           "--encoder-weights none or a weights file.")
    found = cached_imagenet_weights(encoder)
    if found:
        return found
    what = f"ImageNet weights for timm encoder {encoder!r}"
    reason = "downloads are off (HF_HUB_OFFLINE/UNETKIT_OFFLINE)"
    if cfg.hf_hub_id and not offline():
        repo, _, revision = cfg.hf_hub_id.partition("@")
        try:
            return huggingface_hub.hf_hub_download(
                repo, cfg.hf_hub_filename or HF_FILES[0], revision=revision or None)
        except Exception as exc:  # noqa: BLE001 — any failure ends in the sentence below
            reason = f"the download failed: {str(exc).splitlines()[0][:120]}"
    if cfg.url:
        return str(cached_or_download(cfg.url, what))
    raise UnetkitError(f"{what} are not on this machine and {reason}: put {HF_FILES[0]} from "
                       f"https://huggingface.co/{cfg.hf_hub_id} in the Hugging Face cache "
                       f"({huggingface_hub.constants.HF_HUB_CACHE}, e.g. `hf download "
                       f"{cfg.hf_hub_id}` on a connected machine), or pass --encoder-weights "
                       "none to start from random weights.")


def _is_classifier(encoder: str, key: str) -> bool:
    """A key of the classification head, which a features_only encoder does not use (timm
    drops it before loading and may then report it missing)."""
    cfg = timm.models.get_pretrained_cfg(encoder)
    heads = cfg.classifier if cfg is not None and cfg.classifier else ()
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    return any(key == h or key.startswith(f"{h}.") for h in heads)


@contextmanager
def missing_keys_report() -> Iterator[list[str]]:
    """Collect the keys timm reports missing while loading pretrained weights.

    For features_only models timm loads non-strictly (the classifier is dropped), so a file
    for another architecture would otherwise load nothing and say so only in a log line.
    """
    missing: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if message.startswith("Missing keys ("):
                missing.extend(message[len("Missing keys ("):].split(")", 1)[0].split(", "))

    logger = logging.getLogger("timm.models._builder")
    handler, level, propagate = Collect(), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # its info lines and the expected "Unexpected keys" warning
    try:
        yield missing
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


class Conv2dReLU(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class DecoderBlock(nn.Module):
    def __init__(self, in_ch: int, skip_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = Conv2dReLU(in_ch + skip_ch, out_ch)
        self.conv2 = Conv2dReLU(out_ch, out_ch)

    def forward(self, x: torch.Tensor, size: tuple[int, int],
                skip: torch.Tensor | None = None) -> torch.Tensor:
        x = F.interpolate(x, size=size, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class UnetDecoder(nn.Module):
    def __init__(self, head_ch: int, skip_channels: list[int],
                 channels: tuple[int, ...] = DECODER_CHANNELS) -> None:
        super().__init__()
        ins = (head_ch, *channels[:-1])
        self.blocks = nn.ModuleList(DecoderBlock(i, s, o) for i, s, o in
                                    zip(ins, skip_channels, channels, strict=True))


def decoder_channels_option(value: Sequence[int] | None) -> tuple[int, ...]:
    """Five positive widths, deepest block first (smp's `decoder_channels`), or smp's own."""
    if value is None:
        return DECODER_CHANNELS
    if isinstance(value, str):  # --option decoder_channels=128,64,32,16,16
        value = value.split(",")
    try:
        channels = tuple(int(c) for c in value)
    except (TypeError, ValueError):
        channels = ()
    if len(channels) != len(DECODER_CHANNELS) or min(channels) < 1:
        raise UsageError(f"decoder_channels must be {len(DECODER_CHANNELS)} positive integers, "
                         f"deepest block first, e.g. {list(DECODER_CHANNELS)}; got {value!r}.")
    return channels


class TimmUNet(PretrainedEncoderUNet):
    def __init__(self, in_channels: int = 3, classes: int = 1, encoder: str = "resnet34",
                 encoder_weights: str | None = "imagenet", freeze_encoder: bool = False,
                 decoder_channels: Sequence[int] | None = None) -> None:
        super().__init__()
        widths = decoder_channels_option(decoder_channels)
        indices, self.reductions, channels = feature_plan(encoder)
        weights = weights_choice(encoder_weights)
        kwargs: dict = {"features_only": True, "out_indices": tuple(indices),
                        "in_chans": in_channels, "pretrained": weights is not None}
        if weights is not None:
            file = imagenet_weights_file(encoder) if weights == "imagenet" else weights
            read_state_dict(file)  # a damaged file gets the same message as everywhere else
            kwargs["pretrained_cfg_overlay"] = {"file": file}
        try:
            with missing_keys_report() as missing:
                self.encoder = timm.create_model(encoder, **kwargs)
        except LOAD_ERRORS as exc:
            raise UnetkitError(f"{kwargs['pretrained_cfg_overlay']['file']} could not be loaded "
                               f"as {encoder} weights ({short_reason(exc)}).") from exc
        missing = [k for k in missing if not _is_classifier(encoder, k)]
        if missing:
            raise UnetkitError(f"{kwargs['pretrained_cfg_overlay']['file']} could not be loaded "
                               f"as {encoder} weights (it lacks {len(missing)} of the encoder's "
                               f"tensors, e.g. {missing[0]}).")
        self.channels_last_features = getattr(self.encoder, "output_fmt", "NCHW") == "NHWC"
        by_reduction = dict(zip(self.reductions, channels, strict=True))
        self.decoder = UnetDecoder(by_reduction[HEAD_REDUCTION],
                                   [by_reduction.get(r, 0) if r > 1 else 0
                                    for r in SKIP_REDUCTIONS], widths)
        self.segmentation_head = nn.Sequential(nn.Conv2d(widths[-1], classes, 3,
                                                         padding=1))
        self._init_like_smp()
        data = resolve_model_data_config(self.encoder)
        self.input_normalization = channel_stats(list(data["mean"]), list(data["std"]),
                                                 in_channels)
        self.set_encoder_trainable(not freeze_encoder)

    @property
    def geometry(self) -> Geometry:
        """Pads to the deepest feature map's stride (32), smp's `output_stride`."""
        return same_padding(HEAD_REDUCTION)

    def _init_like_smp(self) -> None:
        """smp's initialisation, so training curves are comparable with smp.Unet."""
        for m in self.decoder.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        head = self.segmentation_head[0]
        nn.init.xavier_uniform_(head.weight)
        nn.init.zeros_(head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, (h, w) = pad_to_multiple(x, HEAD_REDUCTION)
        feats = self.encoder(x)
        if self.channels_last_features:
            feats = [f.permute(0, 3, 1, 2) for f in feats]
        by_reduction = dict(zip(self.reductions, feats, strict=True))
        y = by_reduction[HEAD_REDUCTION]
        ph, pw = x.shape[-2:]
        for block, r in zip(self.decoder.blocks, SKIP_REDUCTIONS, strict=True):
            skip = by_reduction.get(r) if r > 1 else None
            y = block(y, (ph // r, pw // r), skip)
        return self.segmentation_head(y)[..., :h, :w]
