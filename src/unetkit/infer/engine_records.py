"""engines.json: what each engine measured on this CPU for this model, beside the artifact.

`<artifact>/engines.json` holds, per CPU (its name and instruction-set flags, so another
machine measures afresh) and for the weights it was measured with (the artifact's save id),
one record per engine and precision: the share of validation pixels whose mask agrees with
float32 PyTorch, whether that passed the AGREEMENT rule, the milliseconds per image, the
images and threads it was measured on and when. `--engine auto` picks the fastest record
that passed; an engine that failed the check is kept as "refused", one that could not be
built as "failed", so neither is measured again on every run.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from unetkit.device import cpu_flags, cpu_model
from unetkit.errors import UnetkitError
from unetkit.io_utils import atomic_write_text
from unetkit.models.artifact import CONFIG_NAME, SAVE_ID, WEIGHTS_NAME
from unetkit.progress import say

ENGINES_JSON = "engines.json"
AGREEMENT = 0.995  # an engine is used by auto only when this share of mask pixels agrees
RULE = ("--engine auto uses an engine only when its masks agree with float32 PyTorch on at "
        f">= {100 * AGREEMENT:g}% of the pixels of the run's validation images")


def record_key(engine: str, precision: str) -> str:
    return f"{engine}/{precision}"


def cpu_key() -> str:
    """This CPU, as records are keyed: its name and the instruction sets kernels use."""
    return f"{cpu_model()} [{' '.join(cpu_flags())}]"


def model_id(directory: Path) -> str:
    """The identity of the artifact's weights: its save id, else the weights' size and time."""
    try:
        config = json.loads((directory / CONFIG_NAME).read_text())
    except (OSError, json.JSONDecodeError):
        config = {}
    if config.get(SAVE_ID):
        return str(config[SAVE_ID])
    stat = (directory / WEIGHTS_NAME).stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def _read(directory: Path) -> dict[str, Any]:
    try:
        data = json.loads((directory / ENGINES_JSON).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def load_records(directory: Path) -> dict[str, dict[str, Any]]:
    """This CPU's records for the artifact's current weights (empty when none or stale)."""
    block = (_read(directory).get("cpus") or {}).get(cpu_key()) or {}
    if block.get("model") != model_id(directory):
        return {}
    return dict(block.get("engines") or {})


def stamp(record: dict[str, Any], threads: int) -> dict[str, Any]:
    """A record with where and when it was measured."""
    return {**record, "cpu": cpu_model(), "threads": threads,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def save_records(directory: Path, records: dict[str, dict[str, Any]]) -> Path | None:
    """Merge `records` into this CPU's block (a new model id drops the old ones) and write
    engines.json atomically; None, with a note, where the folder is not writable."""
    data = _read(directory)
    cpus = data.setdefault("cpus", {})
    mid = model_id(directory)
    block = cpus.get(cpu_key()) or {}
    engines = dict(block.get("engines") or {}) if block.get("model") == mid else {}
    engines.update(records)
    cpus[cpu_key()] = {"cpu": cpu_model(), "flags": cpu_flags(), "model": mid,
                       "engines": engines}
    data.update(format_version=1, rule=RULE)
    path = directory / ENGINES_JSON
    try:
        atomic_write_text(path, json.dumps(data, indent=1))
    except UnetkitError as exc:  # a read-only artifact (e.g. the hub cache) is still usable
        say(f"note: the engine measurements were not recorded ({exc})")
        return None
    return path


def fastest_passed(records: dict[str, dict[str, Any]], keys: list[str]) -> str | None:
    """The key among `keys` whose record passed the agreement check in the fewest ms."""
    passed = [k for k in keys if (records.get(k) or {}).get("status") == "passed"]
    return min(passed, key=lambda k: records[k]["ms_per_image"]) if passed else None
