"""Other MediaPipe Holistic keypoint formats read as pose-format ``Pose`` objects.

Each reader turns a file into a ``Pose`` with MediaPipe Holistic component and point names, so the
standard preprocessing (point selection by name, shoulder normalisation, mirroring, resampling)
applies unchanged; :func:`signclip.pose.io.read_pose` dispatches here by path. Formats:

* Kaggle "ASL Signs" (Google Isolated Sign Language Recognition): one parquet per clip with columns
  frame, row_id, type, landmark_index, x, y, z (types face 468, left_hand 21, pose 33, right_hand 21);
* numpy ``.npy`` / ``.npz`` arrays (frames, points, 2|3) with a declared point layout
  (:data:`ARRAY_LAYOUTS`: ``holistic-543``, ``kaggle-543``, ``holistic-75``);
* the flattened per-frame vectors of MediaPipe Holistic tutorials (``extract_keypoints``): 1662 values
  (pose 33×(x, y, z, visibility), face 468×3, left hand 21×3, right hand 21×3) or 258 without the face,
  as (frames, 1662 | 258) ``.npy`` clips or one ``.npy`` per frame in ``ACTION/SEQUENCE/FRAME.npy`` folders.

A point whose coordinates are all zero or any NaN is missing (masked, confidence 0), so an absent
hand is never a hand at the origin. Coordinates are kept as given (normalised image coordinates);
the shoulder normalisation makes their scale irrelevant. Dataset *tables* for these formats (Kaggle
``train.csv``, frame-folder trees) are built by :mod:`signclip.data.manifests`.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import numpy.ma as ma
from pose_format import Pose
from pose_format.numpy.pose_body import NumPyPoseBody
from pose_format.pose_header import PoseHeader, PoseHeaderComponent, PoseHeaderDimensions

from signclip.errors import PoseInputError
from signclip.pose.layout import BODY, BODY_POINTS, FACE, HAND_POINTS, LEFT_HAND, RIGHT_HAND

FACE_POINTS = [str(i) for i in range(468)]
COMPONENT_POINTS = {BODY: BODY_POINTS, FACE: FACE_POINTS, LEFT_HAND: HAND_POINTS, RIGHT_HAND: HAND_POINTS}
# Declared layouts of (frames, points, dims) arrays: components in the order their points appear.
ARRAY_LAYOUTS: dict[str, list[str]] = {
    "holistic-543": [BODY, FACE, LEFT_HAND, RIGHT_HAND],  # MediaPipe Holistic output order
    "kaggle-543": [FACE, LEFT_HAND, BODY, RIGHT_HAND],  # the Kaggle ASL Signs row order
    "holistic-75": [BODY, LEFT_HAND, RIGHT_HAND],  # without the face
}
KAGGLE_TYPES = {"face": FACE, "left_hand": LEFT_HAND, "pose": BODY, "right_hand": RIGHT_HAND}
# Flattened per-frame vectors: size -> (component, points, values per point) in order; the body's fourth
# value is MediaPipe's visibility
VECTOR_LAYOUTS: dict[int, list[tuple[str, int, int]]] = {
    1662: [(BODY, 33, 4), (FACE, 468, 3), (LEFT_HAND, 21, 3), (RIGHT_HAND, 21, 3)],
    258: [(BODY, 33, 4), (LEFT_HAND, 21, 3), (RIGHT_HAND, 21, 3)],
}
DEFAULT_FPS = 30.0


# ---- building a Pose ----------------------------------------------------------------------------------
def holistic_pose(parts: dict[str, np.ndarray], fps: float = DEFAULT_FPS,
                  confidence: dict[str, np.ndarray] | None = None) -> Pose:
    """A one-person MediaPipe Holistic ``Pose`` from per-component arrays (T, P_component, 2|3).

    Components absent from ``parts`` are fully missing. A point is missing when any coordinate is NaN
    or all are exactly 0. ``confidence`` optionally gives (T, P) scores (e.g. pose visibility) for
    present points (floored at 1e-3 so a present point is never dropped)."""
    lengths = {a.shape[0] for a in parts.values()}
    dims = {a.shape[-1] for a in parts.values()}
    if len(lengths) != 1 or len(dims) != 1 or dims.pop() not in (2, 3):
        raise PoseInputError(f"keypoints: components need the same frames and 2 or 3 coordinates, got "
                             f"{ {k: v.shape for k, v in parts.items()} }")
    t = lengths.pop()
    d = next(iter(parts.values())).shape[-1]
    comps, data, conf = [], [], []
    for name, points in COMPONENT_POINTS.items():
        x = parts.get(name)
        x = np.full((t, len(points), d), np.nan, np.float32) if x is None else np.asarray(x, np.float32)
        if x.shape[1] != len(points):
            raise PoseInputError(f"keypoints: {name} has {x.shape[1]} points, expected {len(points)}")
        missing = ~np.isfinite(x).all(-1) | (x == 0).all(-1)  # (T, P)
        c = np.ones(missing.shape, np.float32)
        if confidence and name in confidence:
            c = np.maximum(np.nan_to_num(np.asarray(confidence[name], np.float32)), 1e-3)
        conf.append(np.where(missing, 0.0, c))
        data.append(ma.masked_array(np.nan_to_num(x), mask=np.repeat(missing[..., None], d, -1)))
        comps.append(PoseHeaderComponent(name, list(points), [], [(255, 255, 255)], "XYZC" if d == 3 else "XYC"))
    header = PoseHeader(0.1, PoseHeaderDimensions(1, 1, 1 if d == 3 else 0), comps)
    body_data = ma.concatenate(data, axis=1)[:, None]  # (T, 1, 543, D)
    body = NumPyPoseBody(fps, body_data, np.concatenate(conf, axis=1)[:, None])  # conf (T, 1, 543)
    return Pose(header, body)


def split_points(x: np.ndarray, layout: str, name: str = "array") -> dict[str, np.ndarray]:
    """(T, P, D) in a declared layout -> per-component arrays."""
    if layout not in ARRAY_LAYOUTS:
        raise PoseInputError(f"{name}: unknown keypoint layout {layout!r}; known {sorted(ARRAY_LAYOUTS)}")
    comps = ARRAY_LAYOUTS[layout]
    total = sum(len(COMPONENT_POINTS[c]) for c in comps)
    if x.ndim != 3 or x.shape[1] != total or x.shape[2] not in (2, 3) or x.shape[0] == 0:
        raise PoseInputError(f"{name}: expected (frames>0, {total}, 2|3) for layout {layout}, got {x.shape}")
    out, i = {}, 0
    for c in comps:
        n = len(COMPONENT_POINTS[c])
        out[c] = x[:, i:i + n]
        i += n
    return out


# ---- (b) numpy arrays ----------------------------------------------------------------------------------
def guess_layout(num_points: int) -> str:
    """``holistic-543`` for 543 points, ``holistic-75`` for 75."""
    return {543: "holistic-543", 75: "holistic-75"}.get(num_points, f"<{num_points} points>")


def pose_from_array(x: np.ndarray, layout: str | None = None, fps: float = DEFAULT_FPS, name: str = "array") -> Pose:
    """(frames, points, 2|3) with a declared layout (default: guessed from the point count), or
    (frames, 1662 | 258) per-frame vectors -> ``Pose``."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2 and x.shape[1] in VECTOR_LAYOUTS:
        return pose_from_vectors(x, fps, name)
    if x.ndim != 3:
        raise PoseInputError(f"{name}: expected keypoints of shape (frames, points, 2|3), got {x.shape}")
    return holistic_pose(split_points(x, layout or guess_layout(x.shape[1]), name), fps)


