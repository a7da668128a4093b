"""Background jobs: predicting folders in a thread, training in a subprocess (a real tiny
retrain, a cancel, a crash), with the server and its current model working throughout."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from PIL import Image
from serve_fixtures import SIZE, client, make_data, make_model, read_png

from unetkit.serve.training import Trainer


def wait_for(c, url: str, states: tuple[str, ...], timeout: float = 240.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = c.get(url).json()
        if status["state"] in states:
            return status
        time.sleep(0.2)
    raise AssertionError(f"{url} never reached {states}: {status}")


@pytest.fixture
def setup(tmp_path):
    data = make_data(tmp_path / "data")
    with client(data, make_model(tmp_path / "run")) as c:
        yield c, data


def test_predict_job_fills_the_cache(setup):
    c, _ = setup
    job = c.post("/api/jobs/predict", json={"folder": None}).json()
    status = wait_for(c, f"/api/jobs/{job['id']}", ("done", "failed"))
    model = c.get("/api/info").json()["model"]["id"]
    assert status["state"] == "done" and status["kind"] == "predict"
    assert (status["done"], status["total"]) == (6, 6)
    assert status["result"] == {"model": model, "predicted": 6, "skipped": []}
    assert len(c.app.state.studio.predictions) == 6


def test_predict_job_on_a_folder_writes_masks(setup):
    c, data = setup
    (data / "new").mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((*SIZE, 3), 90, np.uint8)).save(data / "new" / name)
    (data / "new" / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    job = c.post("/api/jobs/predict", json={"folder": "new"}).json()
    status = wait_for(c, f"/api/jobs/{job['id']}", ("done", "failed"))
    model = c.get("/api/info").json()["model"]["id"]
    out = f".unetkit/predictions/{model}/new"
    assert status["state"] == "done" and status["result"]["out"] == out
    assert status["result"]["written"] == 2 and len(status["result"]["skipped"]) == 1
    assert sorted(p.name for p in (data / out).iterdir()) == ["a.png", "b.png"]
    assert np.asarray(Image.open(data / out / "a.png")).shape == SIZE
    missing = c.post("/api/jobs/predict", json={"folder": "nothing"})
    assert missing.status_code == 404 and "'nothing' is not a folder" in missing.json()["detail"]
    assert c.get("/api/jobs/unknown").status_code == 404


def test_training_refused_with_too_few_masks_and_while_running(tmp_path):
    data = make_data(tmp_path / "data", labelled=1)
    with client(data) as c:
        r = c.post("/api/train", json={"epochs": 1})
        assert r.status_code == 400
        assert r.json() == {"detail": "Training needs at least 2 labelled images; 1 is "
                                      "labelled."}
        c.app.state.studio.training._status["state"] = "running"
        r = c.post("/api/train", json={})
        assert r.status_code == 409 and "already running" in r.json()["detail"]


def test_training_command_fine_tunes_the_current_model(setup):
    c, data = setup
    studio = c.app.state.studio
    cmd = Trainer(studio, "python").command(data / "out", None, "1m")
    assert cmd == ["python", "-m", "unetkit", "fit", "--data", str(data), "--format",
                   "folder", "--format-option", "unlabelled=skip", "--out", str(data / "out"),
                   "--init-from", str(studio.models.current.path), "--max-time", "1m"]


@pytest.mark.slow
def test_retrain_through_the_api(setup):
    """A real 1-epoch fine-tune: the new model becomes current, with before/after scores."""
    c, data = setup
    before_id = c.get("/api/info").json()["model"]["id"]
    job = c.post("/api/train", json={"epochs": 1}).json()
    running = c.get("/api/train").json()
    assert running["id"] == job["id"] and running["state"] in ("running", "done")
    status = wait_for(c, "/api/train", ("done", "failed", "cancelled"))
    assert status["state"] == "done", status
    assert status["epoch"] == 1 and status["epochs"] == 1 and status["loss"] is not None
    for key in ("before", "after"):
        assert status[key]["images"] == 3 and 0 <= status[key]["dice"] <= 1
    info = c.get("/api/info").json()
    assert info["model"]["id"] == status["model"] != before_id
    models = c.get("/api/models").json()
    assert [m["id"] for m in models["models"]] == [before_id, status["model"]]
    assert models["models"][1]["metrics"] == status["after"]
    assert models["models"][1]["path"].startswith(str(data / ".unetkit" / "runs"))
    job_status = c.get(f"/api/jobs/{job['id']}").json()
    assert job_status["kind"] == "train" and job_status["state"] == "done"
    assert read_png(c.get("/api/images/im4.png/prediction").content).shape == SIZE


def test_cancel_ends_the_process_group_and_keeps_the_model(setup):
    c, _ = setup
    before = c.get("/api/info").json()["model"]["id"]
    c.post("/api/train", json={"max_time": "10m"})
    pid = c.app.state.studio.training.proc.pid
    status = c.post("/api/train/cancel").json()
    assert status["state"] == "running" and status["message"] == "cancelling"
    status = wait_for(c, "/api/train", ("done", "failed", "cancelled"), timeout=60)
    assert status["state"] == "cancelled"
    assert status["message"] == "Cancelled; the current model is unchanged."
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the whole group is gone
    assert c.get("/api/info").json()["model"]["id"] == before
    assert c.get("/api/images/im0.png/prediction").status_code == 200


def test_a_crashing_fit_leaves_the_server_working(setup):
    c, data = setup
    before = c.get("/api/info").json()["model"]["id"]
    for i in range(3):  # every mask the wrong size: fit has nothing to train on
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(data / "masks" / f"im{i}_mask.png")
    c.post("/api/train", json={"epochs": 1})
    status = wait_for(c, "/api/train", ("done", "failed", "cancelled"), timeout=120)
    assert status["state"] == "failed"
    assert status["message"].startswith("Training failed: ") and "mask size mismatch" in \
        status["message"] and status["message"].endswith("the current model is unchanged.")
    assert c.get("/api/info").json()["model"]["id"] == before
    assert c.get("/api/images/im4.png/prediction").status_code == 200
    assert c.post("/api/train/cancel").json()["state"] == "failed"  # nothing left to cancel


def test_stopping_the_server_ends_its_training_process(tmp_path):
    data = make_data(tmp_path / "data")
    with client(data, make_model(tmp_path / "run")) as c:
        c.post("/api/train", json={"max_time": "10m"})
        proc = c.app.state.studio.training.proc
    assert proc.wait(timeout=60) != 0  # ended by the server's shutdown, not by finishing
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)


@pytest.mark.slow
def test_first_model_from_partial_masks_in_a_flat_folder(tmp_path):
    """No model yet: a few strokes saved through the API train the first model."""
    from serve_fixtures import blob, png_bytes

    data = make_data(tmp_path / "flat", labelled=0, flat=True)
    with client(data) as c:
        for i in range(3):
            strokes = np.full(SIZE, 255, np.uint8)
            strokes[::4] = blob(i)[::4]  # every fourth row annotated
            assert c.put(f"/api/images/im{i}.png/mask", content=png_bytes(strokes),
                         headers={"Content-Type": "image/png"}).status_code == 200
        c.post("/api/train", json={"epochs": 1})
        status = wait_for(c, "/api/train", ("done", "failed", "cancelled"))
        assert status["state"] == "done", status
        assert status["before"] is None and status["after"]["images"] == 3
        info = c.get("/api/info").json()
        assert info["model"]["id"] == status["model"]
        assert info["model"]["classes"] == ["background", "foreground"]
        assert read_png(c.get("/api/images/im5.png/prediction").content).shape == SIZE
