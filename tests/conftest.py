"""Shared fixtures: real lexicon poses, a fresh tiny model, and a briefly trained tiny model.

Tests that train (directly or through the fixtures below), start processes, a browser or MediaPipe are
marked ``slow``: ``pytest -m "not slow"`` is the quick subset, plain ``pytest`` the whole suite."""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(2)


SLOW_FIXTURES = {"trained_model_dir", "cli_run"}  # fixtures that train a model


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def lexicon():
    """The embedded lexicon table (600 rows)."""
    from signclip.data.manifests import load_lexicon

    return load_lexicon()


@pytest.fixture(scope="session")
def lexicon_paths(lexicon):
    """48 real .pose paths from 16 sign languages (3 letters each)."""
    rows = lexicon[lexicon["text"].isin(["A", "B", "C"])]
    return rows["path"].tolist()[:48]


@pytest.fixture(scope="session")
def tiny_model():
    """A fresh `tiny` model (random pose tower, pretrained MiniLM text tower), eval mode."""
    import signclip

    return signclip.create_model("tiny").eval()


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory, lexicon):
    """A `tiny` model trained for a few steps on 120 lexicon poses and saved (path to its directory)."""
    from signclip.config import TrainConfig, get_model_config
    from signclip.training import fit

    out = tmp_path_factory.mktemp("trained")
    data = lexicon.sample(120, random_state=0).reset_index(drop=True)
    cfg = TrainConfig(epochs=2, batch_size=32, warmup_steps=2, val_fraction=0.15, test_fraction=0.15)
    fit(data, get_model_config("tiny", pose_layers=1), cfg, out, resume=False, progress=False)
    return out / "best"


def modified_pose(src, out_path, edit=None, fps=None):
    """Write a copy of the real .pose ``src`` to ``out_path`` with pose-format, after
    ``edit(data, confidence)`` (float arrays (T, 1, P, D) and (T, 1, P)) returns new (data, confidence).
    A point is missing where its confidence is 0 (or its data is masked)."""
    import numpy as np
    from pose_format import Pose
    from pose_format.numpy import NumPyPoseBody

    pose = Pose.read(open(src, "rb").read())
    data = np.ma.getdata(pose.body.data).astype(np.float32).copy()
    conf = np.asarray(pose.body.confidence, dtype=np.float32).copy()
    conf = np.where(np.ma.getmaskarray(pose.body.data).any(-1), 0.0, conf).astype(np.float32)
    if edit is not None:
        data, conf = edit(data, conf)
    mask = np.repeat((conf == 0)[..., None], data.shape[-1], axis=-1)
    body = NumPyPoseBody(fps if fps is not None else pose.body.fps, np.ma.masked_array(data, mask=mask), conf)
    with open(out_path, "wb") as f:
        Pose(pose.header, body).write(f)
    return str(out_path)


@pytest.fixture
def make_pose(tmp_path):
    """Factory: ``make_pose(src, edit=None, fps=None, name=...)`` -> path of a modified copy of a real pose."""
    counter = iter(range(10**6))

    def make(src, edit=None, fps=None, name=None):
        return modified_pose(src, tmp_path / (name or f"pose{next(counter)}.pose"), edit, fps)

    return make


@pytest.fixture(scope="module")
def small_manifest(tmp_path_factory, lexicon):
    """A folder with a 24-pose manifest.csv (ASL and DGS letters) with fixed splits: 16 train, 4 validation, 4 test."""
    tmp = tmp_path_factory.mktemp("manifest")
    rows = lexicon[lexicon["signed_language"].isin(["ase", "gsg"])].head(24).copy()
    rows["split"] = ["test"] * 4 + ["validation"] * 4 + ["train"] * 16
    rows[["path", "text", "spoken_language", "signed_language", "split"]].to_csv(tmp / "manifest.csv", index=False)
    return tmp
