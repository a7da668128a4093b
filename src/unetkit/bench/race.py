"""`unetkit bench race`: time to a good model, unetkit beside its peers, on held-out images.

Each entrant trains in turn on the whole machine for the same budget of training time:
unetkit through `fit`'s own path with its defaults (bench/race_unetkit.py), and the peers as
their users train them (bench/race_peers.py). All are scored on the same held-out images
every `--every` seconds of training time, with their clocks stopped while scoring
(bench/race_score.py). The held-out images are in no entrant's training or validation list.

The target is the best peer's final score; each entrant's time to it is the first scored
time at or above it (no interpolation), and its ratio is that time over the best peer's own
first time at its final score. Writes race.json and race.png to --out.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import typer

from unetkit.errors import UsageError

ENTRANTS = ("unetkit", "smp-resnet34", "classic")
GOAL_RATIO = 1 / 3  # unetkit should need at most this share of the best peer's time
UNETKIT_LABEL = "unetkit fit defaults (--max-time BUDGET), fit's own path"
UNETKIT_AUTO_LABEL = "unetkit fit --auto --budget BUDGET (planning included), fit's own path"
NOTES = [
    "clock: every entrant's budget is training wall time on one clock, unetkit's own "
    "(train/callbacks.py TrainingClock, the Lightning Timer that stops --max-time and drives "
    "its LR schedule), stopped while the race scores: scoring costs no entrant budget, and "
    "costs unetkit no schedule progress. unetkit's clock still counts what fit does while "
    "training: a validation pass per epoch on its own validation split and checkpoints.",
    "scoring: the same held-out images for all, whole, at the working resolution of unetkit's "
    "data cache, float32, eval mode, padded to a multiple of 32 and cropped back; one "
    "confusion matrix over the images (unetkit.scoring.summarise): foreground Dice (binary) "
    "or mean IoU over all classes (multi-class).",
    "data: the held-out images are in no entrant's training or validation list. The peers "
    "train on unetkit's training split (the same images) with the same per-channel "
    "normalisation; unetkit also validates on its validation split, which the peers skip.",
    "peers: Adam 1e-3, cosine schedule over the budget (no warm-up), random 256-px crops "
    "(smaller images: their side), random horizontal and vertical flips, batch 8, BCE + soft "
    "Dice (binary) or cross-entropy (multi-class), fp32, NCHW, eager; unetkit trains at its "
    "resolved precision (bf16-mixed where the CPU has native bf16, else 32).",
    "--auto: unetkit plans first (`fit --auto --budget BUDGET`); its planning seconds count "
    "in its time (its curve starts that late), it trains for the rest of the budget (fit's "
    "reserve for start-up, final evaluation and a margin is not needed: the race scores "
    "outside every clock), in one process on every core (the race scores inside it). The "
    "plan's fingerprint reads every mask's class frequencies, held-out ones included; no "
    "held-out pixel is trained or validated on. The data are prepared at the plan's scale, "
    "so the peers train and everyone is scored there.",
    "time to target: the first scored time at or above the best peer's final score (no "
    "interpolation between points); ratio: that time over the best peer's own first time at "
    "its final score.",
]


def time_to_reach(curve: list[tuple[float, float]], target: float) -> float | None:
    """The first time on `curve` [(seconds, score)] whose score is at least `target`."""
    return next((t for t, s in curve if s >= target), None)


def race_targets(entrants: dict[str, dict[str, Any]], peers: list[str]) -> dict[str, Any] | None:
    """The best peer's final score, each entrant's time to it and ratio to that peer's own
    time (both None when never reached); written into `entrants`."""
    scored = [p for p in peers if entrants.get(p, {}).get("curve")]
    target = None
    if scored:
        best = max(scored, key=lambda p: entrants[p]["curve"][-1][1])
        score = entrants[best]["curve"][-1][1]
        target = {"entrant": best, "score": score,
                  "time_s": time_to_reach(entrants[best]["curve"], score)}
    for e in entrants.values():
        t = time_to_reach(e["curve"], target["score"]) if target else None
        own = target["time_s"] if target else None
        e["time_to_target_s"] = t
        e["ratio_to_target_peer"] = round(t / own, 4) if t is not None and own else None
    return target


def pick_held_out(names: list[str], count: int | None, chosen: list[str] | None) -> list[str]:
    """`chosen` as given (each must exist), else `count` names spread evenly over `names`."""
    if chosen:
        missing = [n for n in chosen if n not in set(names)]
        if missing:
            raise UsageError(f"--holdout-names {', '.join(missing)} not found among the "
                             f"{len(names)} images (names are file stems, e.g. {names[0]}).")
        held = list(dict.fromkeys(chosen))
    else:
        n = len(names)
        if count is None or count < 1 or n - count < 2:
            raise UsageError(f"--holdout {count} must be at least 1 and leave at least 2 of "
                             f"the {n} images for training and validation.")
        held = [names[int((j + 0.5) * n / count)] for j in range(count)]
    if len(names) - len(held) < 2:
        raise UsageError("--holdout-names must leave at least 2 images for training and "
                         "validation.")
    return held


def parse_entrants(text: str) -> list[str]:
    names = list(dict.fromkeys(e.strip() for e in text.split(",") if e.strip()))
    bad = [e for e in names if e not in ENTRANTS]
    if bad or not names:
        raise UsageError(f"--entrants {text!r}: choose from {', '.join(ENTRANTS)} "
                         f"(comma-separated).")
    return names


def _durations(budget: str, every: str) -> tuple[float, float]:
    from unetkit.config import parse_duration

    budget_s = parse_duration(budget, "--budget")
    every_s = parse_duration(every, "--every")
    if not budget_s or budget_s <= 0:
        raise UsageError(f"--budget {budget!r} must be a positive duration such as 8m.")
    if not every_s or every_s <= 0 or every_s > budget_s:
        raise UsageError(f"--every {every!r} must be a positive duration no longer than "
                         f"--budget.")
    return budget_s, every_s


def _race_data(config: Any, held_count: int | None, held_names: list[str] | None,
               held_split: str | None = None) -> tuple[Any, dict[str, list[str]], list[str]]:
    """The data as `fit` prepares it for `config` (its working scale), `fit`'s splits of
    what is left once the held-out images are set aside (as test), and those images."""
    from unetkit.data.formats import open_dataset
    from unetkit.data.prepare import foreground_strata, peek_sizes, prepare
    from unetkit.data.splits import make_splits
    from unetkit.train import defaults

    data = config.data
    spec = open_dataset(data, config.format, **config.format_options)
    scale = defaults.choose_scale(config, peek_sizes(spec))
    prepared = prepare(data, config.format, scale, config.skip_bad, **config.format_options)
    if held_split:
        held_names = [s.name for s in prepared.spec.samples if s.split == held_split]
        if not held_names:
            raise UsageError(f"--holdout-split {held_split}: {data} has no official "
                             f"{held_split} split (its format: {prepared.spec.format}).")
    held = pick_held_out(list(prepared.cache.names), held_count, held_names)
    index = prepared.index_of()
    strata = foreground_strata(prepared.cache)
    pool = [s for s in prepared.spec.samples if s.name in index and s.name not in set(held)]
    if held_split:  # unetkit's validation: a few images of the rest, not whole sequences
        pool = [dataclasses.replace(s, split=None, group=None) for s in pool]
    splits = make_splits(pool, config.val_split, 0.0, config.seed,
                         [strata[index[s.name]] for s in pool])
    return prepared, {"train": splits["train"], "val": splits["val"],
                      "test": splits.get("test", []) + held}, held


def run_race(data: str | Path, budget: str = "8m", every: str = "30s",
             entrants: list[str] | None = None, holdout: int | None = 4,
             holdout_names: list[str] | None = None, width: int | None = None,
             quiet: bool = False, auto: bool = False,
             holdout_split: str | None = None,
             peers: tuple[Path, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Train each entrant in turn within `budget`, scored every `every`; return race.json.
    `peers` (path, earlier race.json) is checked against this race before anything trains."""
    import torch

    from unetkit.bench.race_score import HeldOut, Scorer
    from unetkit.bench.race_unetkit import cli_config
    from unetkit.data.dataset import channel_stats
    from unetkit.device import pick_device
    from unetkit.progress import progress
    from unetkit.train.fit import in_channels_of

    budget_s, every_s = _durations(budget, every)
    entrants = entrants or list(ENTRANTS)
    if "smp-resnet34" in entrants:
        from unetkit.bench.race_peers import require_smp

        require_smp()
    data = Path(data)
    if not data.exists():
        raise UsageError(f"--data {data} does not exist.")
    if peers is not None:
        check_peers(peers[1], {"data": str(data), "budget_s": budget_s}, peers[0])
    config = cli_config(data, budget, width)
    planning_s = 0.0
    if auto and "unetkit" in entrants:
        from unetkit.bench.race_unetkit import planned_config

        config, planning_s = planned_config(config, budget_s, quiet)
    prepared, splits, held_names = _race_data(config, holdout, holdout_names, holdout_split)
    index = prepared.index_of()
    train_idx = [index[n] for n in splits["train"]]
    channels = in_channels_of(prepared, train_idx, None)
    held = HeldOut.from_data(prepared, [index[n] for n in held_names], channels)
    if peers is not None:
        check_peers(peers[1], {"held_out": held_names, "metric": held.metric}, peers[0])
    mean, std = channel_stats(prepared.cache, train_idx, channels)
    device = pick_device()
    start = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    for name in progress(entrants, total=len(entrants), desc="race", unit="entrant",
                         disable=quiet):
        torch.manual_seed(0)
        scorer = Scorer(held, every_s, name, device, quiet, list(mean), list(std),
                        offset_s=planning_s if name == "unetkit" else 0.0)
        results[name] = _run_entrant(name, config, budget_s, splits, prepared, train_idx,
                                     channels, scorer, width)
        if name == "unetkit" and auto:
            results[name]["label"] = UNETKIT_AUTO_LABEL
            results[name]["planning_s"] = round(planning_s, 1)
    target = race_targets(results, [e for e in entrants if e != "unetkit"])
    return {"data": str(data), "budget": budget, "budget_s": budget_s, "every_s": every_s,
            "metric": held.metric, "held_out": held_names, "train_images": splits["train"],
            "unetkit_val_images": splits["val"], "entrants": results, "target": target,
            "goal": _goal(results, target), "machine": _machine(device, results),
            "versions": _versions(), "notes": NOTES,
            "wall_s": round(time.perf_counter() - start, 1)}


