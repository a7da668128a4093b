"""timm-unet: the same decoder as segmentation_models_pytorch's Unet; weights from the caches."""

from __future__ import annotations

from pathlib import Path

import pytest
import segmentation_models_pytorch as smp
import timm
import torch
from safetensors.torch import save_file

from unetkit.errors import UnetkitError, UsageError
from unetkit.models.registry import build_model, count_parameters, resolve_options

MNV2 = {"encoder": "mobilenetv2_100", "encoder_weights": None}


def test_matches_smp_unet_exactly() -> None:
    """Same parameters and state-dict layout as smp's timm-universal Unet, hence same outputs."""
    ours = build_model("timm-unet", **MNV2, classes=2).eval()
    theirs = smp.Unet("tu-mobilenetv2_100", encoder_weights=None, classes=2).eval()
    assert count_parameters(ours) == count_parameters(theirs) == 4_005_090
    state = {k.replace("encoder.model.", "encoder.", 1): v for k, v in theirs.state_dict().items()}
    ours.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


def test_counts_against_smp_mobilenet_v2() -> None:
    ours = count_parameters(build_model("timm-unet", **MNV2))
    smp_mnv2 = count_parameters(smp.Unet("mobilenet_v2", encoder_weights=None, classes=1))
    assert ours == 4_004_945
    assert smp_mnv2 == 6_628_945
    # smp's torchvision encoder keeps features[18] (1x1 conv 320->1280 + BN) and feeds 1280
    # instead of 320 channels into the first decoder conv (256 outputs, 3x3, with a 96 skip).
    assert smp_mnv2 - ours == (320 * 1280 + 2 * 1280) + (1280 - 320) * 256 * 9


def test_resnet18() -> None:
    model = build_model("timm-unet", encoder="resnet18", encoder_weights=None, classes=3).eval()
    assert count_parameters(model) == count_parameters(
        smp.Unet("resnet18", encoder_weights=None, classes=3)) == 14_328_499
    with torch.no_grad():
        assert model(torch.randn(1, 3, 250, 375)).shape == (1, 3, 250, 375)


def test_the_planners_scene_model() -> None:
    """The scene plan's ResNet-10-T U-Net with the light decoder: smp's layout for the same
    encoder and widths, and whole 144x192 frames (not a multiple of 32) come back whole."""
    from unetkit.plan.model_choice import SCENE_ENCODER

    options = {**SCENE_ENCODER, "encoder_weights": None}
    model = build_model("timm-unet", **options, classes=11).eval()
    theirs = smp.Unet("tu-resnet10t", encoder_weights=None, classes=11,
                      decoder_channels=SCENE_ENCODER["decoder_channels"])
    assert count_parameters(model) == count_parameters(theirs)
    assert model.reductions == [2, 4, 8, 16, 32]
    with torch.no_grad():
        assert model(torch.randn(2, 3, 144, 192)).shape == (2, 11, 144, 192)


def test_first_feature_at_stride_4() -> None:
    """ConvNeXt's first map is at stride 4: the stride-2 and stride-1 blocks get no skip."""
    ours = build_model("timm-unet", encoder="convnext_atto", encoder_weights=None)
    theirs = smp.Unet("tu-convnext_atto", encoder_weights=None)
    assert count_parameters(ours) == count_parameters(theirs)
    assert ours.reductions == [4, 8, 16, 32]
    with torch.no_grad():
        assert ours.eval()(torch.randn(1, 3, 40, 70)).shape == (1, 1, 40, 70)


def test_defaults_and_normalization() -> None:
    opts = resolve_options("timm-unet")
    assert (opts["encoder"], opts["encoder_weights"], opts["freeze_encoder"]) == \
        ("resnet34", "imagenet", False)
    model = build_model("timm-unet", **MNV2)
    assert model.input_normalization == {"mean": [0.485, 0.456, 0.406],
                                         "std": [0.229, 0.224, 0.225]}
    assert all(p.requires_grad for p in model.parameters())


def test_freeze_encoder() -> None:
    model = build_model("timm-unet", **MNV2, freeze_encoder=True).train()
    assert not model.encoder.training and model.decoder.training
    model(torch.randn(2, 3, 64, 64)).mean().backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    model.set_encoder_trainable(True)
    assert model.encoder.training and all(p.requires_grad for p in model.encoder.parameters())


