"""Reading ``.pose`` files (pose-format) with errors that name the file and the problem."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Union

from pose_format import Pose

from signclip.errors import PoseInputError
from signclip.pose.formats import read_keypoint_file
from signclip.pose.video import is_video_bytes, is_video_path, video_to_pose

PoseSource = Union[str, Path, bytes, Pose]
KEYPOINT_SUFFIXES = (".parquet", ".npy", ".npz")  # other keypoint formats, see signclip.pose.formats
FPS_RANGE = (1.0, 1000.0)  # frames per second a pose header may declare
MAX_FRAMES = 100_000  # frames a pose may have (an hour at 25 fps); longer ones are refused, not read on
MAX_VALUES = 50_000_000  # frames x people x points a pose may have (~600 MB of float32 xyz)


def describe(source: PoseSource) -> str:
    """A short name for a pose source, used in error messages."""
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    return "<Pose>"


def read_pose(source: PoseSource, name: str | None = None) -> Pose:
    """Read a pose from a path, the bytes of a ``.pose`` file, or pass a ``Pose`` through.

    A video (path by extension; bytes by magic bytes or the extension of ``name``) is converted to
    MediaPipe Holistic poses on the fly with :func:`signclip.pose.video.video_to_pose` (``signclip[video]``).

    Other keypoint formats (Kaggle ``.parquet``, ``.npy``/``.npz``, per-frame ``.npy`` folders) are
    read by :mod:`signclip.pose.formats`.

    Raises :class:`PoseInputError` for a missing, empty, corrupt or zero-frame file.
    """
    name = name or describe(source)
    if isinstance(source, Pose):
        pose = source
    elif is_video_path(source) if isinstance(source, (str, Path)) else is_video_bytes(source, name):
        pose = video_to_pose(source, name)  # MediaPipe Holistic on the fly (signclip[video] extra)
    elif isinstance(source, (str, Path)) and (Path(source).is_dir()
                                              or Path(source).suffix.lower() in KEYPOINT_SUFFIXES):
        pose = read_keypoint_file(source)  # Kaggle parquet, .npy/.npz, per-frame .npy folders
    else:
        if isinstance(source, (str, Path)):
            path = Path(source)
            if not path.is_file():
                raise PoseInputError(f"{name}: no such pose file")
            data = path.read_bytes()
        else:
            data = source
        if len(data) == 0:
            raise PoseInputError(f"{name}: empty file (0 bytes), not a .pose file")
        try:
            pose = Pose.read(io.BytesIO(data))
        except Exception as e:  # pose-format raises struct/Unicode/Value errors on corrupt data
            raise PoseInputError(f"{name}: not a readable .pose file ({type(e).__name__}: {e})") from None
    check_pose(pose, name)
    return pose


def check_pose(pose: Pose, name: str = "<Pose>") -> None:
    """Raise :class:`PoseInputError` unless the pose has frames (not too many) and a plausible frame rate."""
    shape = pose.body.data.shape
    if pose.body.data.ndim != 4 or shape[0] == 0:
        raise PoseInputError(f"{name}: pose has zero frames")
    if shape[0] > MAX_FRAMES or shape[0] * shape[1] * shape[2] > MAX_VALUES:
        raise PoseInputError(f"{name}: {shape[0]} frames of {shape[1]} x {shape[2]} points is too large "
                             f"(at most {MAX_FRAMES} frames and {MAX_VALUES} frames x people x points)")
    fps = float(pose.body.fps)
    if not FPS_RANGE[0] <= fps <= FPS_RANGE[1]:  # also false for NaN
        raise PoseInputError(f"{name}: the header's frame rate is {fps:g} fps; expected {FPS_RANGE[0]:g} to "
                             f"{FPS_RANGE[1]:g}")


def crop_pose(pose: Pose, start_ms: float | None, end_ms: float | None, name: str = "<Pose>") -> Pose:
    """Keep the frames between ``start_ms`` and ``end_ms`` (either may be None/NaN = open)."""
    no_start = start_ms is None or start_ms != start_ms
    no_end = end_ms is None or end_ms != end_ms
    if no_start and no_end:
        return pose
    fps = float(pose.body.fps)
    a = 0 if no_start else int(start_ms * fps / 1000)
    b = None if no_end else int(-(-end_ms * fps // 1000))
    pose = Pose(pose.header, pose.body[a:b])
    if pose.body.data.shape[0] == 0:
        raise PoseInputError(f"{name}: no frames between {start_ms} ms and {end_ms} ms")
    return pose
