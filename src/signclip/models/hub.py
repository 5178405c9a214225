"""Models on the Hugging Face Hub, as open_clip and sentence-transformers share theirs.

``hf-hub:ORG/NAME`` (or ``hf-hub:ORG/NAME@REVISION``, a branch, tag or commit) names a Hub repository
holding what :meth:`SignCLIP.save <signclip.models.signclip.SignCLIP.save>` writes. :func:`resolve_model_dir`
turns such an id into a local directory (``snapshot_download`` into the standard Hugging Face cache,
``HF_HUB_CACHE`` / ``HF_HOME``; with ``HF_HUB_OFFLINE=1`` only the cache is read) and leaves a local path
as it is; ``SignCLIP.load`` calls it, so every command that takes a model takes an id too.

Publishing a model (:func:`signclip.export.hub.push_to_hub`) and its model card
(:mod:`signclip.eval.model_card`) live with what they read.
"""
from __future__ import annotations

import os
from pathlib import Path

HUB_PREFIX = "hf-hub:"
# what SignCLIP.save writes (and all that is downloaded of a repository)
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer", "text_config")


class HubModelError(OSError):
    """A ``hf-hub:`` model that cannot be had: not in the cache while offline, unknown repository, ...
    The message is one line and starts with the id."""


def is_hub_id(name: str | os.PathLike) -> bool:
    return isinstance(name, str) and name.startswith(HUB_PREFIX)


def parse_hub_id(name: str) -> tuple[str, str | None]:
    """``hf-hub:ORG/NAME[@REVISION]`` -> (``ORG/NAME``, revision or None), the repository id validated."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    repo_id, _, revision = name[len(HUB_PREFIX):].partition("@")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise ValueError(f"{name}: not a Hugging Face Hub id of the form hf-hub:ORG/NAME[@REVISION] "
                         f"({str(e).splitlines()[0]})") from None
    return repo_id, revision or None


def resolve_model_dir(name: str | os.PathLike, cache_dir: str | Path | None = None,
                      token: str | bool | None = None) -> Path:
    """The local directory of a saved model: a path as it is; a ``hf-hub:`` id downloaded into (or, offline,
    found in) the Hugging Face cache. Raises :class:`HubModelError` with a one-line message."""
    if not is_hub_id(name):
        return Path(name)
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub import utils as hf

    from signclip import __version__

    try:  # huggingface_hub >= 1.x: a partly cached copy
        from huggingface_hub.errors import IncompleteSnapshotError
    except ImportError:
        IncompleteSnapshotError = ()  # catches nothing

    repo_id, revision = parse_hub_id(str(name))
    cache = Path(cache_dir or constants.HF_HUB_CACHE)
    offline = bool(constants.HF_HUB_OFFLINE)  # read by huggingface_hub from the environment when imported
    try:
        path = Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, token=token,
                                      allow_patterns=["config.json", "model.safetensors", "tokenizer/*",
                                                      "text_config/*", "task.json"],
                                      local_files_only=offline, library_name="signclip",
                                      library_version=__version__))
    except IncompleteSnapshotError:
        raise HubModelError(f"{name}: the copy in the Hugging Face cache ({cache}) is incomplete and the Hub "
                            "cannot be reached; download it again with network access") from None
    except hf.LocalEntryNotFoundError:
        if offline:
            raise HubModelError(f"{name}: not in the Hugging Face cache ({cache}) and the machine is offline "
                                "(HF_HUB_OFFLINE=1); load it once with network access, or copy the cache "
                                "here") from None
        raise HubModelError(f"{name}: not in the Hugging Face cache ({cache}) and the Hub cannot be reached; "
                            "check the network connection") from None
    except hf.RevisionNotFoundError:
        raise HubModelError(f"{name}: repository {repo_id} has no revision {revision!r}") from None
    except (hf.RepositoryNotFoundError, hf.GatedRepoError):
        raise HubModelError(f"{name}: no such model repository on the Hub, or it is private or gated (log in "
                            "with `hf auth login` or set HF_TOKEN)") from None
    if not (path / "config.json").is_file():
        raise HubModelError(f"{name}: not a signclip model (no config.json in the repository)")
    return path
