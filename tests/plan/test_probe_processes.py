"""Threads or processes: the planner's layout rule on constructed probe results, and the
process probe's own plumbing (plan/cpu_layout.py, plan/probe_processes.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from plan_fixtures import disc_masks, fake_measurements, write_pairs

from unetkit.data.prepare import prepare
from unetkit.plan import decide
from unetkit.plan.cpu_layout import Layout, layout_batch, processes_to_probe
from unetkit.plan.fingerprint import compute_fingerprint
from unetkit.plan.probe_processes import probe_processes, shard_batches
from unetkit.plan.record import FIT_FIELDS

LOADER_S = 0.02  # fake_measurements' data-pipeline cost per image, strong augmentation
STRONG = {"augment": "strong"}  # pinned, so the hand computations below use LOADER_S
STEP_1 = 0.8  # one process, one thread: a step of 32 patches


@pytest.fixture(scope="module")
def fp(tmp_path_factory):
    """40 small images: 32 train, so the planned batch is 32 (64 px patches)."""
    folder = write_pairs(tmp_path_factory.mktemp("many") / "d", disc_masks(count=40))
    return compute_fingerprint(prepare(folder), folder)


def _measured(proc_step_s: float | None, startup_s: float = 6.0, **extra):
    """One candidate timed on one process at 1 thread (faster than 2), and as 2 processes x
    1 thread with 16 patches each taking `proc_step_s` per step (None: not measured)."""
    m = fake_measurements(batch=32, step_times=(STEP_1, 2.0, 5.0))
    m.speeds = m.speeds[:1]
    m.threads, m.threads_tested = 1, {"1": STEP_1, "2": 0.9}
    if proc_step_s is not None:
        m.processes_tested = {"processes": 2, "threads_each": 1, "batch_per_process": 16,
                              "step_s": proc_step_s, "startup_s": startup_s,
                              "train_images_per_s": round(32 / proc_step_s, 3)}
    m.processes_tested.update(extra)
    return m


def test_two_processes_win_by_measured_images_per_s(fp):
    plan = decide(fp, _measured(0.45), 600, fixed=STRONG)
    # by hand: 32 / (0.8 + 32 * 0.02) = 22.22 images/s on one process, each of 2 processes
    # 16 / (0.45 + 16 * 0.02): 41.56 images/s together, 1.87x
    one, two = 32 / (STEP_1 + 32 * LOADER_S), 32 / (0.45 + 16 * LOADER_S)
    assert (round(one, 2), round(two, 2)) == (22.22, 41.56)
    assert plan.value("devices") == 2 and plan.value("batch_size") == 32
    assert plan.decisions["devices"].reason == (
        "2 processes x 1 thread: 1.9x the images/s of 1 process x 1 thread (the faster of "
        "1 and 2 threads) (measured 41.56 vs 22.22 training images/s, data loading included; "
        "DDP over gloo, 16 "
        "patches per process, effective batch 32)")
    assert plan.estimates["batch_per_process"] == 16
    assert "processes: 2 x 1 thread(s) (DDP) 71.11 train img/s, 16 patches each, 6s to " \
        "start" in plan.summary()
    cfg = plan.to_fit_config()
    assert "devices" in FIT_FIELDS and (cfg.devices, cfg.batch_size) == (2, 32)
    # the budget prices the processes' steps: the same steps per epoch (an effective batch of
    # 32 over the same patches), each step and its loading as fast as measured
    alone = decide(fp, _measured(None), 600, fixed=STRONG)
    assert alone.value("devices") == 1
    assert plan.estimates["steps_per_epoch"] == alone.estimates["steps_per_epoch"]
    assert plan.estimates["train_images_per_s"] == pytest.approx(two, abs=1e-3)
    assert alone.estimates["train_images_per_s"] == pytest.approx(one, abs=1e-3)
    assert plan.estimates["startup_s"] == alone.estimates["startup_s"] + 6.0
    assert plan.estimates["steps"] > alone.estimates["steps"]


@pytest.mark.parametrize(("proc_step_s", "startup_s", "budget", "why"), [
    (1.05, 6.0, 600, "1 process x 1 thread (the faster of 1 and 2 threads): 2 processes x 1 "
     "thread trained only 1.05x as many images/s (measured 23.36 vs 22.22 training images/s, "
     "data loading included; 1.10x needed)"),
    (0.45, 400.0, 600, "but would save ~"),
    (None, 0.0, 600, "one process: processes were not probed"),
])
def test_one_process_when_processes_do_not_pay(fp, proc_step_s, startup_s, budget, why):
    """1.05x: 32 / (1.05 + 16 * 0.02) = 23.36 images/s against 22.22 (data loading counts)."""
    plan = decide(fp, _measured(proc_step_s, startup_s), budget, fixed=STRONG)
    assert plan.value("devices") == 1
    assert plan.estimates["batch_per_process"] == plan.value("batch_size")
    assert why in plan.decisions["devices"].reason
    if startup_s == 400.0:  # 1.87x saves 1 - 1/1.87 of the 554 s training: 258 s < 400 s
        assert ("would save ~258s of the training time, less than the 400s they take to "
                "start") in plan.decisions["devices"].reason


def test_reasons_for_not_probing_and_failed_probes(fp):
    skipped = decide(fp, _measured(None, skipped="one core"), 600, fixed=STRONG)
    assert skipped.decisions["devices"].reason == "one process: one core"
    failed = _measured(None)
    failed.processes_tested = {"processes": 2, "error": "timed out after 60s"}
    assert decide(fp, failed, 600, fixed=STRONG).decisions["devices"].reason == (
        "one process: the 2-process probe failed (timed out after 60s)")
    gpu = replace(_measured(0.45), machine=replace(fake_measurements().machine,
                                                   device="cuda"))
    assert "devices" not in decide(fp, gpu, 600, fixed=STRONG).decisions  # GPUs: as the user says


def test_what_the_probe_times():
    assert processes_to_probe(2, 4, 600) == (2, "")
    assert processes_to_probe(16, 4, 600) == (2, "")  # 2 patches per process at least
    assert processes_to_probe(16, 32, 600) == (16, "")
    assert processes_to_probe(1, 32, 600)[0] == 0
    assert processes_to_probe(2, 3, 600) == (0, "a batch of 3 leaves fewer than 2 patches "
                                                "per process")
    assert "budget under 120s" in processes_to_probe(2, 8, 60)[1]
    two = Layout(2, "")
    assert [layout_batch(b, two) for b in (3, 4, 5, 9)] == [4, 4, 4, 8]


def test_shards_and_a_probe_that_cannot_start():
    x, y = torch.arange(5 * 2).view(5, 1, 1, 2).float(), torch.zeros(5, 1, 2, dtype=torch.long)
    parts = shard_batches([(x, y), (x + 100, y)], 2)
    assert [p[0][0].flatten().tolist() for p in parts] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert parts[1][1][0].flatten().tolist() == [104, 105, 106, 107]  # 5 -> 2 x 2, one left
    assert shard_batches([(x[:3], y[:3])], 2) is None
    assert probe_processes(lambda: None, [(x[:3], y[:3])], 2, cores=2)["skipped"] == (
        "a batch of 3 gives fewer than 2 patches per process")
    # a factory the processes cannot receive (a lambda) fails before any process starts
    failed = probe_processes(lambda: None, [(x, y), (x, y)], 2, cores=2, quiet=True)
    assert failed["processes"] == 2 and "pickle" in failed["error"].lower()
    assert "step_s" not in failed


@pytest.mark.slow
def test_a_real_two_process_probe():
    """Two spawned DDP processes time the planner's trainer on their halves of the batches."""
    import functools

    from unetkit.plan.probe import Candidate, CandidateTrainer

    cand = Candidate("unet-f4-d2", "unet", {"filters": 4, "depth": 2, "norm": "batch"})
    make = functools.partial(CandidateTrainer, cand, 1, 1, 2, torch.device("cpu"), "32")
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(4, 1, 32, 32, generator=gen),
                (torch.rand(4, 32, 32, generator=gen) > 0.5).long()) for _ in range(3)]
    out = probe_processes(make, batches, 2, cores=2, quiet=True)
    assert "error" not in out, out
    assert (out["processes"], out["threads_each"], out["batch_per_process"]) == (2, 1, 2)
    assert out["step_s"] > 0 and out["startup_s"] > 0
    step = out["step_s"]  # kept to 4 decimals; images/s comes from the unrounded step
    assert out["train_images_per_s"] == pytest.approx(4 / step, abs=4 / (step - 5e-5) - 4 / step)


def test_layout_compares_against_the_candidate_the_processes_ran():
    """The processes were probed on the second candidate (a scene encoder): their images/s
    are compared with that candidate's own one-process speed, not the first one's."""
    from unetkit.plan.cpu_layout import images_per_s, layout_speed

    m = fake_measurements(batch=32, step_times=(0.1, 2.0, 5.0))  # the first is 20x faster
    m.processes_tested = {"processes": 2, "threads_each": 1, "batch_per_process": 16,
                          "step_s": 1.5, "startup_s": 1.0, "key": m.speeds[1].key}
    assert layout_speed(m) is m.speeds[1]
    one, many = images_per_s(m, "default")
    assert one == pytest.approx(32 / (2.0 + 32 * 0.005))
    assert many == pytest.approx(32 / (1.5 + 16 * 0.005))
    m.processes_tested.pop("key")  # plans recorded before the key: the first candidate
    assert layout_speed(m) is m.speeds[0]
