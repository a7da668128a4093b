"""`predict --devices N`: the shard rule, rank discovery, and 2 gloo processes against one.

The spawned runs start fresh interpreters that import torch (a few seconds each), so they are
few: one end-to-end comparison and the three ways a rank can fail.
"""

from __future__ import annotations

import gzip
import os
import time
from pathlib import Path

import numpy as np
import pytest
from infer_fixtures import write_images
from PIL import Image
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.errors import UnetkitError, UsageError
from unetkit.infer import distributed as dist
from unetkit.infer.distributed import RankInfo, core_share, discover_rank, resolve_world, shard

runner = CliRunner()


# ---------------------------------------------------------------- shards


@pytest.mark.parametrize("count", [0, 1, 5, 6, 7])
@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_shards_are_disjoint_and_cover_the_inputs(count: int, world: int) -> None:
    shards = [shard(count, r, world) for r in range(world)]
    owned = [i for s in shards for i in s]
    assert sorted(owned) == list(range(count))  # every input once: covering and disjoint
    assert shards == [shard(count, r, world) for r in range(world)]  # the same on a rerun
    assert all(s == sorted(s) for s in shards)  # a rank's own order is the input order


def test_shards_of_uneven_counts_and_more_ranks_than_inputs() -> None:
    assert [shard(7, r, 3) for r in range(3)] == [[0, 3, 6], [1, 4], [2, 5]]
    assert [shard(2, r, 4) for r in range(4)] == [[0], [1], [], []]
    with pytest.raises(ValueError, match="outside a world of 2"):
        shard(5, 2, 2)


# ---------------------------------------------------------------- ranks from the environment


def test_torchrun_variables_name_the_rank() -> None:
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
           "SLURM_PROCID": "0", "SLURM_NTASKS": "8"}  # torchrun inside srun: torchrun's
    assert discover_rank(env) == RankInfo(3, 4, 1, 2, "torchrun")


def test_slurm_variables_name_the_rank() -> None:
    env = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1",
           "SLURM_TASKS_PER_NODE": "4(x2)"}
    assert discover_rank(env) == RankInfo(5, 8, 1, 4, "slurm")
    assert discover_rank({**env, "SLURM_NTASKS_PER_NODE": "2"}).local_world_size == 2


def test_no_launcher_or_one_task_means_one_process() -> None:
    assert discover_rank({}) is None
    assert discover_rank({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}) is None
    assert resolve_world(1, 1, {}) == RankInfo()
    assert resolve_world(3, 1, {}) == RankInfo(0, 3, 0, 3, "spawn")


