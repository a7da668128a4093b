"""A calibrated model's BioImage Model Zoo package: the temperature is a postprocessing step
(scale_linear, gain 1/T, before the sigmoid), the weights stay raw, and the package's own
test (bioimageio.core) agrees with its test tensors."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_calibrated_package_divides_by_the_temperature(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIOIMAGEIO_CACHE_PATH", str(tmp_path / "bioimageio-cache"))
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # no network use
    core = pytest.importorskip("bioimageio.core", reason="the bioimageio extra is not "
                               "installed (pip install 'unetkit[bioimageio]')")
    import unetkit
    from unetkit.share.bioimageio import export_bioimageio

    torch.manual_seed(0)
    model = unetkit.build_model("unet", filters=4, depth=2, in_channels=1, classes=1)
    meta = {"normalization": {"mean": [0.5], "std": [0.25]}, "input_size": [32, 32],
            "temperature": 2.5}
    unetkit.save_model(model, tmp_path / "run" / "model", meta=meta)
    result = export_bioimageio(tmp_path / "run", tmp_path / "cal.zip")
    with zipfile.ZipFile(result.path) as zf:
        rdf = yaml.safe_load(zf.read("rdf.yaml"))
        raw = np.load(io.BytesIO(zf.read("test_input.npy")))
        probs = np.load(io.BytesIO(zf.read("test_output.npy")))
    post = rdf["outputs"][0]["postprocessing"]
    assert [p["id"] for p in post][:2] == ["scale_linear", "sigmoid"]
    assert post[0]["kwargs"]["gain"] == pytest.approx(1 / 2.5)
    with torch.no_grad():  # the raw network's logits / T, through a sigmoid
        x = (torch.from_numpy(raw) / 255 - 0.5) / 0.25
        want = torch.sigmoid(model.eval()(x) / 2.5).numpy()
    np.testing.assert_allclose(probs, want, atol=1e-4)
    summary = core.test_model(result.path)
    assert summary.status == "passed", summary.format()
