"""`predict --engine auto|torch|onnx|openvino --precision ...` and `export --precision int8`:
which engine runs, decided by what was measured on this CPU.

`auto` takes the fastest engine recorded in `<artifact>/engines.json` for this CPU whose
masks agreed with float32 PyTorch on >= 99.5% of the run's validation pixels; engines not
yet recorded (a new CPU, new weights, OpenVINO installed since) are measured first, on a
few validation images (infer/engine_check.py), and recorded. An engine named explicitly
runs even when its record says it failed the check (the user asked), with a one-sentence
warning; an explicit int8 engine with no record is checked first, so that warning can come.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from unetkit.errors import UnetkitError, UsageError
from unetkit.infer.engine_check import Graphs, measure, run_images, runner
from unetkit.infer.engine_records import (
    AGREEMENT,
    ENGINES_JSON,
    fastest_passed,
    load_records,
    record_key,
    save_records,
)
from unetkit.infer.engines import INT8, candidates, check_choice, explicit_precision
from unetkit.infer.onnx import load_for_engine
from unetkit.infer.openvino_engine import openvino_available, require_openvino
from unetkit.infer.quantize import CALIBRATION_BATCHES, INT8_NAME
from unetkit.io_utils import atomic_write_bytes
from unetkit.models.artifact import find_artifact, load_model
from unetkit.progress import say


def _label(record: dict[str, Any]) -> str:
    return f"{record['engine']} {record['precision']}"


def _checked(graphs: Graphs, pairs: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """This CPU's records for `pairs`, measuring (and recording) those not yet recorded when
    the run's validation images can be read."""
    records = load_records(graphs.directory)
    missing = [p for p in pairs if record_key(*p) not in records]
    if missing and graphs.images is not None and graphs.images.val:
        say(f"checking {len(missing)} engine(s) against float32 PyTorch on "
            f"{graphs.images.where}...")
        fresh = measure(graphs, missing)
        save_records(graphs.directory, fresh)
        records.update(fresh)
    return records


OPENVINO_AUTO_ENV = "UNETKIT_OPENVINO_AUTO"


def _choose(graphs: Graphs, precision: str) -> tuple[str, str]:
    """(engine, precision) for --engine auto: the fastest recorded pair that passed."""
    # OpenVINO is opt-in for auto (UNETKIT_OPENVINO_AUTO=1): built beside PyTorch in one
    # process it has crashed a later step (heap corruption, not yet explained)
    pairs = candidates(precision, openvino_available()
                       and os.environ.get(OPENVINO_AUTO_ENV) == "1")
    records = _checked(graphs, pairs)
    best = fastest_passed(records, [record_key(*p) for p in pairs])
    if best is None:
        why = f"no engine here runs --precision {precision}" if not pairs else \
            "nothing passed the check" if records else \
            "MODEL has no readable run data (splits.json) to check engines on"
        if not records and pairs:  # nothing to check on: what --engine torch runs, quietly
            return "torch", precision
        say(f"engine auto: torch 32 ({why}).")
        return "torch", "32"
    rec = records[best]
    say(f"engine auto: {_label(rec)}, {rec['ms_per_image']:.1f} ms per image, masks agree "
        f"with float32 PyTorch on {100 * rec['agreement']:.3f}% of the check pixels "
        f"({graphs.directory / ENGINES_JSON}).")
    return rec["engine"], rec["precision"]


def _warn_if_refused(graphs: Graphs, engine: str, precision: str) -> None:
    """An explicit engine that failed (or, for int8, now fails) the check: one warning."""
    pairs = [(engine, precision)]
    records = _checked(graphs, pairs) if precision == INT8 else load_records(graphs.directory)
    rec = records.get(record_key(engine, precision))
    if rec is not None and rec.get("status") == "refused":
        say(f"warning: {_label(rec)} masks agree with float32 PyTorch on only "
            f"{100 * rec['agreement']:.2f}% of the validation pixels (--engine auto needs "
            f"{100 * AGREEMENT:g}%); running it because it was asked for.")