def _run_entrant(name: str, config: Any, budget_s: float, splits: dict[str, list[str]],
                 prepared: Any, train_idx: list[int], channels: int, scorer: Any,
                 width: int | None) -> dict[str, Any]:
    """One entrant's training and curve, as race.json lists it."""
    import gc
    import shutil

    gc.collect()
    if name == "unetkit":
        from unetkit.bench.race_unetkit import run_unetkit

        tmp = Path(tempfile.mkdtemp(prefix="unetkit-race-"))
        try:
            run = run_unetkit(config, splits, scorer, tmp / "run")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        label = UNETKIT_LABEL
    else:
        from unetkit.bench.race_peers import PEERS, build_peer, train_peer

        classes = 1 if scorer.held.binary else len(scorer.held.class_names)
        model = build_peer(name, channels, classes, width)
        run = train_peer(model, prepared, train_idx, scorer, budget_s, channels)
        label = PEERS[name] + (f", width {width}" if width else "")
    return {"label": label, **run, "curve": [list(p) for p in scorer.points],
            "final_score": scorer.points[-1][1], "scoring_s": round(scorer.scoring_s, 2)}


def _goal(results: dict[str, dict[str, Any]], target: dict[str, Any] | None) -> dict[str, Any]:
    ratio = results.get("unetkit", {}).get("ratio_to_target_peer")
    met = None if "unetkit" not in results or target is None else \
        ratio is not None and ratio <= GOAL_RATIO
    lead = None
    if "unetkit" in results and target is not None:
        lead = round(results["unetkit"]["final_score"] - target["score"], 4)
    return {"unetkit_ratio_at_most": round(GOAL_RATIO, 4), "unetkit_ratio": ratio, "met": met,
            "unetkit_lead": lead}


