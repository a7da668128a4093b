"""`bench speed`'s train_processes: one process at 1 and all threads against the planner's
process probe (plan/probe_processes.py, timed for real in tests/plan/test_probe_processes.py;
here a recorded result stands in for it, so the arithmetic can be checked exactly)."""

from __future__ import annotations

import pytest
import torch

from unetkit.bench.speed import SpeedOptions
from unetkit.bench.speed_table import processes_line
from unetkit.bench.threads import train_processes


def test_train_processes_compares_one_process_with_the_probe(monkeypatch):
    import unetkit.plan.probe_processes as pp
    import unetkit.train.parallel as parallel

    calls = []

    def recorded(make, batches, n, cores, quiet=False):
        calls.append((n, cores, len(batches), tuple(batches[0][0].shape)))
        trainer = make()  # the factory builds the planner's CandidateTrainer
        assert trainer.parameters > 0 and trainer.module.channels_last is False
        return {"processes": n, "threads_each": 1, "batch_per_process": 2, "step_s": 0.05,
                "startup_s": 5.5, "train_images_per_s": 80.0}

    monkeypatch.setattr(pp, "probe_processes", recorded)
    monkeypatch.setattr(parallel, "usable_cores", lambda: 2)
    opts = SpeedOptions(batch=4, size=[32, 32], quick=True, quiet=True).resolved()
    before = torch.get_num_threads()
    out = train_processes(torch.device("cpu"), opts)
    assert torch.get_num_threads() == before  # the bench restores the thread count
    assert calls == [(2, 2, 5, (4, 3, 32, 32))]  # warm-up + 4 timed batches of 4
    ones = [out["1_process_1_thread_ips"], out["1_process_2_threads_ips"]]
    assert all(v > 0 for v in ones)
    assert (out["processes"], out["batch_per_process"], out["2_processes_ips"]) == (2, 2, 80.0)
    # the ratio is rounded to 3 decimals from the unrounded rates, which the JSON shows to
    # significant figures only: both roundings are allowed for
    assert out["ratio_2_processes_vs_best_1_process"] == pytest.approx(80.0 / max(ones),
                                                                       rel=2e-3, abs=5.01e-4)
    line = processes_line(out)
    assert line.startswith("train_processes (unet, 16 filters, depth 4, batch norm (fit's CPU "
                           "default), batch 4): 1 process: 1 thread(s) ")
    assert line.endswith(f"2 processes x 1 thread(s): 80 img/s, "
                         f"{out['ratio_2_processes_vs_best_1_process']:.2f}x the best single "
                         "process (start-up 6s)")


def test_train_processes_says_why_not(monkeypatch):
    import unetkit.train.parallel as parallel

    monkeypatch.setattr(parallel, "usable_cores", lambda: 1)
    out = train_processes(torch.device("cpu"), SpeedOptions(batch=4, size=[32, 32]).resolved())
    assert out["skipped"] == "1 core(s), batch 4: nothing to split"
    assert processes_line(out).endswith("processes not measured: 1 core(s), batch 4: nothing "
                                        "to split")
