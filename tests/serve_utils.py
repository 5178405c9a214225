"""Helpers for the serving tests: fake poses made from real lexicon files, a live server with an index."""
from __future__ import annotations

import io
from contextlib import contextmanager

import numpy as np
from pose_format import Pose
from pose_format.numpy import NumPyPoseBody

from signclip.pose.io import read_pose


def pose_bytes(pose: Pose) -> bytes:
    buf = io.BytesIO()
    pose.write(buf)
    return buf.getvalue()


def zero_frame_pose(path: str) -> bytes:
    pose = read_pose(path)
    return pose_bytes(Pose(pose.header, pose.body[0:0]))


def long_pose(path: str, frames: int = 10_000) -> bytes:
    """A real pose repeated to ``frames`` frames (body and hands only, to keep the file ~12 MB)."""
    pose = read_pose(path).get_components(["POSE_LANDMARKS", "LEFT_HAND_LANDMARKS", "RIGHT_HAND_LANDMARKS"])
    reps = frames // pose.body.data.shape[0] + 1
    data = np.ma.concatenate([pose.body.data] * reps)[:frames]
    conf = np.concatenate([pose.body.confidence] * reps)[:frames]
    return pose_bytes(Pose(pose.header, NumPyPoseBody(pose.body.fps, data, conf)))


def nan_pose(path: str) -> bytes:
    """Every coordinate NaN (unmasked, confidence 1): must be rejected, not embedded as garbage."""
    pose = read_pose(path)
    data = np.ma.masked_array(np.full(pose.body.data.shape, np.nan, dtype=np.float32), mask=False)
    return pose_bytes(Pose(pose.header, NumPyPoseBody(pose.body.fps, data, np.ones_like(pose.body.confidence))))


def pose_with_fps(path: str, fps: float) -> bytes:
    """A real pose whose header claims another frame rate."""
    pose = read_pose(path)
    return pose_bytes(Pose(pose.header, NumPyPoseBody(fps, pose.body.data, pose.body.confidence)))


def far_keypoints(path: str) -> list:
    """Preprocessed keypoints (tiny's layout) with one point at 1e20 shoulder widths, as JSON lists."""
    from signclip.config import PoseConfig
    from signclip.pose.preprocess import preprocess

    x = np.nan_to_num(preprocess(path, PoseConfig()))
    x[0, -1] = 1e20
    return x.tolist()


def corrupt_pose(path: str) -> bytes:
    data = open(path, "rb").read()
    return data[:200] + bytes(range(256)) * 4


def untrained_model_dir(out, lexicon) -> str:
    """A fresh `tiny` model made ready to serve without training (for speed): the lexicon's languages
    and pose feature statistics of 48 lexicon poses, saved to ``out``."""
    import signclip

    model = signclip.create_model("tiny").eval()
    arrays = [model.preprocess_pose(p) for p in lexicon["path"].iloc[::12].tolist()]
    model.fit_preprocessing(arrays, lexicon["spoken_language"], lexicon["signed_language"])
    model.save(out)
    return str(out)


@contextmanager
def live_server(model_dir, pose_paths: list[str], lexicon, **settings):
    """Start the real app with uvicorn on 127.0.0.1 (free port), with an index of ``pose_paths`` and their
    (text, languages) prompts. Yields (url, model, index)."""
    from signclip.models.signclip import load
    from signclip.serve import ServerThread, ServeSettings, create_app
    from signclip.serve.index import SearchIndex

    model = load(model_dir)
    rows = lexicon.set_index("path").loc[pose_paths].reset_index()
    index = SearchIndex(model.cfg.embed_dim, "flat")
    index.add("pose", model.encode_pose(pose_paths), rows[["path", "text", "spoken_language", "signed_language"]])
    triples = rows[["text", "spoken_language", "signed_language"]].drop_duplicates().reset_index(drop=True)
    prompts = model.prompts(triples["text"].tolist(), triples["spoken_language"].tolist(),
                            triples["signed_language"].tolist())
    index.add("text", model.encode_text(prompts), triples.assign(prompt=prompts))
    app = create_app(model, index, ServeSettings(**settings))
    with ServerThread(app) as url:
        yield url, model, index
