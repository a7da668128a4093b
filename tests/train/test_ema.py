"""The weight average: its update by hand, the swap in and out, and a fit whose artifact
holds the average while its checkpoints hold the trained weights."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from unetkit.train.ema import WeightAverage, warm_decay


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))


def _started(model: nn.Module, decay: float = 0.99) -> WeightAverage:
    average = WeightAverage(decay)
    average.on_fit_start(SimpleNamespace(global_step=0), SimpleNamespace(model=model))
    return average


def test_warm_decay_by_hand() -> None:
    assert warm_decay(0.99, 0) == pytest.approx(0.1)
    assert warm_decay(0.99, 90) == pytest.approx(91 / 100)
    assert warm_decay(0.99, 1000) == 0.99  # 1001/1010 would be above the cap


def test_update_lerps_floats_and_copies_integer_buffers() -> None:
    model = _model()
    average = _started(model)
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].running_mean.fill_(2.0)
        model[1].num_batches_tracked.fill_(7)
    params = [p.detach() for p in model.parameters()] + [b.detach() for b in model.buffers()]
    average.update(params)  # first update: decay 0.1, the average moves 90% of the way
    got = dict(zip(average.names, average.average, strict=True))
    assert torch.allclose(got["0.weight"], start + 0.9)
    assert torch.allclose(got["1.running_mean"], torch.full((2,), 1.8))
    assert got["1.num_batches_tracked"].item() == 7
    average.update(params)  # second: decay 2/11
    assert torch.allclose(got["0.weight"], start + 0.9 + 0.1 * (9 / 11))
    assert average.updates == 2


def test_applied_swaps_the_average_in_and_the_weights_back_even_on_error() -> None:
    model = _model()
    average = _started(model)
    trained = model[0].weight.detach().clone() + 5
    with torch.no_grad():
        model[0].weight.copy_(trained)
    with pytest.raises(RuntimeError), average.applied(model):
        assert torch.equal(model[0].weight, average.average[0])
        assert not torch.equal(model[0].weight, trained)
        raise RuntimeError("scoring failed")
    assert torch.equal(model[0].weight, trained)


def test_state_round_trips_into_a_new_run() -> None:
    model = _model()
    average = _started(model)
    with torch.no_grad():
        model[0].weight.add_(3.0)
    average.update([p.detach() for p in model.parameters()] + list(model.buffers()))
    saved = average.state_dict()
    again = WeightAverage(0.99)
    again.load_state_dict(saved)
    again.on_fit_start(SimpleNamespace(global_step=5), SimpleNamespace(model=_model()))
    assert again.updates == 1
    for a, b in zip(again.average, average.average, strict=True):
        assert torch.equal(a, b)
    wrong = WeightAverage(0.99)
    wrong.load_state_dict({"updates": 1, "average": {"0.weight": saved["average"]["0.weight"]}})
    with pytest.raises(ValueError, match="does not match"):
        wrong.on_fit_start(SimpleNamespace(global_step=0), SimpleNamespace(model=_model()))


def test_bad_decay_refused() -> None:
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(1.0)


@pytest.mark.slow
def test_fit_saves_the_average_as_the_model_and_trained_weights_in_checkpoints(
        tmp_path: Path) -> None:
    from unetkit.config import FitConfig
    from unetkit.data.synthetic import write_folder
    from unetkit.train.fit import fit

    data = write_folder(tmp_path / "data", count=8, size=(48, 48), channels=1, seed=4)
    config = FitConfig(data=str(data), out=str(tmp_path / "run"), epochs=3, size=[32, 32],
                       batch_size=2, model_options={"filters": 4, "depth": 2},
                       calibrate=False, ema=0.9)
    fit(config, quiet=True)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", map_location="cpu",
                      weights_only=False)
    state = ckpt["callbacks"]["WeightAverage"]
    assert state["updates"] == ckpt["global_step"] > 0
    trained = {k[len("model."):]: v for k, v in ckpt["state_dict"].items()
               if k.startswith("model.")}
    artifact = load_file(tmp_path / "run" / "model" / "model.safetensors")
    assert sorted(state["average"]) == sorted(artifact) == sorted(trained)
    # the artifact is the average, which differs from the trained weights it was built from
    for key, averaged in state["average"].items():
        assert torch.equal(artifact[key], averaged.contiguous()), key
    assert any(not torch.equal(artifact[k], trained[k]) for k in trained
               if trained[k].is_floating_point())
