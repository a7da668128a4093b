"""`hf://OWNER/NAME[@REVISION]` model references -> a local artifact directory.

Lives in models/ (not share/) because `load_model` resolves these references and models/
imports no other stage; huggingface_hub is imported lazily, so it stays an optional extra.
Downloads go into the standard Hugging Face cache, which honours HF_HOME and HF_HUB_OFFLINE.
"""

from __future__ import annotations

import re
from pathlib import Path

from unetkit.errors import UnetkitError, UsageError

HF_PREFIX = "hf://"
# what an artifact repo holds; anything else in the repo is not downloaded
ARTIFACT_FILES = ["config.json", "model.safetensors", "README.md", "model.onnx"]
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def hub_reference(path: str | Path) -> tuple[str, str | None] | None:
    """(repo id, revision) for an hf:// reference, else None.

    `Path("hf://a/b")` collapses the double slash, so "hf:/a/b" is accepted too: CLI
    arguments typed as Path still work."""
    text = str(path)
    for prefix in (HF_PREFIX, "hf:/"):
        if text.startswith(prefix):
            repo_id, _, revision = text[len(prefix):].strip("/").partition("@")
            check_repo_id(repo_id, text)
            return repo_id, revision or None
    return None


def check_repo_id(repo_id: str, given: str | None = None) -> str:
    """Refuse a malformed OWNER/NAME early, with the form it should take."""
    if not _REPO_ID.match(repo_id):
        raise UsageError(f"{given or repo_id!r} is not a hub repo; write OWNER/NAME, e.g. "
                         "alice/membrane-unet (as a model: hf://alice/membrane-unet[@REV]).")
    return repo_id


def download_artifact(repo_id: str, revision: str | None = None) -> Path:
    """The repo's artifact files, fetched (or found) in the Hugging Face cache."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (
            EntryNotFoundError,
            HfHubHTTPError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError as exc:
        raise UnetkitError("hf:// models need huggingface_hub; install it with "
                           "pip install 'unetkit[hub]'.") from exc
    ref = f"{HF_PREFIX}{repo_id}" + (f"@{revision}" if revision else "")
    try:
        folder = snapshot_download(repo_id, revision=revision, repo_type="model",
                                   allow_patterns=ARTIFACT_FILES)
    except LocalEntryNotFoundError as exc:
        raise UnetkitError(
            f"{ref} is not in the Hugging Face cache and the hub cannot be reached (offline or "
            "HF_HUB_OFFLINE=1); download it once with the network on (unset HF_HUB_OFFLINE), "
            f"or point HF_HOME at a cache that holds it.") from exc
    except RevisionNotFoundError as exc:
        raise UnetkitError(f"{ref}: the repo has no revision {revision!r}.") from exc
    except RepositoryNotFoundError as exc:
        raise UnetkitError(f"{ref} does not exist or is private; check the name, or log in "
                           "with `hf auth login` (or set HF_TOKEN).") from exc
    except (EntryNotFoundError, HfHubHTTPError) as exc:
        raise UnetkitError(f"Could not download {ref} ({str(exc).splitlines()[0]}).") from exc
    return Path(folder)


def resolve_model_path(path: str | Path) -> Path:
    """A local path unchanged, or an hf:// reference downloaded to its cache folder."""
    ref = hub_reference(path)
    return Path(path) if ref is None else download_artifact(*ref)
