"""`unetkit bench race`: time-to-target by hand, the held-out choice, the scorer, the paused
clock, and a tiny race end to end (held-out images never trained or validated on)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from unetkit.errors import UsageError


def _curves() -> dict[str, dict]:
    return {
        "unetkit": {"curve": [(0, 0.1), (30, 0.5), (60, 0.85), (90, 0.9)]},
        # best final (0.80) though classic peaks higher; first at 0.80 already at 30 s
        "smp-resnet34": {"curve": [(0, 0.2), (30, 0.8), (60, 0.7), (90, 0.8)]},
        "classic": {"curve": [(0, 0.1), (30, 0.81), (60, 0.7), (90, 0.78)]},
        "slow": {"curve": [(0, 0.1), (45, 0.79), (90, 0.5)]},
    }


def test_time_to_target_and_ratio_by_hand() -> None:
    from unetkit.bench.race import race_targets, time_to_reach

    assert time_to_reach([(0, 0.1), (30, 0.5), (60, 0.85)], 0.5) == 30  # at, not above
    assert time_to_reach([(0, 0.1), (30, 0.5)], 0.51) is None
    entrants = _curves()
    target = race_targets(entrants, ["smp-resnet34", "classic"])
    assert target == {"entrant": "smp-resnet34", "score": 0.8, "time_s": 30}
    assert entrants["unetkit"]["time_to_target_s"] == 60
    assert entrants["unetkit"]["ratio_to_target_peer"] == 2.0  # 60 s / smp's own 30 s
    assert entrants["smp-resnet34"]["ratio_to_target_peer"] == 1.0
    assert entrants["classic"]["time_to_target_s"] == 30  # 0.81 >= 0.80
    assert entrants["classic"]["ratio_to_target_peer"] == 1.0
    assert entrants["slow"]["time_to_target_s"] is None
    assert entrants["slow"]["ratio_to_target_peer"] is None


def test_ratio_below_one_and_no_peers() -> None:
    from unetkit.bench.race import race_targets

    entrants = {"unetkit": {"curve": [(0, 0.0), (30, 0.9), (60, 0.95)]},
                "classic": {"curve": [(0, 0.0), (30, 0.5), (60, 0.7), (90, 0.8)]}}
    race_targets(entrants, ["classic"])
    assert entrants["unetkit"]["time_to_target_s"] == 30
    assert entrants["unetkit"]["ratio_to_target_peer"] == pytest.approx(30 / 90, abs=1e-4)
    alone = {"unetkit": {"curve": [(0, 0.0), (30, 0.9)]}}
    assert race_targets(alone, []) is None
    assert alone["unetkit"]["time_to_target_s"] is None


def test_table_and_plot_from_constructed_curves(tmp_path: Path) -> None:
    from unetkit.bench.race import race_targets
    from unetkit.bench.race_report import format_race, plot_race

    entrants = _curves()
    for e in entrants.values():
        e.update(steps=10, final_score=e["curve"][-1][1])
    result = {"data": "d/membrane", "budget": "90s", "budget_s": 90.0, "every_s": 30.0,
              "metric": "dice", "held_out": ["a", "b"], "entrants": entrants,
              "target": race_targets(entrants, ["smp-resnet34", "classic"]),
              "goal": {"unetkit_ratio_at_most": 0.3333, "met": False},
              "machine": {"cpu_model": "CPU X", "torch_threads": 2, "bf16": {"used": False}}}
    text = format_race(result)
    rows = {line.split()[0]: line.split() for line in text.splitlines()[2:6]}
    assert rows["unetkit"] == ["unetkit", "10", "0.9000", "60", "s", "2.00"]
    assert rows["classic"][-3:] == ["30", "s", "1.00"]
    assert rows["slow"][-2:] == ["never", "-"]
    assert "smp-resnet34's final dice 0.8000, first reached at 30 s" in text
    plot_race(result, tmp_path / "race.png")
    assert np.asarray(Image.open(tmp_path / "race.png").convert("L")).std() > 5


def test_held_out_choice() -> None:
    from unetkit.bench.race import parse_entrants, pick_held_out

    names = [f"{i:02d}" for i in range(20)]
    assert pick_held_out(names, 4, None) == ["02", "07", "12", "17"]  # spread over the stack
    assert pick_held_out(names, 4, ["05", "01", "05"]) == ["05", "01"]
    with pytest.raises(UsageError, match="--holdout-names 99"):
        pick_held_out(names, None, ["01", "99"])
    with pytest.raises(UsageError, match="--holdout 19"):
        pick_held_out(names, 19, None)
    assert parse_entrants(" classic,unetkit ,classic") == ["classic", "unetkit"]
    with pytest.raises(UsageError, match="--entrants"):
        parse_entrants("unetkit,nnunet")


class _Fixed(torch.nn.Module):
    """Returns given logits in the top-left corner of the padded input."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.full((1, self.logits.shape[0], *x.shape[-2:]), -5.0)
        out[0, :, :self.logits.shape[1], :self.logits.shape[2]] = self.logits
        return out


