"""`unetkit push`: a model artifact (config.json, model.safetensors, its card, optionally
model.onnx) as a Hugging Face model repo, which `load_model("hf://OWNER/NAME")` reads back.

Downloading lives in `unetkit.models.remote` (load_model needs it and models/ imports no
stage); this module is the upload side. huggingface_hub is an optional extra, imported lazily.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unetkit.errors import UnetkitError
from unetkit.infer.onnx import ONNX_NAME, write_onnx
from unetkit.models.artifact import CONFIG_NAME, WEIGHTS_NAME, find_artifact, load_model
from unetkit.models.remote import HF_PREFIX, check_repo_id, download_artifact, hub_reference
from unetkit.progress import say
from unetkit.report.model_card import CARD_NAME, write_model_card

__all__ = ["PushResult", "download_artifact", "hub_reference", "push_model"]


@dataclass
class PushResult:
    repo_id: str
    url: str
    files: list[str]


def _hf_api(token: str | None) -> Any:
    try:
        from huggingface_hub import HfApi
    except ImportError as exc:
        raise UnetkitError("unetkit push needs huggingface_hub; install it with "
                           "pip install 'unetkit[hub]'.") from exc
    return HfApi(token=token)


def ensure_card(artifact: Path) -> bool:
    """Write the card when the artifact sits in a run directory without one yet (runs from
    before model cards); True when the artifact has a card."""
    card = artifact / CARD_NAME
    run_dir = artifact.parent
    if not card.is_file() and artifact.name == "model" and (run_dir / "config.yaml").is_file():
        write_model_card(run_dir)
    return card.is_file()


def stage(artifact: Path, folder: Path, onnx: bool) -> list[str]:
    """Copy exactly the files a hub repo holds into `folder` (nothing else of the run
    leaks out: no checkpoints, data paths in logs, or caches); export ONNX when asked."""
    names = [CONFIG_NAME, WEIGHTS_NAME] + ([CARD_NAME] if ensure_card(artifact) else [])
    for name in names:
        shutil.copy2(artifact / name, folder / name)
    if onnx:
        write_onnx(load_model(artifact), folder / ONNX_NAME)
        names.append(ONNX_NAME)
    return names


def push_model(model: str | Path, repo_id: str, private: bool = False, onnx: bool = False,
               token: str | None = None, quiet: bool = False) -> PushResult:
    """Create (or reuse) the model repo and upload the artifact as one commit."""
    check_repo_id(repo_id)
    artifact = find_artifact(model)
    api = _hf_api(token)
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    with tempfile.TemporaryDirectory(prefix="unetkit-push-") as tmp:
        files = stage(artifact, Path(tmp), onnx)
        try:
            url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            api.upload_folder(repo_id=repo_id, folder_path=tmp, repo_type="model",
                              allow_patterns=files, commit_message=f"unetkit push from {artifact}")
        except LocalTokenNotFoundError as exc:
            raise UnetkitError("Pushing needs a Hugging Face token: run `hf auth login` or set "
                               "HF_TOKEN.") from exc
        except (HfHubHTTPError, OSError) as exc:
            raise UnetkitError(f"Could not push to {repo_id} "
                               f"({str(exc).splitlines()[0] if str(exc) else exc!r}).") from exc
    if "README.md" not in files:
        say(f"note: {artifact} has no model card ({CARD_NAME}); pushed without one.", quiet)
    say(f"Pushed {', '.join(files)} to {url}; load it with "
        f"unetkit.load_model(\"{HF_PREFIX}{repo_id}\").", quiet)
    return PushResult(repo_id, str(url), files)
