"""BioImage Model Zoo export: the package passes bioimageio.core's own model test, offline."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

MEAN, STD = [0.45, 0.5, 0.55], [0.2, 0.25, 0.3]


def _meta(channels: int, names: list[str]) -> dict:
    """The meta fit writes into an artifact (as tests/infer/infer_fixtures.py's fit_meta)."""
    kind = "binary" if len(names) == 2 else "index"
    return {"class_names": names, "binary": len(names) == 2, "ignore_index": None,
            "in_channels": channels,
            "normalization": {"mean": MEAN[:channels], "std": STD[:channels]},
            "input_size": [32, 32], "scale": 1.0,
            "mask_spec": {"kind": kind, "class_names": names, "ignore_index": None,
                          "value_map": None, "colors": None},
            "data_format": "folder"}


def _run(tmp_path: Path, channels: int = 1, classes: int = 1) -> Path:
    """A run directory with a tiny 'trained-ish' U-Net artifact in model/."""
    import unetkit

    torch.manual_seed(0)
    model = unetkit.build_model("unet", filters=4, depth=2, in_channels=channels,
                                classes=classes)
    names = ["background", "foreground"] if classes == 1 else [f"c{i}" for i in range(classes)]
    unetkit.save_model(model, tmp_path / "run" / "model", meta=_meta(channels, names))
    return tmp_path / "run"


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """bioimageio.core, with every HTTP request sent to a closed port (no network use)."""
    monkeypatch.setenv("BIOIMAGEIO_CACHE_PATH", str(tmp_path / "bioimageio-cache"))
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    return pytest.importorskip("bioimageio.core", reason="the bioimageio extra is not "
                               "installed (pip install 'unetkit[bioimageio]')")


def _rdf(package: Path) -> dict:
    with zipfile.ZipFile(package) as zf:
        return yaml.safe_load(zf.read("rdf.yaml"))


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_binary_package_passes_bioimageio_test(tmp_path: Path, offline) -> None:
    from unetkit.share.bioimageio import export_bioimageio, read_meta

    meta_file = tmp_path / "meta.yaml"
    meta_file.write_text("authors: [{name: Meta Author, affiliation: Lab}]\nlicense: CC-BY-4.0\n"
                         "cite: [{text: My paper, doi: 10.1000/xyz123}]\n")
    result = export_bioimageio(_run(tmp_path), tmp_path / "model.zip", authors=["Ada L"],
                               meta=read_meta(meta_file))
    assert result.weight_formats == ["pytorch_state_dict", "onnx", "torchscript"]
    rdf = _rdf(result.path)
    (inp,), (out,) = rdf["inputs"], rdf["outputs"]
    assert [p["id"] for p in inp["preprocessing"] if p["id"] != "ensure_dtype"] == \
        ["scale_linear", "fixed_zero_mean_unit_variance"]
    assert inp["preprocessing"][2]["kwargs"]["mean"] == [0.45]
    assert out["postprocessing"][0]["id"] == "sigmoid"
    assert rdf["authors"] == [{"name": "Ada L"}] and rdf["license"] == "CC-BY-4.0"
    assert rdf["cite"][0]["doi"] == "10.1000/xyz123"
    with zipfile.ZipFile(result.path) as zf:
        assert {"rdf.yaml", "README.md", "cover.png", "weights.onnx"} <= set(zf.namelist())
    summary = offline.test_model(result.path)
    assert summary.status == "passed", summary.format()


def test_multiclass_package_uses_softmax_and_model_card(tmp_path: Path, offline) -> None:
    from unetkit.share.bioimageio import export_bioimageio

    run = _run(tmp_path, channels=3, classes=3)
    (run / "model" / "README.md").write_text("# My model card\n\nTrained on cells.\n")
    result = export_bioimageio(run, tmp_path / "multi.zip")
    rdf = _rdf(result.path)
    assert rdf["outputs"][0]["postprocessing"][0]["id"] == "softmax"
    assert rdf["outputs"][0]["axes"][1]["channel_names"] == ["c0", "c1", "c2"]
    assert rdf["license"] == "MIT"
    with zipfile.ZipFile(result.path) as zf:
        assert zf.read("README.md").decode().startswith("# My model card")
    summary = offline.test_model(result.path, weight_format="onnx")
    assert summary.status == "passed", summary.format()


def test_cli_writes_package(tmp_path: Path, offline) -> None:
    from typer.testing import CliRunner

    from unetkit.cli import app

    out = tmp_path / "cli.zip"
    res = CliRunner().invoke(app, ["export", str(_run(tmp_path)), "--bioimageio", str(out),
                                   "--author", "Ada L", "--license", "BSD-3-Clause"])
    assert res.exit_code == 0, res.output
    assert _rdf(out)["license"] == "BSD-3-Clause"
    assert not (tmp_path / "run" / "model" / "model.onnx").exists()  # package only


def test_cli_without_the_extra_says_what_to_install(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from unetkit.cli import app

    monkeypatch.setitem(sys.modules, "bioimageio.spec.model", None)  # import fails
    res = CliRunner().invoke(app, ["export", str(_run(tmp_path)), "--bioimageio",
                                   str(tmp_path / "x.zip")])
    assert res.exit_code == 1
    assert "install the bioimageio extra: pip install 'unetkit[bioimageio]'" in res.output


def test_unknown_license_is_one_sentence(tmp_path: Path, offline) -> None:
    from unetkit.errors import UsageError
    from unetkit.share.bioimageio import export_bioimageio

    with pytest.raises(UsageError, match="--license NOPE is not an SPDX licence id"):
        export_bioimageio(_run(tmp_path), tmp_path / "x.zip", license="NOPE")
    assert not (tmp_path / "x.zip").exists()
