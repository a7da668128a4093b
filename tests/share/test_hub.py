"""Hub repos against a file-based stand-in, never the internet: push -> hf:// load is
bit-exact, every MODEL argument takes hf://, and offline with nothing cached is one sentence."""

from __future__ import annotations

import fnmatch
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.config import FitConfig
from unetkit.data.synthetic import write_folder
from unetkit.errors import UnetkitError, UsageError
from unetkit.models.artifact import load_model
from unetkit.models.remote import hub_reference
from unetkit.pipeline import run_fit
from unetkit.share.hub import push_model


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hub")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNETKIT_CACHE", str(root / "cache"))
        data = write_folder(root / "data", count=6, size=(40, 40), channels=1)
        config = FitConfig(data=str(data), epochs=1, size=[32, 32], batch_size=2,
                           model_options={"filters": 4, "depth": 2}, out=str(root / "run"))
        return run_fit(config, quiet=True).run_dir


@dataclass
class FakeHub:
    root: Path
    calls: dict[str, object] = field(default_factory=dict)


@pytest.fixture
def remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    """A fake hub: repos are folders under `remote`, downloads copy into a fake cache."""
    hub, cache = tmp_path / "remote", tmp_path / "hf-cache"
    calls: dict[str, object] = {}

    def create_repo(self, repo_id, private=False, exist_ok=False, repo_type=None, **kw):
        (hub / repo_id).mkdir(parents=True, exist_ok=exist_ok)
        calls["private"] = private
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, repo_id, folder_path, repo_type=None, allow_patterns=None, **kw):
        for f in Path(folder_path).iterdir():
            if allow_patterns is None or any(fnmatch.fnmatch(f.name, p) for p in allow_patterns):
                shutil.copy2(f, hub / repo_id / f.name)

    def snapshot_download(repo_id, revision=None, allow_patterns=None, **kw):
        calls["revision"] = revision
        target = cache / repo_id / (revision or "main")
        if not target.exists():
            shutil.copytree(hub / repo_id, target)
        return str(target)

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    hub.mkdir()
    return FakeHub(hub, calls)


def test_push_then_load_is_bit_exact(run_dir: Path, remote: FakeHub) -> None:
    result = push_model(run_dir, "alice/membrane-unet", private=True, quiet=True)
    assert sorted(result.files) == ["README.md", "config.json", "model.safetensors"]
    assert remote.calls["private"] is True
    assert sorted(p.name for p in (remote.root / "alice/membrane-unet").iterdir()) == \
        sorted(result.files)
    local, pulled = load_model(run_dir), load_model("hf://alice/membrane-unet@v1")
    assert remote.calls["revision"] == "v1"
    a, b = local.state_dict(), pulled.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert pulled.unetkit_meta == local.unetkit_meta
    assert pulled.unetkit_arch == local.unetkit_arch


def test_cli_push_with_onnx_and_predict_evaluate_export_from_hf(
        run_dir: Path, remote: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    pushed = runner.invoke(app, ["push", str(run_dir), "bob/seg", "--onnx"])
    assert pushed.exit_code == 0, pushed.output
    assert (remote.root / "bob/seg" / "model.onnx").is_file()
    image = tmp_path / "img.png"
    Image.fromarray(np.full((40, 40), 120, np.uint8)).save(image)
    out = tmp_path / "masks"
    done = runner.invoke(app, ["predict", "hf://bob/seg", str(image), "--out", str(out),
                               "--engine", "onnx"])
    assert done.exit_code == 0, done.output
    assert list(out.glob("*.png"))
    monkeypatch.chdir(tmp_path)
    data = FitConfig.load(run_dir / "config.yaml").data
    scored = runner.invoke(app, ["evaluate", "hf://bob/seg", "--data", data, "--split",
                                 "all", "--json"])
    assert scored.exit_code == 0, scored.output
    assert (tmp_path / "eval" / "metrics.json").is_file()  # not inside the hub cache
    exported = runner.invoke(app, ["export", "hf://bob/seg"])
    assert exported.exit_code == 0, exported.output
    assert (tmp_path / "seg.onnx").is_file()


def test_hub_references_parse_and_refuse_bad_names() -> None:
    assert hub_reference("hf://a/b") == ("a/b", None)
    assert hub_reference(Path("hf://a/b-c.d@v2")) == ("a/b-c.d", "v2")  # Path collapses //
    assert hub_reference("runs/demo") is None
    with pytest.raises(UsageError, match="OWNER/NAME"):
        hub_reference("hf://just-a-name")


def test_offline_with_nothing_cached_says_what_to_do(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(UnetkitError, match="HF_HUB_OFFLINE") as err:
        load_model("hf://nobody/nothing")
    assert "\n" not in str(err.value)