def read_numpy(path: str | Path, layout: str | None = None, fps: float = DEFAULT_FPS) -> Pose:
    """A ``.npy`` array, or an ``.npz`` with the array under ``keypoints`` (else its first array) and
    optionally ``layout`` and ``fps`` entries."""
    path = Path(path)
    if not path.is_file():
        raise PoseInputError(f"{path}: no such keypoint file")
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as e:
        raise PoseInputError(f"{path}: not a readable numpy file ({type(e).__name__}: {e})") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = list(loaded.keys())
            key = "keypoints" if "keypoints" in keys else next((k for k in keys if k not in ("layout", "fps")), None)
            if key is None:
                raise PoseInputError(f"{path}: no keypoint array in the .npz (entries {keys})")
            arr = loaded[key]
            layout = layout or (str(loaded["layout"]) if "layout" in keys else None)
            fps = float(loaded["fps"]) if "fps" in keys else fps
    else:
        arr = loaded
    return pose_from_array(arr, layout, fps, str(path))


# ---- (c) 1662- or 258-value per-frame vectors -------------------------------------------------------------
def pose_from_vectors(v: np.ndarray, fps: float = DEFAULT_FPS, name: str = "vectors") -> Pose:
    """(frames, 1662 | 258) vectors of :data:`VECTOR_LAYOUTS` (a part that was not detected is all zeros,
    hence missing) -> ``Pose``."""
    v = np.asarray(v, dtype=np.float32)
    if v.ndim != 2 or v.shape[1] not in VECTOR_LAYOUTS or v.shape[0] == 0:
        raise PoseInputError(f"{name}: expected (frames>0, 1662 | 258) keypoint vectors, got {v.shape}")
    parts, start = {}, 0
    for component, points, values in VECTOR_LAYOUTS[v.shape[1]]:
        parts[component] = v[:, start:start + points * values].reshape(-1, points, values)
        start += points * values
    visibility = parts[BODY][..., 3]
    return holistic_pose({c: x[..., :3] for c, x in parts.items()}, fps, confidence={BODY: visibility})


