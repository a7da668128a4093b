"""Faults while writing: what is on disk afterwards is complete or absent, never half-written,
and the message is one sentence naming the path."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from unetkit import build_model, load_model, save_model
from unetkit.cli import app
from unetkit.errors import UnetkitError
from unetkit.io_utils import atomic_write_text, remove_stale_temps
from unetkit.train.callbacks import AtomicCheckpointIO

runner = CliRunner()


def _env() -> dict[str, str]:
    """The environment at call time (the suite's isolated UNETKIT_CACHE included)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "UNETKIT_PROGRESS": "plain"}


def _tiny(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("unet", in_channels=1, classes=1, filters=4, depth=2)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _python_killed(code: str) -> None:
    """Run `code` in a fresh interpreter that SIGKILLs itself where the code says so."""
    proc = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


KILL = "import os, signal\ndef die(*a, **k):\n    os.kill(os.getpid(), signal.SIGKILL)\n"


def test_kill_during_artifact_weights_write_keeps_the_old_artifact(tmp_path: Path) -> None:
    save_model(_tiny(0), tmp_path / "model")
    _python_killed(KILL + f"""
import safetensors.torch, unetkit
from unetkit.models import artifact
def half(state, path, metadata=None):
    open(path, "wb").write(b"partial")
    die()
artifact.save_file = half
torch = __import__("torch"); torch.manual_seed(1)
unetkit.save_model(unetkit.build_model("unet", in_channels=1, classes=1, filters=4, depth=2),
                   {str(tmp_path / "model")!r})
""")
    assert _same(load_model(tmp_path / "model"), _tiny(0))
    assert remove_stale_temps(tmp_path / "model")  # the torn temp file, never read
    assert not list((tmp_path / "model").glob(".*"))


def test_kill_between_weights_and_config_gives_the_new_model_whole(tmp_path: Path) -> None:
    save_model(_tiny(0), tmp_path / "model", {"best_epoch": 1})
    _python_killed(KILL + f"""
import unetkit
from unetkit.models import artifact
artifact.atomic_write_text = die   # after the weights landed, before config.json
torch = __import__("torch"); torch.manual_seed(1)
unetkit.save_model(unetkit.build_model("unet", in_channels=1, classes=1, filters=4, depth=2),
                   {str(tmp_path / "model")!r}, {{"best_epoch": 7}})
""")
    model = load_model(tmp_path / "model")
    assert _same(model, _tiny(1)) and model.unetkit_meta["best_epoch"] == 7  # a matched pair


def test_kill_during_checkpoint_write_leaves_the_last_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"epoch": 3, "w": torch.ones(4)}, path)
    _python_killed(KILL + f"""
import torch
from unetkit.train import callbacks
def half(obj, f):
    f.write(b"torn"); f.flush(); die()
callbacks.torch.save = half
callbacks.AtomicCheckpointIO().save_checkpoint({{"epoch": 4}}, {str(path)!r})
""")
    assert torch.load(path, weights_only=False)["epoch"] == 3
    assert len(remove_stale_temps(tmp_path)) == 1


