"""Other keypoint formats: fixtures written in each exact format from real lexicon poses, read back
through the standard preprocessing and compared with the original .pose."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from signclip.config import PoseConfig
from signclip.data.arrays import load_arrays
from signclip.data.manifests import load_dataset
from signclip.errors import PoseInputError
from signclip.pose import formats
from signclip.pose.io import read_pose
from signclip.pose.layout import BODY, FACE, LEFT_HAND, RIGHT_HAND, get_layout
from signclip.pose.preprocess import pose_to_array

CFG = PoseConfig()


def holistic_parts(path: str, drop_left: bool = True) -> dict[str, np.ndarray]:
    """Per-component (T, P, 3) arrays of a lexicon pose (468-point face), NaN where missing;
    the left hand removed when ``drop_left`` (an absent hand)."""
    pose = read_pose(path)
    data = np.ma.filled(pose.body.data[:, 0].astype(np.float32), np.nan)  # (T, 586, 3)
    conf = np.asarray(pose.body.confidence)[:, 0]
    data[conf <= 0] = np.nan
    out, offset = {}, 0
    for c in pose.header.components:
        n = len(c.points)
        if c.name in (BODY, FACE, LEFT_HAND, RIGHT_HAND):
            out[c.name] = data[:, offset:offset + (468 if c.name == FACE else n)].copy()
        offset += n
    if drop_left:
        out[LEFT_HAND][:] = np.nan
    return out


def reference(path: str, drop_left: bool = True) -> np.ndarray:
    """The original .pose preprocessed, with the left hand removed as in the fixtures."""
    pose = read_pose(path)
    if drop_left:
        offset = sum(len(c.points) for c in pose.header.components[:2])  # body 33 + face 478
        pose.body.confidence[:, :, offset:offset + 21] = 0
    return pose_to_array(pose, CFG, path)


def write_kaggle(root: Path, paths: list[str], signs: list[str], participants: list[int]) -> Path:
    """Kaggle ASL Signs layout: train.csv + train_landmark_files/PID/SEQ.parquet (long format)."""
    rows = []
    for seq, (p, sign, pid) in enumerate(zip(paths, signs, participants)):
        parts = holistic_parts(p)
        long = []
        for kind, comp in [("face", FACE), ("left_hand", LEFT_HAND), ("pose", BODY), ("right_hand", RIGHT_HAND)]:
            x = parts[comp]  # (T, P, 3)
            t, n = x.shape[:2]
            frame = np.repeat(np.arange(t) + 17, n)  # Kaggle frame numbers need not start at 0
            idx = np.tile(np.arange(n), t)
            long.append(pd.DataFrame({"frame": frame, "row_id": [f"{f}-{kind}-{i}" for f, i in zip(frame, idx)],
                                      "type": kind, "landmark_index": idx, "x": x[..., 0].ravel(),
                                      "y": x[..., 1].ravel(), "z": x[..., 2].ravel()}))
        df = pd.concat(long).sort_values(["frame"], kind="stable")
        rel = Path("train_landmark_files") / str(pid) / f"{1000 + seq}.parquet"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        df.to_parquet(root / rel, index=False)
        rows.append({"path": str(rel), "participant_id": pid, "sequence_id": 1000 + seq, "sign": sign})
    pd.DataFrame(rows).to_csv(root / "train.csv", index=False)
    return root


@pytest.fixture(scope="module")
def two_paths(lexicon_paths):
    return lexicon_paths[:2]


def test_kaggle_asl_signs(tmp_path, two_paths):
    root = write_kaggle(tmp_path, two_paths, ["house", "tree"], [26734, 28656])
    df = load_dataset(root)  # detected from train.csv
    assert df["text"].tolist() == ["house", "tree"] and df["signer"].tolist() == ["26734", "28656"]
    assert (df["signed_language"] == "ase").all() and Path(df["path"][0]).is_absolute()
    pose = formats.read_kaggle_parquet(df["path"][0], fps=25.0)
    assert [c.name for c in pose.header.components] == [BODY, FACE, LEFT_HAND, RIGHT_HAND]
    assert pose.body.data.shape[2] == 543
    got = pose_to_array(pose, CFG)
    np.testing.assert_allclose(got, reference(two_paths[0]), rtol=1e-5, atol=1e-5, equal_nan=True)
    left = get_layout(CFG.layout).hand_slices[LEFT_HAND]
    assert np.isnan(got[:, left]).all()  # the absent hand is missing, not at the origin
    arrays, kept, errors = load_arrays(df, CFG, progress=False)
    assert len(arrays) == 2 and not errors


def test_numpy_arrays_with_declared_layouts(tmp_path, two_paths):
    parts = holistic_parts(two_paths[0])
    ref = reference(two_paths[0])
    full = np.concatenate([parts[c] for c in (BODY, FACE, LEFT_HAND, RIGHT_HAND)], 1)  # (T, 543, 3)
    zeros = np.nan_to_num(full)  # absent points as zeros, as many exporters write them
    np.save(tmp_path / "a.npy", zeros)
    kaggle = np.concatenate([parts[c] for c in (FACE, LEFT_HAND, BODY, RIGHT_HAND)], 1)
    np.savez(tmp_path / "b.npz", keypoints=kaggle, layout="kaggle-543", fps=25.0)
    no_face = np.concatenate([parts[c] for c in (BODY, LEFT_HAND, RIGHT_HAND)], 1)  # (T, 75, 3)
    np.savez(tmp_path / "c.npz", keypoints=no_face[..., :2], fps=25.0)  # 2-D
    a = pose_to_array(formats.read_numpy(tmp_path / "a.npy", fps=25.0), CFG)
    np.testing.assert_allclose(a, ref, rtol=1e-5, atol=1e-5, equal_nan=True)
    b = pose_to_array(read_pose(tmp_path / "b.npz"), CFG)  # read_pose dispatches to the adapters
    np.testing.assert_allclose(b, ref, rtol=1e-5, atol=1e-5, equal_nan=True)
    c = pose_to_array(formats.read_keypoint_file(tmp_path / "c.npz"), CFG)
    body_hands = [i for i, (comp, _) in enumerate(get_layout(CFG.layout).points) if comp != FACE]
    face = [i for i, (comp, _) in enumerate(get_layout(CFG.layout).points) if comp == FACE]
    assert np.isnan(c[:, face]).all()
    np.testing.assert_allclose(c[:, body_hands, :2], ref[:, body_hands, :2], rtol=1e-5, atol=1e-5, equal_nan=True)
    # a manifest of .npy files reads through load_arrays
    pd.DataFrame({"path": ["a.npy", "b.npz"], "text": ["A", "A"]}).to_csv(tmp_path / "manifest.csv", index=False)
    arrays, _, errors = load_arrays(load_dataset(tmp_path), CFG, progress=False)
    assert len(arrays) == 2 and not errors


def test_numpy_errors_name_the_file(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((4, 100, 3)))
    with pytest.raises(PoseInputError, match="bad.npy"):
        formats.read_keypoint_file(tmp_path / "bad.npy")
    np.save(tmp_path / "bad2.npy", np.zeros((4, 543, 3)))
    with pytest.raises(PoseInputError, match="unknown keypoint layout"):
        formats.read_numpy(tmp_path / "bad2.npy", layout="openpose")


def write_frame_folders(root: Path, paths: list[str], actions: list[str]) -> Path:
    """ACTION/SEQUENCE/FRAME.npy, 1662 values per frame; absent parts as zeros (as the tutorials do)."""
    for seq, (p, action) in enumerate(zip(paths, actions)):
        parts = {k: np.nan_to_num(v) for k, v in holistic_parts(p).items()}
        vis = np.where((parts[BODY] == 0).all(-1), 0.0, 0.9)[..., None]  # (T, 33, 1)
        vec = np.concatenate([np.concatenate([parts[BODY], vis], -1).reshape(len(vis), -1),
                              parts[FACE].reshape(len(vis), -1), parts[LEFT_HAND].reshape(len(vis), -1),
                              parts[RIGHT_HAND].reshape(len(vis), -1)], 1)  # (T, 1662)
        folder = root / action / str(seq)
        folder.mkdir(parents=True)
        for f, v in enumerate(vec):
            np.save(folder / f"{f}.npy", v)
    return root


def test_1662_vector_frame_folders(tmp_path, two_paths):
    root = write_frame_folders(tmp_path / "MP_Data", two_paths, ["hello", "thanks"])
    df = load_dataset(root)  # detected from the folder structure
    assert df["text"].tolist() == ["hello", "thanks"]
    pose = formats.read_frame_folder(df["path"][0], fps=25.0)
    got = pose_to_array(pose, CFG)
    np.testing.assert_allclose(got, reference(two_paths[0]), rtol=1e-5, atol=1e-5, equal_nan=True)
    assert np.isnan(got[:, get_layout(CFG.layout).hand_slices[LEFT_HAND]]).all()  # zeros -> missing
    arrays, _, errors = load_arrays(df, CFG, progress=False)
    assert len(arrays) == 2 and not errors
    with pytest.raises(PoseInputError, match="1662"):
        formats.pose_from_vectors(np.zeros((3, 1000)))


def test_258_value_clips_without_the_face(tmp_path, two_paths):
    """The other common MediaPipe tutorial layout: pose 33x4 + two hands, no face, zeros where a part was
    not detected; one (frames, 258) .npy per clip listed in a manifest (as ../shared/data/traduttore)."""
    parts = {k: np.nan_to_num(v) for k, v in holistic_parts(two_paths[0]).items()}
    vis = np.where((parts[BODY] == 0).all(-1), 0.0, 0.9)[..., None]  # (T, 33, 1)
    t = len(vis)
    clip = np.concatenate([np.concatenate([parts[BODY], vis], -1).reshape(t, -1),
                           parts[LEFT_HAND].reshape(t, -1), parts[RIGHT_HAND].reshape(t, -1)], 1)  # (T, 258)
    np.save(tmp_path / "hello.npy", clip.astype(np.float32))
    pd.DataFrame({"path": ["hello.npy"], "text": ["hello"], "signer": ["a"]}).to_csv(tmp_path / "m.csv", index=False)
    arrays, df, errors = load_arrays(load_dataset(tmp_path / "m.csv"), CFG, progress=False)
    assert not errors and len(arrays) == 1
    layout = get_layout(CFG.layout)
    expected = pose_to_array(formats.read_numpy(tmp_path / "hello.npy"), CFG)
    assert np.isnan(expected[:, [i for i, (c, _) in enumerate(layout.points) if c == FACE]]).all()  # no face
    assert np.isnan(expected[:, layout.hand_slices[LEFT_HAND]]).all()  # zeros -> missing
    keep = [i for i, (c, _) in enumerate(layout.points) if c != FACE]
    want = reference(two_paths[0])[:, keep]
    resampled = pose_to_array(formats.read_numpy(tmp_path / "hello.npy", fps=25.0), CFG)[:, keep]
    np.testing.assert_allclose(resampled, want, rtol=1e-5, atol=1e-5, equal_nan=True)
    with pytest.raises(PoseInputError, match="1662 | 258"):
        formats.pose_from_vectors(np.zeros((3, 259)))
