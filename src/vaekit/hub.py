"""Sharing a model on the Hugging Face Hub (the optional extra ``pip install 'vaekit[hub]'``).

    vaekit.push_to_hub(model, "user/name")            # model.safetensors + model.json + a model card (README.md)
                                                      # (vaekit.api.push_to_hub: write_hub_folder, then upload_folder)
    model = vaekit.load("hf://user/name")             # or hf://user/name@revision (a branch, tag or commit)

The files on the Hub are the ones ``vaekit.save`` writes: ``model.safetensors`` (weights; the JSON document in its
header) and ``model.json`` (a readable copy of that document), with a short generated ``README.md``. Loading
downloads ``model.safetensors`` only, through huggingface_hub's cache (``HF_HUB_CACHE``, ``HF_HUB_OFFLINE`` and
``HF_TOKEN`` apply) and never unpickles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["HUB_PREFIX", "WEIGHTS_NAME", "CONFIG_NAME", "parse_hub_id", "hub_download", "model_card",
           "require_hub", "upload_folder"]

HUB_PREFIX = "hf://"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "model.json"
_INSTALL = "pip install 'vaekit[hub]' (or huggingface_hub)"


def _hub() -> Any:
    try:
        import huggingface_hub
    except ImportError:
        raise ImportError(f"sharing models on the Hugging Face Hub needs huggingface_hub: {_INSTALL}") from None
    return huggingface_hub


def parse_hub_id(ref: str) -> tuple[str, str | None]:
    """("user/name", revision or None) of ``hf://user/name[@revision]``; ValueError for anything else."""
    body = ref[len(HUB_PREFIX):] if ref.startswith(HUB_PREFIX) else ref
    repo, at, revision = body.partition("@")
    parts = repo.split("/")
    if len(parts) != 2 or not all(parts) or (at and not revision):
        raise ValueError(f"{ref!r} is not a Hub model id; write hf://user/name (or hf://user/name@revision)")
    return repo, revision or None


def hub_download(ref: str) -> Path:
    """The local path of ``model.safetensors`` of ``hf://user/name[@revision]``, downloaded into (or found in)
    huggingface_hub's cache. A missing repository, file or connection is a one-line CheckpointError."""
    from vaekit.training.checkpoint import CheckpointError

    repo, revision = parse_hub_id(ref)
    hub = _hub()
    import huggingface_hub.utils as errors  # the error classes, exported there by every huggingface_hub since 0.20

    try:
        return Path(hub.hf_hub_download(repo, WEIGHTS_NAME, revision=revision))
    except errors.LocalEntryNotFoundError:  # before EntryNotFoundError: older versions derive it from that
        why = ("it is not in the local Hub cache and the Hub cannot be reached (offline, or HF_HUB_OFFLINE=1); "
               "connect once to download it")
    except errors.RevisionNotFoundError:
        why = f"the repository has no revision {revision!r}"
    except errors.RepositoryNotFoundError:
        why = "no such model repository (or it is private or gated: log in with `hf auth login` or set HF_TOKEN)"
    except errors.EntryNotFoundError:
        why = f"the repository has no {WEIGHTS_NAME}: it was not shared with vaekit.push_to_hub"
    except (errors.HfHubHTTPError, OSError) as e:
        why = (str(e).splitlines() or [type(e).__name__])[0]
    raise CheckpointError(f"cannot load {ref!r}: {why}")


def model_card(spec: dict[str, Any], repo_id: str) -> str:
    """A short README.md for the Hub from a model's ``vaekit_spec`` (its model config and data shape): front
    matter (library, tags) and how to load the model."""
    from vaekit import __version__

    mc, shape = spec.get("model", {}), spec.get("data_shape", [])
    family = mc.get("family", "vae")
    lines = ["---", "library_name: vaekit", "tags:", "- vaekit", "- variational-autoencoder", f"- {family}", "---", "",
             f"# {repo_id.split('/')[-1]}", "",
             f"A variational autoencoder trained with [vaekit](https://pypi.org/project/vaekit/) {__version__}.", "",
             "| | |", "|---|---|",
             f"| family | {family} |",
             f"| latent dimensions | {mc.get('latent_dims') or mc.get('latent_dim', '?')} |",
             f"| likelihood p(x\\|z) | {mc.get('likelihood', '?')} |",
             f"| data shape | {tuple(shape)} |",
             "", "```python", "import vaekit", "", f'model = vaekit.load("{HUB_PREFIX}{repo_id}")',
             "z = model.embed(x)  # x: (N, *data shape) numpy array or tensor", "```", "",
             f"The weights are `{WEIGHTS_NAME}` (safetensors; the model config in its header, readable in "
             f"`{CONFIG_NAME}`).", ""]
    return "\n".join(lines)


def require_hub() -> None:
    """ImportError (one line: what to install) when huggingface_hub is missing."""
    _hub()


def upload_folder(folder: str | Path, repo_id: str, *, private: bool | None = None, token: str | None = None,
                  revision: str | None = None, commit_message: str = "Upload vaekit model") -> Any:
    """Create the model repository ``repo_id`` if missing (``private`` as given) and upload ``folder``'s files to
    it (huggingface_hub's ``HfApi.upload_folder``; its commit info is returned)."""
    hub = _hub()
    api = hub.HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    return api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=revision,
                             commit_message=commit_message, repo_type="model")