def read_peers(path: Path) -> dict[str, Any]:
    """An earlier race.json for --peers-from, or one sentence naming it."""
    try:
        earlier = json.loads(Path(path).read_text())
        if not isinstance(earlier.get("entrants"), dict):
            raise ValueError("it has no entrants")
    except (OSError, ValueError, AttributeError) as exc:
        raise UsageError(f"--peers-from {path} is not a readable race.json ({exc}).") from exc
    return earlier


_SAME = {"data": lambda v: str(Path(v).resolve()) if v else None,
         "budget_s": lambda v: float(v) if isinstance(v, int | float) else None,
         "held_out": lambda v: list(v or []), "metric": str}


def check_peers(earlier: dict[str, Any], race: dict[str, Any], path: Path) -> None:
    """One sentence if the earlier race ran on other data, budget, held-out images or metric
    (each key of `race` that is given is compared), so nobody trains for nothing."""
    for key, norm in _SAME.items():
        if key in race and norm(earlier.get(key)) != norm(race.get(key)):
            raise UsageError(f"--peers-from {path} raced with another {key} "
                             f"({earlier.get(key)!r}; this race: {race.get(key)!r}).")


def with_peers_from(result: dict[str, Any], earlier: dict[str, Any], path: Path
                    ) -> dict[str, Any]:
    """`result` with the peers of an earlier race on the same data, budget and held-out
    images (the peers train in float32 whatever UNETKIT_CPU_BF16 says, so a second unetkit
    leg, e.g. with bf16 off, is compared without racing them again); target and goal are
    recomputed over all peers."""
    check_peers(earlier, result, path)
    for name, entry in earlier["entrants"].items():
        if name != "unetkit" and name not in result["entrants"]:
            result["entrants"][name] = {**entry, "from": str(path)}
    peers = [e for e in result["entrants"] if e != "unetkit"]
    result["target"] = race_targets(result["entrants"], peers)
    result["goal"] = _goal(result["entrants"], result["target"])
    result["peers_from"] = str(path)
    return result


