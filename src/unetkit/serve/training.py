"""Training from the studio: `unetkit fit` in a subprocess, watched through its run folder.

The job fine-tunes the current model (`fit --init-from`) on the data set's masks, or trains
a first model from scratch, with UNETKIT_PROGRESS=plain; epoch, loss and Dice come from the
run's metrics.csv as it grows, the last log line is the message. One job at a time. Cancel
ends the process group; a failure or a cancel leaves the current model as it was. When the
run ends well, the old and the new model are scored on the labelled images (both may have
trained on them: a check that the new one learnt the corrections, not a held-out score),
and the new one becomes current.
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from unetkit.config import parse_duration
from unetkit.errors import UnetkitError
from unetkit.serve.errors import Conflict
from unetkit.serve.jobs import Job, Studio, log

DEFAULT_MAX_TIME = "2m"  # when the request names neither epochs nor a time budget
MIN_LABELLED = 2
POLL_S = 0.5
KILL_AFTER_S = 10.0  # SIGTERM first; SIGKILL if the process group is still there


class Trainer:
    """The one training job of a studio and what GET /api/train reports about it."""

    def __init__(self, studio: Studio, python: str = sys.executable) -> None:
        self.studio, self.python = studio, python
        self.job: Job | None = None
        self.proc: subprocess.Popen | None = None
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._status: dict[str, Any] = _idle()

    def status(self) -> dict[str, Any]:
        return dict(self._status)

    def start(self, epochs: int | None = None, max_time: str | None = None) -> Job:
        """Start `unetkit fit` on the labelled images; 409 while one runs, 400 with too few."""
        if epochs is not None and epochs < 1:
            raise UnetkitError(f"epochs must be at least 1, not {epochs}.")
        budget = parse_duration(max_time, "max_time") if max_time else None
        with self._lock:
            if self._status["state"] == "running":
                raise Conflict("A training job is already running; wait for it or cancel it "
                               "(POST /api/train/cancel).")
            labelled = len(self.studio.data.labelled())
            if labelled < MIN_LABELLED:
                raise UnetkitError(f"Training needs at least {MIN_LABELLED} labelled images; "
                                   f"{labelled} {'is' if labelled == 1 else 'are'} labelled.")
            if epochs is None and max_time is None:
                max_time, budget = DEFAULT_MAX_TIME, parse_duration(DEFAULT_MAX_TIME)
            stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
            out = self.studio.data.work / "runs" / stamp
            out.mkdir(parents=True, exist_ok=True)
            job = self.studio.jobs.add(Job("train", total=epochs or 0))
            self.job, self._cancelled = job, threading.Event()
            self._status = {**_idle(), "id": job.id, "state": "running", "epochs": epochs,
                            "message": "starting unetkit fit"}
            job.state = "running"
            logfile = open(out / "studio.log", "wb")  # noqa: SIM115 — the child writes it
            self.proc = subprocess.Popen(
                self.command(out, epochs, max_time), stdout=logfile, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
                env={**os.environ, "UNETKIT_PROGRESS": "plain", "PYTHONUNBUFFERED": "1"})
            logfile.close()
        threading.Thread(target=self._watch, args=(job, self.proc, out, budget),
                         name=f"unetkit-train-{job.id}", daemon=True).start()
        return job

    def command(self, out: Path, epochs: int | None, max_time: str | None) -> list[str]:
        """The fit command line: from the current model when there is one."""
        data = self.studio.data
        cmd = [self.python, "-m", "unetkit", "fit", "--data", str(data.root),
               "--format", "folder", "--format-option", "unlabelled=skip", "--out", str(out)]
        current = self.studio.models.current
        if current is not None:
            cmd += ["--init-from", str(current.path)]
        if epochs is not None:
            cmd += ["--epochs", str(epochs)]
        if max_time is not None:
            cmd += ["--max-time", max_time]
        return cmd

    def cancel(self) -> dict[str, Any]:
        """End the running job's process group; the current model stays current."""
        proc = self.proc
        if self._status["state"] == "running" and proc is not None and proc.poll() is None:
            self._cancelled.set()
            self._status["message"] = "cancelling"
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
        return self.status()

    # ------------------------------------------------------------------ watching
    def _watch(self, job: Job, proc: subprocess.Popen, out: Path, budget: float | None
               ) -> None:
        started = time.monotonic()
        term_at: float | None = None
        while proc.poll() is None:
            self._progress(job, out, started, budget)
            if self._cancelled.is_set():
                term_at = term_at or time.monotonic()
                if time.monotonic() - term_at > KILL_AFTER_S:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(POLL_S)
        self._progress(job, out, started, budget)
        try:
            self._finish(job, proc.returncode, out)
        except Exception as exc:  # noqa: BLE001 — the studio keeps its current model
            log.exception("training job %s could not be finished", job.id)
            self._end(job, "failed", f"The run finished but could not be loaded ({exc}).")

    def _progress(self, job: Job, out: Path, started: float, budget: float | None) -> None:
        row = _last_row(out / "metrics.csv")
        s = self._status
        if row:
            s["epoch"] = int(float(row.get("epoch") or 0)) + 1
            s["loss"] = _number(row.get("train/loss") or row.get("val/loss"))
            s["dice"] = _number(row.get("val/dice") or row.get("val/mean_dice"))
            job.done = s["epoch"]
        etas = []
        if s["epochs"] and row and s["epoch"]:
            elapsed = _number(row.get("elapsed_s")) or (time.monotonic() - started)
            etas.append(elapsed / s["epoch"] * max(0, s["epochs"] - s["epoch"]))
        if budget is not None:
            etas.append(max(0.0, budget - (time.monotonic() - started)))
        s["eta_s"] = round(min(etas), 1) if etas else None
        line = _last_line(out / "studio.log")
        if line and not self._cancelled.is_set():
            s["message"] = job.message = line

    def _finish(self, job: Job, code: int, out: Path) -> None:
        if self._cancelled.is_set():
            self._end(job, "cancelled", "Cancelled; the current model is unchanged.")
            return
        if code != 0 or not (out / "model").is_dir():
            why = _error_line(out / "studio.log") or f"unetkit fit ended with code {code}"
            self._end(job, "failed", f"Training failed: {why.rstrip('.')}; the current "
                                     "model is unchanged.")
            return
        self._status["message"] = job.message = "scoring the old and the new model"
        models, old = self.studio.models, self.studio.models.current
        before = self.studio.score(models.predictor_for(old)) if old is not None else None
        entry = models.add(out, current=False)
        after = self.studio.score(models.predictor_for(entry))
        entry.metrics = after
        models.make_current(entry.id)
        self._status.update(before=before, after=after, model=entry.id)
        job.result = {"model": entry.id, "run": self.studio.data.relative(out),
                      "before": before, "after": after}
        self._end(job, "done", f"Trained {entry.name}; it is the current model now.")

    def _end(self, job: Job, state: str, message: str) -> None:
        self._status.update(state=state, message=message, eta_s=None)
        job.state, job.message = state, message


def _idle() -> dict[str, Any]:
    return {"id": None, "state": "idle", "epoch": 0, "epochs": None, "loss": None,
            "dice": None, "eta_s": None, "message": "", "before": None, "after": None,
            "model": None}


def _number(text: Any) -> float | None:
    try:
        return None if text in (None, "") else round(float(text), 6)
    except (TypeError, ValueError):
        return None


def _last_row(path: Path) -> dict[str, str] | None:
    """The last complete row of metrics.csv (fit rewrites it atomically each epoch)."""
    try:
        rows = list(csv.DictReader(path.read_text().splitlines()))
    except (OSError, csv.Error):
        return None
    return rows[-1] if rows else None


def _log_lines(path: Path, tail: int = 8192) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - tail))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]


def _last_line(path: Path) -> str | None:
    lines = _log_lines(path)
    return lines[-1][:300] if lines else None


def _error_line(path: Path) -> str | None:
    """fit's own one-sentence error, else the last line of its log (e.g. a traceback's)."""
    lines = _log_lines(path)
    errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    return (errors[-1] if errors else lines[-1] if lines else None) or None
