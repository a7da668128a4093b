"""The model card, model/README.md: what the model does, what it was trained and validated on,
how well it did (with the metrics' exact definitions), and how to load it.

Written after the run report so the numbers are the full-size validation ones, and kept in the
artifact so it travels with the weights (a hub repo shows it as the repo's page).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import platform
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import yaml
from PIL import Image

import unetkit.infer.evaluate as evaluate_module
from unetkit.data.formats import open_dataset
from unetkit.device import cpu_model
from unetkit.io_utils import atomic_write_text

CARD_NAME = "README.md"
METRIC_ORDER = ("dice", "iou", "mean_dice", "mean_iou", "pixel_accuracy", "mean_dice_foreground",
                "mean_iou_foreground", "micro_dice", "micro_iou", "micro_dice_foreground",
                "micro_iou_foreground")
SMALL_VAL = 100  # fewer validation images than this: the card says so
SIZE_SAMPLE = 2000  # image headers read for the size summary (enough for the spread)


def write_model_card(run_dir: str | Path) -> Path:
    """Write run_dir/model/README.md from the run's own files; returns its path."""
    run_dir = Path(run_dir)
    facts = _RunFacts.read(run_dir)
    sections = [_front_matter(facts), _title(facts), _task(facts), _data(facts),
                _training(facts), _metrics(facts), _hardware(facts), _use(facts), _loading(facts)]
    path = run_dir / "model" / CARD_NAME
    atomic_write_text(path, "\n\n".join(s.strip("\n") for s in sections) + "\n")
    return path


def _load_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


class _RunFacts:
    """Everything the card states, read once from the run directory."""

    def __init__(self, run_dir: Path, config: dict[str, Any], meta: dict[str, Any],
                 summary: dict[str, Any], epochs: list[dict[str, str]],
                 splits: dict[str, Any]) -> None:
        self.run_dir, self.config, self.meta = run_dir, config, meta
        self.summary, self.epochs, self.splits = summary, epochs, splits

    @classmethod
    def read(cls, run_dir: Path) -> _RunFacts:
        try:
            config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
        except (OSError, yaml.YAMLError):
            config = {}
        try:
            with open(run_dir / "metrics.csv", newline="") as f:
                epochs = list(csv.DictReader(f))
        except OSError:
            epochs = []
        return cls(run_dir, config, _load_json(run_dir / "model" / "config.json"),
                   _load_json(run_dir / "report" / "summary.json"), epochs,
                   _load_json(run_dir / "splits.json"))

    @property
    def name(self) -> str:
        return self.run_dir.resolve().name

    def split_counts(self) -> dict[str, int]:
        counts = {k: len(v) for k, v in self.splits.items()
                  if k in ("train", "val", "test") and isinstance(v, list)}
        folds = self.splits.get("folds")
        if isinstance(folds, list) and folds:
            counts["folds"] = len(folds)
        return counts

    def epochs_run(self) -> int:
        return len({row.get("epoch") for row in self.epochs if row.get("epoch") not in (None, "")})

    def seconds(self) -> float | None:
        values = [row.get("elapsed_s") for row in self.epochs if row.get("elapsed_s")]
        try:
            return float(values[-1]) if values else None
        except ValueError:
            return None


def _front_matter(f: _RunFacts) -> str:
    """Hugging Face reads this header for the repo page's tags and widgets."""
    return "---\nlibrary_name: unetkit\npipeline_tag: image-segmentation\ntags:\n- unetkit\n" \
        "- unet\n- image-segmentation\n---"


def _title(f: _RunFacts) -> str:
    arch = f.meta.get("architecture", {}).get("name", f.config.get("model", "unet"))
    return f"# {f.name}\n\nA `{arch}` segmentation model trained with unetkit."


def _task(f: _RunFacts) -> str:
    names = list(f.meta.get("class_names") or [])
    kind = "binary (one foreground class against background)" if f.meta.get("binary") \
        else f"{len(names)} classes"
    lines = ["## Task", "", f"- Kind: {kind}",
             f"- Class names: {', '.join(f'`{n}`' for n in names) or 'unknown'}"]
    if f.meta.get("ignore_index") is not None:
        lines.append(f"- Ignore value: {f.meta['ignore_index']} (left out of loss and metrics)")
    lines.append(f"- Input channels: {f.meta.get('in_channels', 'unknown')}")
    return "\n".join(lines)


def _image_sizes(f: _RunFacts) -> str:
    """The distinct image sizes (width x height) of the data, most common first."""
    try:
        samples = open_dataset(f.config["data"], f.config.get("format", "auto"),
                               **(f.config.get("format_options") or {})).samples
    except Exception:  # the card must not fail because the data moved since training
        return "unknown (data folder not readable when the card was written)"
    sizes: Counter[tuple[int, int]] = Counter()
    for s in samples[:SIZE_SAMPLE]:
        try:
            with Image.open(s.image) as im:
                sizes[im.size] = sizes[im.size] + 1
        except (OSError, ValueError):
            continue
    if not sizes:
        return "unknown"
    shown = ", ".join(f"{w}x{h} ({n})" for (w, h), n in sizes.most_common(5))
    more = f", and {len(sizes) - 5} other sizes" if len(sizes) > 5 else ""
    sampled = f" (first {SIZE_SAMPLE} images)" if len(samples) > SIZE_SAMPLE else ""
    return f"{shown}{more}{sampled}"


