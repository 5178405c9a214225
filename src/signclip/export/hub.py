"""Publishing a model on the Hugging Face Hub with its model card (:mod:`signclip.eval.model_card`);
``hf-hub:`` ids are read back by :mod:`signclip.models.hub`."""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from signclip.eval.model_card import DEFAULT_LICENSE, find_run_dir, write_model_card
from signclip.models.hub import MODEL_FILES, is_hub_id, resolve_model_dir


def push_to_hub(model, repo_id: str, *, private: bool | None = None, revision: str | None = None,
                commit_message: str | None = None, token: str | None = None, license: str = DEFAULT_LICENSE,
                run_dir: str | Path | None = None, metrics: str | Path | None = None,
                datasets: Sequence[str] = ()) -> str:
    """Upload ``model`` (a ``SignCLIP``, or a saved model directory / ``hf-hub:`` id) to the Hub repository
    ``repo_id`` with a generated model card; returns the repository URL.

    The repository is created if needed (``private`` when new), ``revision`` is a branch (created from
    the main branch if new). A directory in a training run (``RUN/best``) gets the run's split, settings
    and metrics in its card unless ``run_dir`` says otherwise."""
    from huggingface_hub import HfApi

    with tempfile.TemporaryDirectory(prefix="signclip-push-") as tmp:
        folder = Path(tmp) / "model"
        if isinstance(model, (str, os.PathLike)):
            src = resolve_model_dir(model, token=token)
            if not (src / "config.json").is_file():
                raise FileNotFoundError(f"{model}: not a saved signclip model (no config.json)")
            if run_dir is None and not is_hub_id(model):
                run_dir = find_run_dir(src)
            folder.mkdir()
            for name in MODEL_FILES:
                item = src / name
                if item.is_dir():
                    shutil.copytree(item, folder / name)
                elif item.is_file():
                    shutil.copy2(item, folder / name)
        else:
            model.save(folder)
        write_model_card(folder, repo_id, license=license, run_dir=run_dir, metrics=metrics, datasets=datasets)
        api = HfApi(token=token)
        url = api.create_repo(repo_id, private=private, exist_ok=True, token=token)
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True, token=token)
        api.upload_folder(repo_id=repo_id, folder_path=folder, revision=revision, token=token,
                          commit_message=commit_message or "Upload signclip model")
    return str(url)
