"""Typed, YAML-round-trippable training configuration.

One dataclass holds every choice `fit` makes so that `config.yaml` in a run directory
re-runs the same training with `--config`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from unetkit.errors import UsageError


@dataclass
class FitConfig:
    """Everything `unetkit fit` needs; defaults are the ones a user gets with no flags."""

    data: str = ""
    format: str = "auto"
    format_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"boundary": "pet"}
    model: str = "unet"
    model_options: dict[str, Any] = field(default_factory=dict)
    classes: int | None = None  # from the data unless set
    in_channels: int | None = None  # from the data unless set
    size: list[int] | None = None  # [H, W] patch fed to the network; None = from the data
    scale: Any = "auto"  # factor applied to images first; auto = 1, or shrink sides > 1024
    epochs: int | None = None  # None = 50, or no limit when max_time is set
    max_time: str | None = None  # e.g. "10m"
    batch_size: int | None = None  # None = chosen from size and device
    loss: str = "auto"  # auto = bce-dice (binary) / ce-dice (multi-class)
    optimizer: str = "adamw"
    lr: float | str = 1e-3  # or "auto": run the learning-rate range test first
    weight_decay: float = 1e-4
    scheduler: str = "onecycle"
    val_split: float = 0.2
    test_split: float = 0.0
    folds: int | None = None  # cross-validation: K models saved as one ensemble
    augment: str = "default"
    rare_crops: float = 0.0  # share of patches centred on a rare-class pixel (data/focus.py)
    precision: str = "auto"  # auto = bf16-mixed where supported, else 32
    devices: int = 1
    num_nodes: int = 1
    seed: int = 0
    patience: int | None = None
    monitor: str = "val/mean_dice"
    unfreeze_at: int | None = None  # epoch at which a frozen pretrained encoder starts training
    loss_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"class_weights": [1, 3]}
    grad_clip: float | None = None
    ema: float = 0.99  # decay of the weight average validated and saved (train/ema.py); 0: off
    accumulate: int = 1
    deterministic: bool = False
    skip_bad: bool = False
    calibrate: bool = True  # fit a temperature on the validation split after training
    num_workers: int | None = None
    out: str = "runs/latest"
    init_from: str | None = None  # run or artifact whose weights training starts from

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        from unetkit.io_utils import atomic_write_text

        atomic_write_text(Path(path), yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FitConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(f"Unknown config key(s) {', '.join(unknown)}; known keys: "
                             f"{', '.join(sorted(known))}.")
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> FitConfig:
        """Check types and ranges once, naming the flag (and config key) at fault."""
        for key in ("format_options", "model_options", "loss_options"):
            if not isinstance(getattr(self, key), dict):
                raise UsageError(f"Config key {key} must be a mapping of names to values, not "
                                 f"{getattr(self, key)!r}.")
        for key, low in (("epochs", 1), ("batch_size", 1), ("folds", 2), ("patience", 1),
                         ("classes", 1), ("in_channels", 1), ("devices", 1), ("num_nodes", 1),
                         ("accumulate", 1), ("num_workers", 0), ("unfreeze_at", 0)):
            _check_int(key, getattr(self, key), low, optional=key not in
                       ("devices", "num_nodes", "accumulate"))
        _check_int("seed", self.seed, 0)
        for key in ("val_split", "test_split"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 <= value < 1:
                raise UsageError(f"{_flag(key)} {value!r} must be a fraction in [0, 1).")
        if self.val_split + self.test_split >= 1:
            raise UsageError(f"--val-split {self.val_split} and --test-split {self.test_split} "
                             "leave nothing to train on; their sum must be below 1.")
        if isinstance(self.rare_crops, bool) or not isinstance(self.rare_crops, (int, float)) \
                or not 0 <= self.rare_crops <= 1:
            raise UsageError(f"--rare-crops {self.rare_crops!r} must be a share from 0 to 1.")
        if isinstance(self.ema, bool) or not isinstance(self.ema, (int, float)) \
                or not 0 <= self.ema < 1:
            raise UsageError(f"--ema {self.ema!r} must be a decay from 0 (off) to below 1, "
                             "e.g. 0.99.")
        if self.augment not in AUGMENTS:
            raise UsageError(f"--augment {self.augment!r} is unknown; choose one of "
                             f"{', '.join(AUGMENTS)}.")
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision {self.precision!r} is unknown; choose one of "
                             f"{', '.join(PRECISIONS)}.")
        if self.lr != "auto" and (isinstance(self.lr, bool) or not isinstance(self.lr, (int, float))
                                  or not self.lr > 0):
            raise UsageError(f"--lr {self.lr!r} must be a positive number or auto.")
        parse_duration(self.max_time)
        if self.size is not None:
            self.size = parse_size(self.size)
        return self

    @classmethod
    def load(cls, path: str | Path) -> FitConfig:
        path = Path(path)
        if not path.is_file():
            raise UsageError(f"Config file {path} does not exist.")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise UsageError(f"Config file {path} is not valid YAML ({exc}).") from exc
        if not isinstance(values, dict):
            raise UsageError(f"Config file {path} must hold a mapping of keys to values.")
        return cls.from_dict(values)


AUGMENTS = ("none", "default", "strong", "natural")
PRECISIONS = ("auto", "32", "bf16-mixed", "16-mixed")  # what --precision accepts


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _check_int(key: str, value: Any, low: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UsageError(f"{_flag(key)} {value!r} must be a whole number of at least {low} "
                         f"(config key {key}).")


def parse_size(text: str | int | list[int] | None) -> list[int] | None:
    """Accept 256, "256", "192x256" or [192, 256]; return [H, W]."""
    if text is None or text == "":
        return None
    if isinstance(text, int):
        return [text, text]
    if isinstance(text, (list, tuple)):
        return [int(text[0]), int(text[-1])]
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*", str(text))
    if not match:
        raise UsageError(f"--size {text!r} is not a size; use N or HxW, e.g. 256 or 192x256.")
    h = int(match.group(1))
    w = int(match.group(2) or h)
    if h < 8 or w < 8:
        raise UsageError(f"--size {text!r} is too small; use at least 8 pixels per side.")
    return [h, w]


def parse_duration(text: str | None, flag: str = "--max-time") -> float | None:
    """'90s', '10m', '1h30m', '1.5h' or plain seconds -> seconds; errors name `flag`."""
    if text is None or text == "":
        return None
    s = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return float(s)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", s)
    if not parts or "".join(a + b for a, b in parts) != s.replace(" ", ""):
        raise UsageError(f"{flag} {text!r} is not a duration; use e.g. 90s, 10m or 1h30m.")
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0}
    return sum(float(a) * scale[b] for a, b in parts)