def test_channels_last() -> None:
    model = build_model("timm-unet", **MNV2).eval()
    x = torch.randn(1, 3, 50, 66)
    with torch.no_grad():
        torch.testing.assert_close(model(x.contiguous(memory_format=torch.channels_last)),
                                   model(x), rtol=1e-4, atol=1e-4)


def timm_state(path: Path) -> dict[str, torch.Tensor]:
    state = timm.create_model("mobilenetv2_100", pretrained=False).state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return state


def test_weights_from_file(tmp_path: Path) -> None:
    state = timm_state(tmp_path / "mnv2.pth")
    model = build_model("timm-unet", encoder="mobilenetv2_100",
                        encoder_weights=str(tmp_path / "mnv2.pth"))
    torch.testing.assert_close(model.encoder.conv_stem.weight, state["conv_stem.weight"])


def test_imagenet_from_hugging_face_cache(weight_caches: dict[str, Path]) -> None:
    repo = weight_caches["hf"] / "models--timm--mobilenetv2_100.ra_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    state = timm_state(repo / "snapshots" / "0123abcd" / "model.safetensors")
    model = build_model("timm-unet", encoder="mobilenetv2_100")
    torch.testing.assert_close(model.encoder.blocks[6][0].conv_pwl.weight,
                               state["blocks.6.0.conv_pwl.weight"])


def test_imagenet_from_torch_hub_cache(weight_caches: dict[str, Path]) -> None:
    state = timm_state(weight_caches["checkpoints"] / "mobilenetv2_100_ra-b33bc2c4.pth")
    model = build_model("timm-unet", encoder="mobilenetv2_100")
    torch.testing.assert_close(model.encoder.conv_stem.weight, state["conv_stem.weight"])


def test_missing_imagenet_weights(weight_caches: dict[str, Path], one_sentence) -> None:
    with pytest.raises(UnetkitError) as info:
        build_model("timm-unet", encoder="mobilenetv2_100")
    message = str(info.value)
    assert str(weight_caches["checkpoints"] / "mobilenetv2_100_ra-b33bc2c4.pth") in message
    assert "--encoder-weights none" in message
    one_sentence(message)


def test_damaged_and_mismatched_files(tmp_path: Path, one_sentence) -> None:
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(b"garbage")
    with pytest.raises(UnetkitError, match="not a readable weights file") as info:
        build_model("timm-unet", encoder="mobilenetv2_100", encoder_weights=str(damaged))
    one_sentence(str(info.value))

    unrelated = tmp_path / "unrelated.pth"
    torch.save({"foo": torch.zeros(3)}, unrelated)
    with pytest.raises(UnetkitError, match="lacks .* of the encoder's tensors") as info:
        build_model("timm-unet", encoder="mobilenetv2_100", encoder_weights=str(unrelated))
    one_sentence(str(info.value))

    other = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), other)
    with pytest.raises(UnetkitError, match="could not be loaded as mobilenetv2_100") as info:
        build_model("timm-unet", encoder="mobilenetv2_100", encoder_weights=str(other))
    one_sentence(str(info.value))


def test_unknown_encoder(one_sentence) -> None:
    with pytest.raises(UsageError, match="not a timm model") as info:
        build_model("timm-unet", encoder="resnet-9000", encoder_weights=None)
    one_sentence(str(info.value))


def test_decoder_channels_like_smp(one_sentence) -> None:
    """`decoder_channels` sets each block's width as smp's option of that name does."""
    widths = [128, 64, 32, 16, 16]
    ours = build_model("timm-unet", encoder="resnet18", encoder_weights=None, classes=3,
                       decoder_channels=widths).eval()
    theirs = smp.Unet("resnet18", encoder_weights=None, classes=3, decoder_channels=widths)
    assert count_parameters(ours) == count_parameters(theirs) < 14_328_499
    assert [b.conv2[0].out_channels for b in ours.decoder.blocks] == widths
    with torch.no_grad():
        assert ours(torch.randn(1, 3, 70, 90)).shape == (1, 3, 70, 90)
    narrow = build_model("timm-unet", encoder="resnet18", encoder_weights=None,
                         decoder_channels="64,32,16,8,8")  # as --option gives it
    assert [b.conv2[0].out_channels for b in narrow.decoder.blocks] == [64, 32, 16, 8, 8]
    for bad in ([64, 32], [128, 64, 32, 16, 0], "wide"):
        with pytest.raises(UsageError, match="decoder_channels must be 5 positive") as info:
            build_model("timm-unet", encoder="resnet18", encoder_weights=None,
                        decoder_channels=bad)
        one_sentence(str(info.value))