def _machine(device: Any, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    import torch

    from unetkit.device import BF16_ENV, cpu_capabilities, cpu_flags, cpu_has_bf16, cpu_model

    caps = cpu_capabilities()
    settings = results.get("unetkit", {}).get("settings", {})
    return {"device": device.type, "cpu_model": cpu_model(), "cpu_flags": cpu_flags(),
            "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "bf16": {"cpu_native": bool(caps.get("avx512_bf16") or caps.get("amx_bf16")),
                     BF16_ENV: os.environ.get(BF16_ENV), "used": cpu_has_bf16(),
                     "unetkit_precision": settings.get("precision")}}


def _versions() -> dict[str, str]:
    out = {}
    for package in ("torch", "segmentation_models_pytorch", "lightning", "unetkit"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "absent"
    return out


def write_race(result: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """race.json and race.png in `out` (each written atomically)."""
    from unetkit.bench.race_report import plot_race
    from unetkit.io_utils import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "race.json", json.dumps(result, indent=1) + "\n")
    plot_race(result, out / "race.png")
    return out / "race.json", out / "race.png"


def race_command(
        data: Annotated[Path | None, typer.Option(help="Data folder (default: "
                                                  "../shared/data/membrane).")] = None,
        budget: Annotated[str, typer.Option(help="Training time per entrant, e.g. 8m "
                                            "(scoring excluded).")] = "8m",
        holdout: Annotated[int | None, typer.Option(help="Hold out this many images, spread "
                                                    "over the sorted names (default 4).")]
        = None,
        holdout_names: Annotated[str | None, typer.Option(help="Hold out these images "
                                                          "instead (file stems, "
                                                          "comma-separated).")] = None,
        holdout_split: Annotated[str | None, typer.Option(help="Hold out the data set's "
                                                          "official split of this name, e.g. "
                                                          "val (CamVid).")] = None,
        auto: Annotated[bool, typer.Option("--auto", help="unetkit trains as `fit --auto "
                                           "--budget BUDGET` (planning counts in its time) "
                                           "instead of with fit's defaults.")] = False,
        entrants: Annotated[str, typer.Option(help="Who races, in this order: unetkit, "
                                              "smp-resnet34, classic.")]
        = ",".join(ENTRANTS),
        every: Annotated[str, typer.Option(help="Score every this much training time.")]
        = "30s",
        as_json: Annotated[bool, typer.Option("--json", help="Print only the JSON (the table "
                                              "and progress go to stderr).")] = False,
        out: Annotated[Path, typer.Option(help="Folder for race.json and race.png.")]
        = Path("runs/bench"),
        peers_from: Annotated[Path | None, typer.Option(help="Take the peers' curves from "
                                                        "this earlier race.json (same data, "
                                                        "budget and held-out images) instead "
                                                        "of racing them again.")] = None,
        width: Annotated[int | None, typer.Option(hidden=True, help="Base width of the "
                                                  "entrants (tests).")] = None) -> None:
    """Time to a good model: unetkit beside smp and the classic U-Net on held-out images.

    Each entrant trains in turn, on the whole machine, for --budget of training time: unetkit
    with `fit`'s defaults, smp's Unet('resnet34') and a milesial-style U-Net the way their
    users train them. All are scored on the same held-out images every --every seconds, with
    the clock stopped. The table gives each one's time to the best peer's final score.
    Takes about 3 x --budget plus scoring.

    Example: unetkit bench race --data data/membrane --budget 8m --holdout 4
    """
    from unetkit.bench.quality import default_data
    from unetkit.bench.race_report import format_race

    if sum(x is not None for x in (holdout, holdout_names, holdout_split)) > 1:
        raise UsageError("Pass one of --holdout, --holdout-names and --holdout-split.")
    found = data or default_data()
    if found is None:
        raise UsageError("No data for the race: ../shared/data/membrane is not on this "
                         "machine, so pass --data PATH.")
    if width is not None and width < 1:
        raise UsageError(f"--width {width} must be at least 1.")
    names = [n.strip() for n in holdout_names.split(",") if n.strip()] if holdout_names \
        else None
    peers = (peers_from, read_peers(peers_from)) if peers_from is not None else None
    result = run_race(found, budget, every, parse_entrants(entrants),
                      4 if holdout is None else holdout, names, width, quiet=as_json,
                      auto=auto, holdout_split=holdout_split, peers=peers)
    if peers is not None:
        result = with_peers_from(result, peers[1], peers[0])
    json_path, png_path = write_race(result, out)
    table = format_race(result)
    if as_json:
        print(table, file=sys.stderr)
        print(json.dumps(result, indent=1))
    else:
        print(table)
        print(f"JSON: {json_path}\nplot: {png_path}", file=sys.stderr)