def frame_number(p: Path) -> tuple[int, str]:
    m = re.search(r"(\d+)$", p.stem)
    return (int(m.group(1)) if m else -1, p.stem)


def read_frame_folder(path: str | Path, fps: float = DEFAULT_FPS) -> Pose:
    """An ``ACTION/SEQUENCE`` folder of per-frame ``FRAME.npy`` vectors (sorted by frame number)."""
    path = Path(path)
    frames = sorted(path.glob("*.npy"), key=frame_number)
    if not frames:
        raise PoseInputError(f"{path}: no per-frame .npy files")
    try:
        v = np.stack([np.load(f).reshape(-1) for f in frames])  # (T, 1662 | 258)
    except ValueError as e:
        raise PoseInputError(f"{path}: frames of different sizes ({e})") from None
    return pose_from_vectors(v, fps, str(path))


def is_frame_folder_root(root: Path) -> bool:
    """Whether ``root`` looks like ACTION/SEQUENCE/FRAME.npy folders."""
    for action in (p for p in root.iterdir() if p.is_dir()):
        for seq in (p for p in action.iterdir() if p.is_dir()):
            return any(seq.glob("*.npy"))
    return False


# ---- (a) Kaggle ASL Signs ------------------------------------------------------------------------------
def read_kaggle_parquet(path: str | Path, fps: float = DEFAULT_FPS) -> Pose:
    """One Kaggle ASL Signs clip (long format: frame, row_id, type, landmark_index, x, y, z)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise PoseInputError(f"{path}: no such parquet file")
    try:
        df = pd.read_parquet(path, columns=["frame", "type", "landmark_index", "x", "y", "z"])
    except Exception as e:
        raise PoseInputError(f"{path}: not a Kaggle ASL Signs parquet ({type(e).__name__}: {e})") from None
    if df.empty:
        raise PoseInputError(f"{path}: pose has zero frames")
    frames = np.sort(df["frame"].unique())
    t = np.searchsorted(frames, df["frame"].to_numpy())
    parts = {}
    for kind, comp in KAGGLE_TYPES.items():
        rows = (df["type"] == kind).to_numpy()
        x = np.full((len(frames), len(COMPONENT_POINTS[comp]), 3), np.nan, np.float32)  # (T, P, 3)
        idx = df["landmark_index"].to_numpy()[rows]
        ok = (idx >= 0) & (idx < x.shape[1])
        x[t[rows][ok], idx[ok]] = df.loc[rows, ["x", "y", "z"]].to_numpy(np.float32)[ok]
        parts[comp] = x
    return holistic_pose(parts, fps)


# ---- any format -----------------------------------------------------------------------------------------
def read_keypoint_file(path: str | Path) -> Pose:
    """Read a Kaggle ``.parquet``, ``.npy``/``.npz`` arrays or a per-frame ``.npy`` folder as a ``Pose``
    (:func:`signclip.pose.io.read_pose` calls this for such paths)."""
    p = Path(path)
    if p.is_dir():
        return read_frame_folder(p)
    if p.suffix.lower() == ".parquet":
        return read_kaggle_parquet(p)
    return read_numpy(p)
