"""Background jobs: a record per job (progress, rate, ETA, result) and predict-folder jobs.

A predict job runs in a thread and takes the model one image at a time through the same
queue as the page's requests, so the studio stays responsive while it works. Training
runs in a subprocess (training.py) and reports through the same record.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from unetkit.data.formats.folder import list_images, no_images_message
from unetkit.errors import UnetkitError
from unetkit.serve.dataset import StudioData
from unetkit.serve.errors import NotFound
from unetkit.serve.models import ModelStore, Prediction
from unetkit.serve.security import check_name, inside

log = logging.getLogger("unetkit.serve")
KEEP_JOBS = 100  # finished jobs remembered for GET /api/jobs/{id}


@dataclass
class Job:
    """What GET /api/jobs/{id} reports."""

    kind: str
    total: int = 0
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    state: str = "queued"
    done: int = 0
    message: str = ""
    result: dict[str, Any] | None = None
    started: float = field(default_factory=time.monotonic)

    def as_dict(self) -> dict[str, Any]:
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if self.done and elapsed > 0 else None
        eta = (self.total - self.done) / rate if rate and self.total else None
        return {"id": self.id, "kind": self.kind, "state": self.state, "done": self.done,
                "total": self.total, "rate": None if rate is None else round(rate, 3),
                "eta_s": None if eta is None else round(eta, 1), "message": self.message,
                "result": self.result}


class JobRegistry:
    """Jobs by id; the oldest finished ones are forgotten beyond KEEP_JOBS."""

    def __init__(self) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, job: Job) -> Job:
        with self._lock:
            self._jobs[job.id] = job
            finished = [k for k, j in self._jobs.items() if j.state not in ("queued",
                                                                           "running")]
            for key in finished[:max(0, len(self._jobs) - KEEP_JOBS)]:
                del self._jobs[key]
        return job

    def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"No job with id {job_id!r}.")
        return job


class Studio(Protocol):
    """What jobs use of the studio (state.Studio, which imports this module)."""

    data: StudioData
    models: ModelStore
    jobs: JobRegistry

    def prediction(self, image: Any, wait: bool = False) -> Prediction: ...

    def score(self, predictor: Any) -> dict[str, Any] | None: ...


def run_job(job: Job, work: Callable[[Job], dict[str, Any]]) -> threading.Thread:
    """Run `work(job)` in a daemon thread; its dict becomes the result, an error the
    message (a bug is logged with its traceback and reported in one sentence)."""

    def target() -> None:
        job.state = "running"
        try:
            job.result = work(job)
            job.state = "done"
        except UnetkitError as exc:
            job.state, job.message = "failed", str(exc)
        except Exception as exc:  # noqa: BLE001 — the job fails, the server keeps serving
            log.exception("job %s failed", job.id)
            job.state, job.message = "failed", f"Internal error ({type(exc).__name__}); " \
                                               "see the server log."

    thread = threading.Thread(target=target, name=f"unetkit-job-{job.id}", daemon=True)
    thread.start()
    return thread


def start_predict(studio: Studio, folder: str | None) -> Job:
    """Predict the data set's images (into the cache) or a folder inside the data folder
    (masks under .unetkit/predictions/<model id>/<folder>/)."""
    entry, predictor = studio.models.require()
    if folder is None:
        images = studio.data.images()
        job = studio.jobs.add(Job("predict", total=len(images)))
        run_job(job, lambda j: _predict_dataset(studio, images, j))
        return job
    check_name(folder, "Folder")
    path = inside(studio.data.root / folder, studio.data.root, "The folder")
    if not path.is_dir():
        raise NotFound(f"{folder!r} is not a folder inside {studio.data.root}.")
    files = list_images(path)
    if not files:
        raise UnetkitError(no_images_message(path))
    out = studio.data.work / "predictions" / entry.id / folder
    job = studio.jobs.add(Job("predict", total=len(files)))
    run_job(job, lambda j: _predict_folder(studio, predictor, files, out, j))
    return job


def _predict_dataset(studio: Studio, images: list, job: Job) -> dict[str, Any]:
    skipped = []
    for image in images:
        try:
            studio.prediction(image, wait=True)
        except UnetkitError as exc:
            skipped.append([image.name, str(exc)])
        job.done += 1
    return {"model": studio.models.require()[0].id, "predicted": job.done - len(skipped),
            "skipped": skipped}


def _predict_folder(studio: Studio, predictor: Any, files: list[Path], out: Path,
                    job: Job) -> dict[str, Any]:
    from unetkit.infer.batch import predict_files

    written, skipped = 0, []
    for path in files:
        with studio.models.turn(wait=True):
            result = predict_files(predictor, [path], out, quiet=True)
        written += len(result.written)
        skipped += [list(s) for s in result.skipped]
        job.done += 1
    return {"out": studio.data.relative(out), "written": written, "skipped": skipped}