def _data(f: _RunFacts) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in f.split_counts().items()) or "unknown"
    fmt = f.meta.get("data_format") or f.config.get("format", "unknown")
    return "\n".join(["## Data", "", f"- Path: `{f.config.get('data', 'unknown')}`",
                      f"- Format: {fmt}", f"- Images per split: {counts}",
                      f"- Image sizes (width x height, count): {_image_sizes(f)}"])


def _training(f: _RunFacts) -> str:
    c, arch = f.config, f.meta.get("architecture", {})
    seconds = f.seconds()
    rows = [("model", arch.get("name", c.get("model"))),
            ("model options", json.dumps(arch.get("options", c.get("model_options", {})))),
            ("training size", "x".join(str(v) for v in c.get("size") or []) or "unknown"),
            ("scale", f.meta.get("scale", c.get("scale"))),
            ("batch size", c.get("batch_size")), ("epochs run", _epochs_run(f)),
            ("epoch cap", c.get("epochs")), ("best epoch", f.meta.get("best_epoch")),
            ("monitor", c.get("monitor")), ("loss", c.get("loss")),
            ("optimizer", f"{c.get('optimizer')} (lr {c.get('lr')}, weight decay "
                          f"{c.get('weight_decay')})"),
            ("scheduler", c.get("scheduler")), ("augment", c.get("augment")),
            ("precision", c.get("precision")), ("seed", c.get("seed")),
            ("time used", f"{seconds:.1f} s" if seconds is not None else "unknown")]
    lines = ["## Training", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines) + "\n\nThe full configuration is the run's `config.yaml` " \
        "(re-runnable with `unetkit fit --config config.yaml`)."


def _epochs_run(f: _RunFacts) -> int | str:
    if f.epochs:
        return f.epochs_run()
    return "see each fold_K/metrics.csv" if f.split_counts().get("folds") else "unknown"


def _definitions() -> str:
    """The metric semantics, taken from evaluate's docstring: one source of truth."""
    paragraphs = (evaluate_module.__doc__ or "").split("\n\n")[1:]
    kept = [p for p in paragraphs if not p.startswith("With `instances`")]
    return "\n\n".join(kept).strip() or "See the docstring of unetkit.infer.evaluate."


def score(value: object) -> str:
    """A metric as people read it: four decimals (summary.json keeps the full value)."""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _metrics(f: _RunFacts) -> str:
    s = f.summary
    if not s:
        return "## Validation metrics\n\nNo report/summary.json was written for this run."
    lead = f"On the {s.get('split', 'val')} split, {s.get('images', '?')} images, each scored " \
        f"at its original size (engine {s.get('engine', '?')}, precision " \
        f"{s.get('precision', '?')})." if "folds" not in s else \
        "Each fold's model scored on its own held-out fold, at each image's original size."
    lines = ["## Validation metrics", "", lead, "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {score(s[k])} |" for k in METRIC_ORDER if k in s]
    if s.get("per_class"):
        lines += ["", "| class | dice | iou |", "|---|---|---|"]
        lines += [f"| {n} | {score(v.get('dice'))} | {score(v.get('iou'))} |"
                  for n, v in s["per_class"].items()]
    if "mean_dice_std" in s:
        lines += ["", f"Cross-validation over {len(s.get('folds', []))} folds: the values are "
                  "means over the folds (`*_std` is their spread; see report/summary.json)."]
    return "\n".join(lines) + "\n\nHow the numbers are computed:\n\n" + _definitions()


def _hardware(f: _RunFacts) -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(["## Hardware and time", "", f"- CPU: {cpu_model()}", f"- GPU: {gpu}",
                      f"- Devices used: {f.config.get('devices', 1)}",
                      f"- Software: unetkit {_version()}, torch {torch.__version__}, "
                      f"Python {platform.python_version()}",
                      f"- Card written: {now}"])


def _version() -> str:
    try:
        return metadata.version("unetkit")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def _use(f: _RunFacts) -> str:
    counts = f.split_counts()
    train, val = counts.get("train", "?"), counts.get("val", f.summary.get("images", "?"))
    classes = ", ".join(f.meta.get("class_names") or []) or "its classes"
    checked = f"validated on {val}" if "folds" not in counts else \
        f"cross-validated over {counts['folds']} folds"
    small = "It is small, and " if isinstance(val, int) and val < SMALL_VAL else ""
    return "\n\n".join([
        "## Intended use and limitations",
        f"Segments {classes} in images like those of `{f.config.get('data', 'its data set')}`.",
        f"It was trained on {train} images of one data set and {checked}; expect lower scores "
        "on images from other sources (scanners, cameras, stains, lighting, sizes) until it is "
        "checked on them with `unetkit evaluate`.",
        f"{small}{'t' if small else 'T'}he validation data comes from the same source as the "
        "training data, so the metrics above estimate in-distribution quality only. Not "
        "validated for clinical or other safety-critical use."])


def _loading(f: _RunFacts) -> str:
    return "\n".join([
        "## How to load", "", "```python", "import unetkit", "",
        'model = unetkit.load_model("model")  # this folder, its run directory, or '
        "hf://OWNER/NAME",
        "masks = unetkit.predict(model, images)  # HxWxC uint8 arrays -> HxW class indices",
        "```", "", "```bash", "unetkit predict model images/*.png --out masks --overlay",
        "unetkit evaluate model --data DATA --json", "```"])