def test_score_model_by_hand() -> None:
    from unetkit.bench.race_score import HeldOut, score_model

    truth = np.zeros((4, 6), np.uint8)
    truth[0, :6] = 1  # 6 foreground pixels
    truth[3, 5] = 255  # ignored
    pred = np.zeros((4, 6), np.float32)
    pred[0, :3] = 1  # 3 of them found
    pred[2, 0] = 1  # one false positive
    pred[3, 5] = 1  # on the ignored pixel: counts for nothing
    held = HeldOut([np.zeros((4, 6, 1), np.uint8)], [truth], ["background", "foreground"])
    model = _Fixed(torch.from_numpy(pred * 10 - 5)[None]).train()
    dice = score_model(model, held, [0.5], [0.25], torch.device("cpu"))
    assert dice == pytest.approx(2 * 3 / (6 + 4))
    assert model.training  # back in training mode after the pass
    # three classes: mean IoU over all classes
    truth3 = np.array([[0, 1, 2, 2]], np.uint8)
    logits = torch.full((3, 1, 4), -1.0)
    for j, c in enumerate([0, 1, 1, 2]):
        logits[c, 0, j] = 1.0
    held3 = HeldOut([np.zeros((1, 4, 3), np.uint8)], [truth3], ["a", "b", "c"])
    iou = score_model(_Fixed(logits), held3, [0.5] * 3, [0.25] * 3, torch.device("cpu"))
    assert held3.metric == "mean_iou"
    assert iou == pytest.approx((1 + 1 / 2 + 1 / 2) / 3)


def test_race_scores_the_weight_average_and_gives_the_trained_weights_back() -> None:
    from types import SimpleNamespace

    from unetkit.bench.race_unetkit import RaceScorer
    from unetkit.train.callbacks import TrainingClock
    from unetkit.train.ema import WeightAverage

    model = torch.nn.Conv2d(1, 1, 1)
    average = WeightAverage(0.99)
    average.on_fit_start(SimpleNamespace(global_step=0), SimpleNamespace(model=model))
    with torch.no_grad():
        model.weight.add_(1.0)  # trained away from the average
    trained = model.weight.detach().clone()
    seen: list[torch.Tensor] = []

    class Spy:
        def score(self, t: float, module: object, clock: object, steps: int) -> None:
            seen.append(module.model.weight.detach().clone())

    trainer = SimpleNamespace(callbacks=[TrainingClock(None), average], global_step=3)
    RaceScorer(Spy())._score(trainer, SimpleNamespace(model=model), 1.0)  # type: ignore[arg-type]
    assert torch.equal(seen[0], average.average[0]) and not torch.equal(seen[0], trained)
    assert torch.equal(model.weight, trained)


def test_training_clock_leaves_out_paused_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from unetkit.bench.race_score import started_clock

    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    clock = started_clock()
    now[0] += 5
    assert clock.time_elapsed() == pytest.approx(5)
    with clock.paused():
        now[0] += 3
    assert clock.time_elapsed() == pytest.approx(5)
    now[0] += 2
    assert clock.time_elapsed() == pytest.approx(7)
    assert clock.state_dict()["time_elapsed"]["train"] == pytest.approx(7)  # what resumes
    clock.on_train_end(None, None)  # type: ignore[arg-type]
    with clock.paused():  # scoring after the end leaves the final time alone
        now[0] += 4
    assert clock.time_elapsed() == pytest.approx(7)


def test_peer_loss_skips_ignored_pixels() -> None:
    from unetkit.bench.race_peers import peer_loss
    from unetkit.bench.reference import reference_loss

    logits = torch.tensor([[[[2.0, -1.0], [0.5, 3.0]]]])
    target = torch.tensor([[[1, 0], [255, 1]]])
    kept = reference_loss(torch.tensor([[[[2.0, -1.0, 3.0]]]]), torch.tensor([[[[1, 0, 1]]]]))
    assert float(peer_loss(logits, target)) == pytest.approx(float(kept))
    multi = torch.tensor([[[[2.0]], [[0.0]]]]).expand(1, 2, 1, 2).contiguous()
    ce = peer_loss(multi, torch.tensor([[[0, 255]]]))
    assert float(ce) == pytest.approx(float(torch.log1p(torch.exp(torch.tensor(-2.0)))))


