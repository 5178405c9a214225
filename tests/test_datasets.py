"""Datasets: the embedded lexicon, CSV manifests, deterministic and signer-grouped splits."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from signclip.batching import pad_poses
from signclip.config import AugmentConfig, PoseConfig
from signclip.data.arrays import load_arrays
from signclip.data.manifests import COLUMNS, load_dataset, load_manifest
from signclip.data.splits import split_dataset
from signclip.pose.io import read_pose
from signclip.text.prompts import prompt_id
from signclip.training.batches import PoseTextDataset


def test_lexicon(lexicon):
    assert len(lexicon) == 600
    assert lexicon["signed_language"].nunique() == 19
    assert list(lexicon.columns[: len(COLUMNS)]) == COLUMNS
    assert lexicon["text"].nunique() == 187
    assert lexicon.groupby(["signed_language", "text"]).size().max() == 1
    assert all(p.endswith(".pose") for p in lexicon["path"])
    assert lexicon["start_ms"].isna().all() and lexicon["end_ms"].isna().all()
    assert load_dataset("lexicon").equals(lexicon) and load_dataset(None).equals(lexicon)


@pytest.fixture
def manifest_dir(tmp_path, lexicon):
    """A folder of 8 copied lexicon poses and a manifest with relative paths, start/end, split, signer."""
    rows = lexicon.iloc[:8]
    (tmp_path / "poses").mkdir()
    records = []
    for i, row in enumerate(rows.itertuples()):
        shutil.copy(row.path, tmp_path / "poses" / f"{i}.pose")
        records.append({"path": f"poses/{i}.pose", "text": row.text, "spoken_language": "en",
                        "signed_language": row.signed_language, "start_ms": 40 if i == 0 else None,
                        "end_ms": 400 if i == 0 else None, "split": ["train", "validation", "test", "train"][i % 4],
                        "signer": f"s{i % 3}"})
    pd.DataFrame(records).to_csv(tmp_path / "manifest.csv", index=False)
    return tmp_path


def test_manifest(manifest_dir):
    df = load_manifest(manifest_dir / "manifest.csv")
    assert list(df.columns) == COLUMNS and len(df) == 8
    assert df["path"][0] == str(manifest_dir / "poses" / "0.pose")
    assert df["start_ms"][0] == 40 and df["end_ms"][0] == 400 and np.isnan(df["start_ms"][1])
    assert df["split"].tolist()[:4] == ["train", "validation", "test", "train"]
    assert df["signer"][0] == "s0"
    assert load_dataset(manifest_dir).equals(df)  # a folder holding manifest.csv


def test_manifest_crops_start_end(manifest_dir):
    df = load_manifest(manifest_dir / "manifest.csv")
    arrays, kept, errors = load_arrays(df.iloc[:2], PoseConfig(), progress=False)
    assert not errors and len(kept) == 2
    full = read_pose(df["path"][0]).body.data.shape[0]
    assert full > 9
    assert arrays[0].shape[0] == 9  # 40 .. 400 ms at 25 fps: frames 1 .. 9
    assert arrays[1].shape[0] == read_pose(df["path"][1]).body.data.shape[0]


def test_manifest_minimal_columns_and_errors(tmp_path, lexicon):
    pd.DataFrame({"path": [lexicon["path"][0]], "text": ["A"]}).to_csv(tmp_path / "m.csv", index=False)
    df = load_manifest(tmp_path / "m.csv")
    assert list(df.columns) == COLUMNS and df["split"].isna().all()
    pd.DataFrame({"file": ["x.pose"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="lacks column"):
        load_manifest(tmp_path / "bad.csv")
    with pytest.raises(FileNotFoundError):
        load_dataset(tmp_path / "nope.csv")


def test_load_arrays_skips_bad_files_with_a_warning(tmp_path, lexicon):
    bad = tmp_path / "bad.pose"
    bad.write_bytes(b"")
    df = lexicon.iloc[:2].copy()
    df.loc[len(df)] = df.iloc[0]
    df.loc[len(df) - 1, "path"] = str(bad)
    with pytest.warns(UserWarning, match="skipped 1"):
        arrays, kept, errors = load_arrays(df.reset_index(drop=True), PoseConfig(), progress=False)
    assert len(arrays) == len(kept) == 2 and str(bad) in errors[0]


def test_split_is_deterministic(lexicon):
    a = split_dataset(lexicon, 0.1, 0.2, seed=7)
    b = split_dataset(lexicon, 0.1, 0.2, seed=7)
    c = split_dataset(lexicon, 0.1, 0.2, seed=8)
    assert a["split"].tolist() == b["split"].tolist()
    assert a["split"].tolist() != c["split"].tolist()
    counts = a["split"].value_counts()
    assert (counts["test"], counts["validation"], counts["train"]) == (120, 60, 420)
    assert lexicon["split"].isna().all(), "the input table is not modified"


def test_existing_splits_are_kept(lexicon):
    df = lexicon.copy()
    df.loc[:9, "split"] = "test"
    out = split_dataset(df, 0.1, 0.2, seed=0)
    assert (out.loc[:9, "split"] == "test").all()
    assert out["split"].notna().all()


def test_signer_split_keeps_signers_disjoint(lexicon):
    df = lexicon.copy()
    df["signer"] = [f"signer{i % 10}" for i in range(len(df))]
    out = split_dataset(df, 0.1, 0.2, seed=3, group="signer")
    signers = {s: set(out.loc[out["split"] == s, "signer"]) for s in ("train", "validation", "test")}
    assert signers["test"] and signers["validation"] and signers["train"]
    assert not signers["train"] & signers["test"]
    assert not signers["train"] & signers["validation"]
    assert not signers["validation"] & signers["test"]
    assert len(signers["test"]) == 2 and len(signers["validation"]) == 1
    again = split_dataset(df, 0.1, 0.2, seed=3, group="signer")
    assert out["split"].tolist() == again["split"].tolist()


def test_dataset_augmentation_is_reproducible(lexicon_paths):
    from signclip.pose.preprocess import preprocess

    arrays = [preprocess(p, PoseConfig()) for p in lexicon_paths[:3]]
    ds = PoseTextDataset(arrays, ["a", "b", "c"], PoseConfig(), AugmentConfig(), seed=1)
    x0 = ds[0][0]
    np.testing.assert_array_equal(ds[0][0], x0)
    ds.epoch = 1
    assert not np.array_equal(ds[0][0], x0) or ds[0][0].shape != x0.shape
    plain = PoseTextDataset(arrays, ["a", "b", "c"], PoseConfig())
    np.testing.assert_array_equal(plain[1][0], arrays[1])
    assert plain[1][1:] == ("b", prompt_id("b"))
    # language prompts: with p=1 every sample trains against its "<en> <ase>" prompt
    lang = PoseTextDataset(arrays, ["a", "b", "c"], PoseConfig(), language_prompts=["<en> <ase>"] * 3,
                           language_prompt_p=1.0)
    assert lang[2][1:] == ("<en> <ase>", prompt_id("<en> <ase>"))


def test_pad_poses():
    a = np.ones((3, 2, 3), np.float32)
    b = np.full((5, 2, 3), 2, np.float32)
    b[0, 0] = np.nan
    x, mask = pad_poses([a, b])
    assert x.shape == (2, 5, 6) and mask.shape == (2, 5)
    assert mask.tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    assert x[0, 3:].isnan().all() and x[1, 0, :3].isnan().all()  # padded frames are missing, like NaN points