def test_disk_full_names_the_file_and_keeps_the_previous_version(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_model(_tiny(0), tmp_path / "model")
    from unetkit.models import artifact

    def full(state, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"x" * 10)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(artifact, "save_file", full)
    with pytest.raises(UnetkitError) as err:
        save_model(_tiny(1), tmp_path / "model")
    assert str(err.value) == (f"Could not write {tmp_path / 'model' / 'model.safetensors'}: no "
                              f"space left on the device; nothing was replaced.")
    assert _same(load_model(tmp_path / "model"), _tiny(0))
    assert not list((tmp_path / "model").glob(".*"))  # the partial temp file is gone


def test_read_only_folder_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    def denied(*args, **kwargs):
        raise PermissionError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(UnetkitError, match=r"Could not write .*notes\.txt: permission denied "
                                           r"\(the folder is read-only\)\."):
        atomic_write_text(tmp_path / "notes.txt", "x")


def test_out_that_is_a_file_is_one_sentence(tmp_path: Path) -> None:
    save_model(_tiny(0), tmp_path / "run" / "model")
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(images / "a.png")
    (tmp_path / "taken").write_text("not a folder")
    res = runner.invoke(app, ["predict", str(tmp_path / "run"), str(images), "--out",
                              str(tmp_path / "taken" / "masks")])
    assert res.exit_code == 1
    assert res.stderr.strip() == (f"error: --out {tmp_path / 'taken' / 'masks'} cannot be "
                                  f"created: {tmp_path / 'taken'} is a file, not a folder.")
    assert (tmp_path / "taken").read_text() == "not a folder"


def test_rewrite_clears_the_temp_a_killed_writer_left_but_not_a_live_one(tmp_path: Path) -> None:
    """A re-run rewriting a file removes its dead writer's temp; live writers keep theirs."""
    from unetkit.io_utils import _HOST

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    stale = tmp_path / f".m.png.{_HOST}-{int(dead.stdout)}.abc.tmp"
    live = tmp_path / f".m.png.{_HOST}-{os.getpid()}.def.tmp"
    elsewhere = tmp_path / f".m.png.{_HOST}x-{int(dead.stdout)}.ghi.tmp"  # another node
    other_file = tmp_path / f".n.png.{_HOST}-{int(dead.stdout)}.jkl.tmp"
    for p in (stale, live, elsewhere, other_file):
        p.write_text("partial")
    atomic_write_text(tmp_path / "m.png", "whole")
    assert (tmp_path / "m.png").read_text() == "whole"
    assert not stale.exists() and live.exists() and elsewhere.exists() and other_file.exists()


def _folder_of_images(folder: Path, n: int) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (160, 160), dtype=np.uint8)).save(
            folder / f"im{i:03d}.png")


@pytest.mark.slow
def test_predict_killed_mid_folder_leaves_whole_masks_and_no_rle(tmp_path: Path) -> None:
    save_model(_tiny(0), tmp_path / "run" / "model")
    images, out = tmp_path / "images", tmp_path / "masks"
    _folder_of_images(images, 60)
    cmd = [sys.executable, "-m", "unetkit.cli", "predict", str(tmp_path / "run"), str(images),
           "--out", str(out), "--rle", str(tmp_path / "sub.csv.gz"), "--precision", "32"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(out.glob("*.png"))) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = sorted(out.glob("im*.png"))
    assert proc.returncode == -signal.SIGKILL and 5 <= len(written) < 60
    assert not (tmp_path / "sub.csv.gz").exists()  # the submission appears only complete
    first = {p.name: np.asarray(Image.open(p)) for p in written}  # each decodes whole
    # re-running writes every mask again (existing ones are overwritten, identically)
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(list(out.glob("im*.png"))) == 60 and not list(out.glob(".*"))
    for name, mask in first.items():
        assert np.array_equal(mask, np.asarray(Image.open(out / name))), name
    import gzip

    with gzip.open(tmp_path / "sub.csv.gz", "rt") as f:
        assert len(f.read().splitlines()) == 61  # header + one row per image


def test_half_built_or_damaged_cache_is_rebuilt(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from unetkit.data.cache import build_cache, cache_root
    from unetkit.data.formats import open_dataset
    from unetkit.data.prepare import prepare
    from unetkit.data.synthetic import write_folder

    monkeypatch.setenv("UNETKIT_CACHE", str(tmp_path / "cache"))  # this test's cache only
    data = write_folder(tmp_path / "data", count=6, size=(32, 32), channels=1, seed=0)
    _python_killed(KILL + f"""
from unetkit.data import cache
real = cache._safe_load
calls = []
def load(*a):
    calls.append(1)
    if len(calls) == 4:
        die()
    return real(*a)
cache._safe_load = load
from unetkit.data.prepare import prepare
prepare({str(data)!r})
""")
    assert cache_root() == tmp_path / "cache"
    assert not any((d / "index.json").is_file() for d in cache_root().iterdir())  # no cache
    prepared = prepare(data)
    assert len(prepared.cache) == 6
    directory = prepared.cache.directory
    good = prepared.cache.image(5).copy()
    with open(directory / "images.u8", "r+b") as f:  # damaged: e.g. the disk filled up
        f.truncate(100)
    spec = open_dataset(data)
    rebuilt = build_cache(spec.samples, prepared.mask, quiet=True)
    assert np.array_equal(rebuilt.image(5), good)