def test_race_usage_errors(tmp_path: Path) -> None:
    from unetkit.cli import app

    runner = CliRunner()
    base = ["bench", "race", "--data", str(tmp_path), "--out", str(tmp_path / "o")]
    for extra, flag in ((["--holdout", "2", "--holdout-names", "a"], "--holdout-names"),
                        (["--entrants", "unetkit,nnunet"], "--entrants"),
                        (["--budget", "10s", "--every", "20s"], "--every"),
                        (["--budget", "soon"], "--budget")):
        result = runner.invoke(app, [*base, *extra])
        assert result.exit_code == 2, result.output
        assert flag in result.output and "Traceback" not in result.output
    help_text = runner.invoke(app, ["bench", "race", "--help"]).output
    assert "Example: unetkit bench race" in help_text and "--width" not in help_text


def _binary_folder(root: Path) -> Path:
    from unetkit.data.synthetic import write_folder

    write_folder(root, count=8, size=(64, 64), channels=3, seed=1)
    (root / "classes.txt").unlink()
    for p in (root / "masks").glob("*.png"):
        Image.fromarray(((np.asarray(Image.open(p)) > 0) * 255).astype(np.uint8)).save(p)
    return root


@pytest.mark.slow
def test_tiny_race_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from unetkit.bench.race import time_to_reach
    from unetkit.cli import app
    from unetkit.data.dataset import SegmentationDataset

    data = _binary_folder(tmp_path / "data")
    seen: list[list[str]] = []  # every training or validation set any entrant builds
    original = SegmentationDataset.__init__

    def spy(self, cache, indices, *args, **kwargs):  # noqa: ANN001
        seen.append([cache.names[i] for i in indices])
        original(self, cache, indices, *args, **kwargs)

    monkeypatch.setattr(SegmentationDataset, "__init__", spy)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["bench", "race", "--data", str(data), "--budget", "6s",
                                      "--every", "2s", "--holdout", "2", "--width", "4",
                                      "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    race = json.loads((out / "race.json").read_text())
    held = set(race["held_out"])
    assert len(held) == 2 and len(seen) >= 4  # unetkit's train + val, one per peer
    assert not held & {n for names in seen for n in names}
    assert not held & (set(race["train_images"]) | set(race["unetkit_val_images"]))
    assert list(race["entrants"]) == ["unetkit", "smp-resnet34", "classic"]
    for name, e in race["entrants"].items():
        times = [t for t, _ in e["curve"]]
        assert times[0] == 0 and len(times) >= 3, name
        assert all(t >= 2 * k - 1e-6 for k, t in enumerate(times[:-1])), name  # every 2 s
        assert times[-1] >= 6 - 1e-6 and e["steps"] > 0, name  # trained the whole budget
        assert all(0 <= s <= 1 for _, s in e["curve"]) and e["final_score"] == e["curve"][-1][1]
    peers = {k: race["entrants"][k]["final_score"] for k in ("smp-resnet34", "classic")}
    best = max(peers, key=peers.get)
    assert race["target"]["entrant"] == best and race["target"]["score"] == peers[best]
    own = time_to_reach(race["entrants"][best]["curve"], peers[best])
    for e in race["entrants"].values():
        reached = time_to_reach(e["curve"], peers[best])
        assert e["time_to_target_s"] == reached
        assert e["ratio_to_target_peer"] == (None if reached is None else
                                             pytest.approx(reached / own, abs=1e-4))
    assert race["entrants"]["unetkit"]["settings"]["model_options"]["filters"] == 4
    assert race["machine"]["cpu_model"] and "bf16" in race["machine"]
    assert race["versions"]["segmentation_models_pytorch"] != "absent"
    picture = np.asarray(Image.open(out / "race.png").convert("L"))
    assert picture.shape[0] > 100 and picture.shape[1] > 100 and picture.std() > 5


def test_holdout_split_holds_out_the_official_split(tmp_path: Path) -> None:
    """--holdout-split val: the official val images are held out and the rest is split
    image by image for unetkit's validation (no sequence/group left whole)."""
    from unetkit.bench.race import _race_data
    from unetkit.bench.race_unetkit import cli_config
    from unetkit.data.synthetic import write_folder

    root = tmp_path / "split"
    for split, count in (("train", 10), ("val", 3)):
        write_folder(root / split, count=count, size=(32, 32), channels=3, seed=len(split))
        (root / split / "classes.txt").unlink()
    config = cli_config(root, "10s")
    _, splits, held = _race_data(config, None, None, "val")
    assert len(held) == 3 and all(n.startswith("val") for n in held), held
    assert not set(held) & (set(splits["train"]) | set(splits["val"]))
    assert len(splits["train"]) + len(splits["val"]) == 10 and splits["val"]
    with pytest.raises(UsageError, match="--holdout-split test"):
        _race_data(config, None, None, "test")


def test_scorer_offset_shifts_every_point() -> None:
    """Planning time (`--auto`) is added to unetkit's curve: its points start late."""
    from unetkit.bench.race_score import HeldOut, Scorer, started_clock

    held = HeldOut([np.zeros((32, 32, 1), np.uint8)], [np.zeros((32, 32), np.uint8)],
                   ["background", "foreground"])
    scorer = Scorer(held, 10.0, "unetkit", torch.device("cpu"), True, [0.5], [0.25],
                    offset_s=7.5)
    model = torch.nn.Conv2d(1, 1, 1)
    scorer.score(0.0, model, started_clock(), 0)
    scorer.score(10.0, model, started_clock(), 5)
    assert [t for t, _ in scorer.points] == [7.5, 17.5]
    assert scorer.due(20.0) and not scorer.due(19.9)  # due times follow training time


def test_peers_from_an_earlier_race(tmp_path: Path) -> None:
    from unetkit.bench.race import read_peers, with_peers_from

    common = {"data": str(tmp_path / "membrane"), "budget_s": 90.0, "held_out": ["a", "b"],
              "metric": "dice"}
    earlier = {**common, "entrants": {
        "unetkit": {"curve": [(0, 0.1), (90, 0.99)], "final_score": 0.99},
        "smp-resnet34": {"curve": [(0, 0.2), (30, 0.6), (90, 0.8)], "final_score": 0.8},
        "classic": {"curve": [(0, 0.1), (90, 0.7)], "final_score": 0.7}}}
    path = tmp_path / "race.json"
    path.write_text(json.dumps(earlier))
    now = {**common, "entrants": {"unetkit": {"curve": [(0, 0.1), (30, 0.85), (90, 0.9)],
                                              "final_score": 0.9}}}
    got = with_peers_from(now, read_peers(path), path)
    # the earlier unetkit leg is not taken; the peers are, marked with where they came from
    assert got["entrants"]["unetkit"]["final_score"] == 0.9
    assert got["entrants"]["smp-resnet34"]["from"] == str(path)
    assert got["target"] == {"entrant": "smp-resnet34", "score": 0.8, "time_s": 90}
    assert got["entrants"]["unetkit"]["ratio_to_target_peer"] == pytest.approx(30 / 90,
                                                                               abs=1e-4)
    assert got["goal"]["met"] is True and got["goal"]["unetkit_lead"] == pytest.approx(0.1)
    other = {**common, "held_out": ["c"], "entrants": {"unetkit": {"curve": [(0, 0.1)]}}}
    with pytest.raises(UsageError, match="--peers-from .* another held_out"):
        with_peers_from(other, read_peers(path), path)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UsageError, match="--peers-from .*bad.json is not a readable"):
        read_peers(tmp_path / "bad.json")