def engine_for_predict(path: str | Path, engine: str = "auto", precision: str = "auto"
                       ) -> tuple[Any, str]:
    """(what Predictor runs, the precision to give Predictor) for predict's flags."""
    check_choice(engine, precision)
    if engine == "auto" and on_cuda(precision):
        engine = "torch"  # the CPU engines' measurements say nothing about a GPU
    if engine in ("torch", "onnx") and precision != INT8:
        return load_for_engine(path, engine), precision
    if engine == "openvino":
        require_openvino()
    directory = find_artifact(path)
    model = load_model(path)
    graphs = Graphs(model, directory, run_images(path, directory))
    if engine == "auto":
        engine, precision = _choose(graphs, precision)
    else:
        precision = explicit_precision(engine, precision)
        _warn_if_refused(graphs, engine, precision)
    return runner(graphs, engine, precision)


def on_cuda(precision: str) -> bool:
    """Whether `--engine auto` predicts on a GPU (the torch engine) rather than the CPU."""
    import torch

    return torch.cuda.is_available() and precision != INT8


def resolve_engine(path: str | Path, engine: str, precision: str) -> tuple[str, str]:
    """The concrete (engine, precision) `auto` stands for (measured and recorded if need
    be), so that every process of a distributed predict runs the same one."""
    if engine != "auto":
        return engine, precision
    if on_cuda(precision):
        return "torch", precision
    directory = find_artifact(path)
    return _choose(Graphs(load_model(path), directory, run_images(path, directory)), precision)


def export_int8(path: str | Path, target: Path | None = None, opset: int | None = None
                ) -> tuple[Path, dict[str, Any]]:
    """Quantise MODEL to int8 (calibrated on the run's training images), check its masks on
    the validation images, record the check, and write `target` (default MODEL's
    model.int8.onnx, which predict reuses) only when it passed."""
    directory = find_artifact(path)
    images = run_images(path, directory)
    if images is None or not images.train or not images.val:
        raise UsageError(f"--precision int8 calibrates on the run's training images and checks "
                         f"on its validation images; {path} is not a run directory whose "
                         f"splits.json and data can be read.")
    graphs = Graphs(load_model(path), directory, images, opset)
    records = measure(graphs, [("onnx", INT8)])
    save_records(directory, records)
    rec = records[record_key("onnx", INT8)]
    if rec["status"] == "failed":
        raise UnetkitError(f"The int8 model could not be built or run ({rec['error']}).")
    target = Path(target) if target is not None else directory / INT8_NAME
    if rec["status"] != "passed":
        raise UnetkitError(f"The int8 model's masks agree with float32 PyTorch on only "
                           f"{100 * rec['agreement']:.2f}% of the validation pixels, below the "
                           f"{100 * AGREEMENT:g}% required, so {target} was not written.")
    atomic_write_bytes(target, graphs.int8())
    rec["calibration_batches"] = CALIBRATION_BATCHES
    rec["reference_ms_per_image"] = records[record_key("torch", "32")]["ms_per_image"]
    return target, rec


def export_int8_command(path: str | Path, target: Path | None, opset: int) -> None:
    """`unetkit export MODEL --precision int8 [--onnx FILE]`: export_int8, then say what."""
    written, rec = export_int8(path, target, opset)
    say(f"Wrote {written} (int8 static QDQ, opset {opset}, calibrated on "
        f"{rec['calibration_batches']} crops of the run's training images).")
    say(f"masks agree with float32 PyTorch on {100 * rec['agreement']:.3f}% of "
        f"{rec['pixels']} pixels of {rec['checked_on']}; onnxruntime int8 "
        f"{rec['ms_per_image']:.1f} ms per image against {rec['reference_ms_per_image']:.1f} "
        f"for PyTorch float32 (recorded in {find_artifact(path) / ENGINES_JSON}).")
