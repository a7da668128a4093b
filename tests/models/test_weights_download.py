"""Pretrained weights download into the standard caches when they can (tested against a
server on loopback, never the internet), are verified, reused, and offline say where to go."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torchvision.models import mobilenet_v2

from unetkit import build_model
from unetkit.errors import UnetkitError
from unetkit.models import mobilenet_unet


class _Files(http.server.BaseHTTPRequestHandler):
    """Serves `files` (name -> bytes) the way torch hub and the Hugging Face hub expect."""

    files: dict[str, bytes] = {}
    requests: list[str] = []

    def _headers(self) -> bytes | None:
        name = self.path.rsplit("/", 1)[-1]
        self.requests.append(f"{self.command} {self.path}")
        data = self.files.get(name)
        if data is None:
            self.send_response(404)
            self.end_headers()
            return None
        sha = hashlib.sha256(data).hexdigest()
        self.send_response(200)
        for key, value in (("Content-Length", str(len(data))), ("X-Repo-Commit", "a" * 40),
                           ("ETag", f'"{sha}"'), ("X-Linked-Etag", f'"{sha}"'),
                           ("X-Linked-Size", str(len(data)))):
            self.send_header(key, value)
        self.end_headers()
        return data

    def do_HEAD(self) -> None:  # noqa: N802 — http.server's naming
        self._headers()

    def do_GET(self) -> None:  # noqa: N802
        data = self._headers()
        if data is not None:
            self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(weight_caches: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.delenv("HF_HUB_OFFLINE")  # the caches stay the empty temporary ones
    _Files.files, _Files.requests = {}, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


def _mobilenet_file() -> tuple[str, bytes, dict[str, torch.Tensor]]:
    torch.manual_seed(3)
    state = mobilenet_v2(weights=None).state_dict()
    path = Path(torch.hub.get_dir()) / "served.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    data = path.read_bytes()
    path.unlink()
    return f"mobilenet_v2-{hashlib.sha256(data).hexdigest()[:8]}.pth", data, state


def test_mobilenet_weights_download_verify_and_reuse(server: str, weight_caches: dict,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    name, data, state = _mobilenet_file()
    _Files.files[name] = data
    monkeypatch.setattr(mobilenet_unet, "imagenet_weights_url", lambda: f"{server}/{name}")
    model = build_model("mobilenet_v2-unet")  # "imagenet" is the default
    assert torch.equal(model.encoder[0][0].weight, state["features.0.0.weight"])
    assert (weight_caches["checkpoints"] / name).read_bytes() == data  # torch hub's cache
    _Files.files.clear()  # the second build reads the cache, the server is not asked
    build_model("mobilenet_v2-unet")
    assert sum(r.startswith("GET") for r in _Files.requests) == 1


def test_a_download_that_fails_its_hash_is_refused(server: str, weight_caches: dict,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   one_sentence) -> None:
    name, data, _ = _mobilenet_file()
    wrong = "mobilenet_v2-00000000.pth"
    _Files.files[wrong] = data
    monkeypatch.setattr(mobilenet_unet, "imagenet_weights_url", lambda: f"{server}/{wrong}")
    with pytest.raises(UnetkitError) as info:
        build_model("mobilenet_v2-unet")
    message = str(info.value)
    assert message.startswith("ImageNet weights for the mobilenet_v2 encoder could not be "
                              "downloaded (")
    assert str(weight_caches["checkpoints"] / wrong) in message
    one_sentence(message)
    assert not (weight_caches["checkpoints"] / wrong).exists()  # nothing unverified kept


def test_offline_says_which_file_goes_where(weight_caches: dict, one_sentence,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("UNETKIT_OFFLINE", "1")
    with pytest.raises(UnetkitError) as info:
        build_model("mobilenet_v2-unet")
    message = str(info.value)
    assert "downloads are off" in message and mobilenet_unet.IMAGENET_WEIGHTS.url in message
    one_sentence(message)


def test_timm_weights_come_from_the_hugging_face_hub(server: str, weight_caches: dict,
                                                     tmp_path: Path) -> None:
    """In a fresh process with HF_ENDPOINT at the loopback server, as a user would set it."""
    import os
    import subprocess
    import sys

    import timm
    from safetensors.torch import save

    torch.manual_seed(4)
    state = timm.create_model("mobilenetv2_100", pretrained=False).state_dict()
    _Files.files["model.safetensors"] = save({k: v.contiguous() for k, v in state.items()})
    code = ("import sys, torch, unetkit; m = unetkit.build_model('timm-unet', "
            "encoder='mobilenetv2_100'); torch.save(m.encoder.conv_stem.weight, sys.argv[1])")
    env = {**os.environ, "HF_ENDPOINT": server, "HF_HUB_CACHE": str(weight_caches["hf"])}
    env.pop("HF_HUB_OFFLINE", None)
    out = tmp_path / "conv1.pt"
    done = subprocess.run([sys.executable, "-c", code, str(out)], env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert torch.equal(torch.load(out), state["conv_stem.weight"])
    cfg = timm.models.get_pretrained_cfg("mobilenetv2_100")
    assert any(r.startswith("GET /" + cfg.hf_hub_id.split("@")[0]) for r in _Files.requests)
    assert list(Path(weight_caches["hf"]).rglob("model.safetensors"))  # in the HF cache


def test_resnet_weights_with_their_classifier_load(tmp_path: Path, weight_caches: dict) -> None:
    """timm reports the dropped classifier (fc) as missing for resnets: that is not a bad file,
    but a file without an encoder tensor still is."""
    import timm
    from safetensors.torch import save_file

    state = timm.create_model("resnet18", pretrained=False).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "r18.safetensors"))
    model = build_model("timm-unet", encoder="resnet18",
                        encoder_weights=str(tmp_path / "r18.safetensors"))
    assert torch.equal(model.encoder.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    del state["layer4.1.conv2.weight"]
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "cut.safetensors"))
    with pytest.raises(UnetkitError, match="lacks 1 of the encoder's tensors, e.g. layer4.1.conv2"):
        build_model("timm-unet", encoder="resnet18",
                    encoder_weights=str(tmp_path / "cut.safetensors"))


def test_fit_offline_flag_downloads_nothing(weight_caches: dict, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from unetkit.cli import app
    from unetkit.data.synthetic import write_folder

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("UNETKIT_OFFLINE", "0")  # so that what --offline sets is undone
    monkeypatch.setattr(mobilenet_unet, "imagenet_weights_url",
                        lambda: "http://127.0.0.1:9/mobilenet_v2-00000000.pth")  # never asked
    data = write_folder(tmp_path / "d", count=4, size=(32, 32), channels=3, seed=0)
    res = CliRunner().invoke(app, ["fit", "--data", str(data), "--model", "mobilenet_v2-unet",
                                   "--epochs", "1", "--offline", "--out", str(tmp_path / "r")])
    assert res.exit_code == 1
    assert "downloads are off (HF_HUB_OFFLINE/UNETKIT_OFFLINE)" in res.stderr
    assert "mobilenet_v2-00000000.pth" in res.stderr


def test_planning_looks_for_weights_on_disk_only(weight_caches: dict,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The planner asks which ImageNet weights are on disk; online, it must not download
    them (nor wait on retries offline): no download function is called."""
    import huggingface_hub
    import timm

    from unetkit.models import timm_unet
    from unetkit.plan.probe import _pretrained_available

    monkeypatch.delenv("HF_HUB_OFFLINE")  # as for a user with internet

    calls: list[str] = []

    def no_download(*args: object, **kwargs: object) -> None:
        calls.append(str(args))  # recorded: the probe swallows errors from here
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_download)
    monkeypatch.setattr(timm_unet, "cached_or_download", no_download)
    assert _pretrained_available(3) == [] and calls == []
    url = timm.models.get_pretrained_cfg("resnet34").url
    target = Path(weight_caches["checkpoints"]) / url.rsplit("/", 1)[-1]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"weights")
    assert _pretrained_available(3) == ["timm-unet"]
    assert _pretrained_available(1) == [] and calls == []