def test_peers_from_another_race_is_refused_before_anything_trains(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import unetkit.bench.race as race
    from unetkit.cli import app

    data = _binary_folder(tmp_path / "data")
    trained: list[str] = []
    monkeypatch.setattr(race, "_run_entrant", lambda name, *a, **k: trained.append(name))
    earlier = tmp_path / "race.json"
    for differs, expect in (({"budget_s": 90.0}, "another budget_s"),
                            ({"held_out": ["nope"]}, "another held_out")):
        earlier.write_text(json.dumps({"data": str(data), "budget_s": 6.0, "metric": "dice",
                                       "held_out": [], "entrants": {}, **differs}))
        result = CliRunner().invoke(app, ["bench", "race", "--data", str(data), "--budget",
                                          "6s", "--every", "2s", "--holdout", "2",
                                          "--entrants", "unetkit", "--peers-from", str(earlier)])
        assert result.exit_code != 0 and expect in result.output, result.output
    assert trained == []


def test_auto_leg_trains_for_the_budget_less_planning(monkeypatch: pytest.MonkeyPatch) -> None:
    """The race scores outside every clock, so fit's final-evaluation reserve is given back:
    unetkit's training time is the budget less its planning seconds, like the peers'."""
    import unetkit.plan
    from unetkit.bench.race_unetkit import planned_config
    from unetkit.config import FitConfig, parse_duration

    class FakePlan:
        def to_fit_config(self, config: FitConfig) -> FitConfig:
            time.sleep(0.3)  # planning takes a while
            return FitConfig(data=config.data, max_time="520s", epochs=14, devices=2)

    monkeypatch.setattr(unetkit.plan, "make_plan", lambda *a, **k: FakePlan())
    planned, planning_s = planned_config(FitConfig(data="d", max_time="600s"), 600.0, True)
    assert planning_s >= 0.3 and planned.epochs is None and planned.devices == 1
    assert parse_duration(planned.max_time) == pytest.approx(600.0 - planning_s, abs=0.06)