def test_bad_launcher_variables_and_counts_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="RANK='x' is not a count"):
        discover_rank({"RANK": "x", "WORLD_SIZE": "2"})
    with pytest.raises(UsageError, match="RANK=2.*WORLD_SIZE=2"):
        discover_rank({"RANK": "2", "WORLD_SIZE": "2"})
    torchrun = {"RANK": "0", "WORLD_SIZE": "4", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2"}
    assert resolve_world(2, 2, torchrun).world_size == 4
    with pytest.raises(UsageError, match="make 3 processes, but the torchrun launcher "
                                         "started 4"):
        resolve_world(3, 1, torchrun)
    with pytest.raises(UsageError, match="--num-nodes 2 needs a launcher"):
        resolve_world(2, 2, {})
    with pytest.raises(UsageError, match="--devices 0 must be at least 1"):
        resolve_world(0, 1, {})


def test_each_local_rank_takes_its_own_cores() -> None:
    assert [core_share(range(8), r, 4, total=8) for r in range(4)] == \
        [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert core_share([0, 1, 2], 1, 2, total=3) == [1]  # the odd core stays unused
    assert core_share([4, 5], 1, 2, total=8) == [4, 5]  # a launcher bound it already
    assert core_share([0, 1], 1, 4, total=2) == [0, 1]  # more processes than cores


def test_merge_restores_input_order_and_checks_counts() -> None:
    parts = [([0, 2, 5], iter("ace")), ([1, 3], iter("bd")), ([], iter(""))]
    assert "".join(dist.merge_in_order(parts)) == "abcde"
    with pytest.raises(UnetkitError, match="another number of rows"):
        list(dist.merge_in_order([([0, 1], iter("a"))]))


# ---------------------------------------------------------------- two processes


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.slow
def test_two_processes_write_what_one_writes(tmp_path: Path, model_dir: Path) -> None:
    """Masks, maps, the RLE submission and uncertainty.csv: the same bytes."""
    images = write_images(tmp_path / "images", 6, (37, 53))
    # 6 inputs as the command line gives them: not sorted, so the merge must follow it
    args = ["predict", str(model_dir), *map(str, images[3:] + images[:3]), "--uncertainty",
            "--precision", "32"]
    one, two = tmp_path / "one", tmp_path / "two"
    first = runner.invoke(app, [*args, "--out", str(one), "--rle", str(one / "sub.csv.gz")])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, [*args, "--out", str(two), "--rle", str(two / "sub.csv.gz"),
                                 "--devices", "2"])
    assert second.exit_code == 0, second.output
    assert "Wrote 6 mask(s)" in second.stderr and "6 row(s)" in second.stderr
    a, b = _files(one), _files(two)
    assert sorted(a) == sorted(b) and len([n for n in a if n.endswith("_uncertainty.png")]) == 6
    assert not [n for n in b if ".part" in n]  # the parts were merged and removed
    for name in a:
        assert a[name] == b[name], name
    rows = gzip.decompress(b["sub.csv.gz"]).decode().splitlines()
    assert rows == gzip.decompress(a["sub.csv.gz"]).decode().splitlines()
    names = [r.split(",")[0] for r in rows[1:]]
    assert names == [f"img{i}.png" for i in (3, 4, 5, 0, 1, 2)]
    csv_names = [r.split(",")[0] for r in b["uncertainty.csv"].decode().splitlines()[1:]]
    assert csv_names == names  # input order, though ranks took every other image
    masks = [np.asarray(Image.open(two / f"img{i}.png")) for i in range(6)]
    assert all(set(np.unique(m)) == {0, 255} for m in masks)  # real masks, both classes


def rank_job(info: RankInfo, mode: str) -> list:
    """Run in the spawned ranks: rank 1 fails the way `mode` says."""
    def work() -> dict:
        if info.rank == 1:
            if mode == "error":
                raise UnetkitError("img3.png could not be written: no space left.")
            if mode == "crash":
                os._exit(3)
            if mode == "hang":
                time.sleep(120)
        return {"rank": info.rank}

    with dist.process_group(info) as group:
        return dist.finish(dist.outcome(work), info, group)


@pytest.mark.parametrize(("mode", "message"), [
    ("error", r"^Rank 1 of 2 failed: img3\.png could not be written: no space left\.$"),
    ("crash", r"^Rank 1 of 2 ended with exit code 3 before finishing"),
    pytest.param("hang", r"^Rank\(s\) 1 of 2 did not reach the end of its work within 2 s",
                 marks=pytest.mark.slow)])
def test_a_failing_rank_ends_the_run_with_its_error(mode: str, message: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(dist.TIMEOUT_ENV, "2")  # the barrier's wait, inherited by the ranks
    with pytest.raises(UnetkitError, match=message) as caught:
        dist.spawn(rank_job, (mode,), 2)
    assert caught.value.exit_code == 1


def test_spawned_ranks_return_every_status() -> None:
    assert dist.spawn(rank_job, ("ok",), 2) == [[{"rank": 0}, {"rank": 1}]] * 2


def test_rank_zero_merges_parts_in_input_order_without_skipped_files(tmp_path: Path) -> None:
    from unetkit.data.rle import read_rle_csv
    from unetkit.infer.evaluate import write_per_image
    from unetkit.infer.predict_job import PredictJob, merge_parts
    from unetkit.infer.rle import RleWriter
    from unetkit.infer.uncertainty_files import CSV_NAME

    job = PredictJob(model=tmp_path, out=tmp_path, rle=tmp_path / "sub.csv.gz",
                     uncertainty=True)
    paths = [f"in/{c}.png" for c in "abcde"]  # rank 0: a, c, e; rank 1: b, d (d was bad)
    for rank, names in ((0, "ace"), (1, "b")):
        with RleWriter(dist.part_path(job.rle, rank)) as writer:
            for n in names:
                writer.write(f"{n}.png", f"1 {ord(n)}")
        write_per_image([{"image": f"{n}.png", "mean_entropy": 0.5} for n in names],
                        dist.part_path(tmp_path / CSV_NAME, rank))
    merge_parts(job, paths, [[], [["in/d.png", "unreadable"]]], 2)
    rows = read_rle_csv(job.rle)
    assert list(rows) == ["a.png", "b.png", "c.png", "e.png"]
    assert rows["c.png"] == f"1 {ord('c')}"
    lines = (tmp_path / CSV_NAME).read_text().splitlines()
    assert [ln.split(",")[0] for ln in lines] == ["image", "a.png", "b.png", "c.png", "e.png"]
    dist.part_path(job.rle, 1).unlink()  # a node whose output folder is not shared
    with pytest.raises(UnetkitError, match="filesystem all nodes share"):
        merge_parts(job, paths, [[], [["in/d.png", "unreadable"]]], 2)


def test_only_the_first_rank_shows_progress(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture) -> None:
    from unetkit.progress import progress

    monkeypatch.setenv("UNETKIT_PROGRESS", "plain")
    for rank, lines in (("1", 0), ("0", 10)):
        monkeypatch.setenv("RANK", rank)
        assert list(progress(range(10), total=10, desc="Predicting")) == list(range(10))
        assert len(capsys.readouterr().err.splitlines()) == lines
