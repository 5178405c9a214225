"""Videos to MediaPipe Holistic poses (the optional ``signclip[video]`` extra).

``video_to_pose`` gives the same ``Pose`` as pose-format's ``video_to_pose`` command (legacy Holistic,
model_complexity 1, 576 points: body 33, face 468, hands 2x21, body world landmarks 33) and keeps the
video's fps. ``convert_videos`` converts files or folders to ``.pose`` in worker processes, skipping
videos whose ``.pose`` already exists; with ``anonymize`` it writes anonymised poses
(:mod:`signclip.pose.anonymize`) and takes ``.pose`` files as well as videos. mediapipe is imported only
when a video is converted, so this module (and the video detection used by
:func:`signclip.pose.io.read_pose`) works without the extra. ``signclip pose`` (:mod:`signclip.cli.embedding`)
is the command line for :func:`convert_videos`.
"""
from __future__ import annotations

import io
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Iterable, Iterator, Union

import numpy as np
from pose_format import Pose

from signclip.errors import PoseInputError
from signclip.files import atomic_file
from signclip.pose.anonymize import anonymize_pose

VideoSource = Union[str, Path, bytes]

VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".qt", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
    ".wmv", ".asf", ".flv", ".3gp", ".3g2", ".ogv", ".ogg",
})
INSTALL_COMMAND = 'pip install "signclip[video]"'
# The legacy Holistic solution ships only the model_complexity=1 pose model offline.
HOLISTIC_CONFIG = {"model_complexity": 1}
# Components whose points show a person (world landmarks come with POSE_LANDMARKS).
_PERSON_COMPONENTS = ("POSE_LANDMARKS", "FACE_LANDMARKS", "LEFT_HAND_LANDMARKS", "RIGHT_HAND_LANDMARKS")


class VideoExtraMissingError(PoseInputError, ImportError):
    """The ``signclip[video]`` extra (mediapipe) is not installed."""


def is_video_path(path: str | Path) -> bool:
    """Whether a path names a video, by its extension."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def is_video_bytes(data: bytes, name: str | None = None) -> bool:
    """Whether bytes are a video: container magic bytes, else the extension of ``name``."""
    head = data[:16]
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"):  # MP4 / MOV / 3GP
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return True
    if head[:4] in (b"\x1a\x45\xdf\xa3", b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3", b"OggS"):  # MKV/WebM, MPEG, Ogg
        return True
    if head[:3] == b"FLV" or head[:8] == b"\x30\x26\xb2\x75\x8e\x66\xcf\x11":  # FLV, ASF/WMV
        return True
    if len(data) > 188 and data[0] == 0x47 and data[188] == 0x47:  # MPEG transport stream
        return True
    return bool(name) and is_video_path(str(name))


def _holistic():
    """pose-format's ``load_holistic``, or a clear error naming the pip command."""
    try:
        import mediapipe  # noqa: F401
        from pose_format.utils.holistic import load_holistic
    except ImportError as e:
        raise VideoExtraMissingError(
            f"video input needs the video extra (mediapipe): {INSTALL_COMMAND} ({type(e).__name__}: {e})"
        ) from None
    return load_holistic


def video_to_pose(source: VideoSource, name: str | None = None, progress: bool = False,
                  max_seconds: float | None = None) -> Pose:
    """Run MediaPipe Holistic over every frame of a video (path or bytes) -> ``Pose`` at the video's fps.

    Raises :class:`PoseInputError` when the file is missing or cannot be decoded, is longer than
    ``max_seconds`` (checked from its header before decoding, and while decoding), or no person is
    detected in any frame; :class:`VideoExtraMissingError` when mediapipe is not installed.
    """
    if name is None:
        name = str(source) if isinstance(source, (str, Path)) else f"<{len(source)} bytes>"
    if isinstance(source, (str, Path)) and not Path(source).is_file():
        raise PoseInputError(f"{name}: no such video file")
    if isinstance(source, bytes) and len(source) == 0:
        raise PoseInputError(f"{name}: empty file (0 bytes), not a video")
    load_holistic = _holistic()
    from simple_video_utils.frames import read_frames_exact
    from simple_video_utils.metadata import open_video, video_metadata_from_container

    src = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    try:
        with open_video(src) as container:
            meta = video_metadata_from_container(container)
            if not meta.fps or meta.fps <= 0:
                raise PoseInputError(f"{name}: the video has no frame rate")
            frames = read_frames_exact(container)
            if max_seconds is not None:
                frames = _at_most(frames, meta, max_seconds, name)
            if progress:
                from tqdm import tqdm

                frames = tqdm(frames, total=meta.nb_frames, unit="frame", desc=Path(name).name)
            pose = load_holistic(frames, fps=meta.fps, width=meta.width, height=meta.height,
                                 additional_holistic_config=dict(HOLISTIC_CONFIG))
    except PoseInputError:
        raise
    except ValueError as e:
        if "at least one array" in str(e):  # pose-format stacks zero frames
            raise PoseInputError(f"{name}: the video has no decodable frames") from None
        raise PoseInputError(f"{name}: cannot decode the video ({e})") from None
    except Exception as e:  # PyAV/simple-video-utils raise RuntimeError, av.FFmpegError, OSError, IndexError
        cause = e.__cause__ or e
        raise PoseInputError(f"{name}: cannot decode the video ({type(cause).__name__}: {cause})") from None
    check_person(pose, name)
    return pose


def _at_most(frames: Iterable, meta, max_seconds: float, name: str) -> Iterator:
    """The frames of a video no longer than ``max_seconds``: refused from the header's duration when it has
    one, else once decoding passes the limit."""
    duration = meta.duration or (meta.nb_frames / meta.fps if meta.nb_frames else None)
    if duration is not None and duration > max_seconds:
        raise PoseInputError(f"{name}: the video lasts {duration:.1f} s; at most {max_seconds:g} s are accepted")
    limit = int(max_seconds * meta.fps) + 1
    for i, frame in enumerate(frames):
        if i >= limit:
            raise PoseInputError(f"{name}: the video lasts more than {max_seconds:g} s; at most {max_seconds:g} s "
                                 "are accepted")
        yield frame


def check_person(pose: Pose, name: str = "<Pose>") -> None:
    """Raise :class:`PoseInputError` when no body, face or hand point is seen in any frame."""
    offset, seen = 0, False
    conf = np.asarray(pose.body.confidence)  # (T, people, points)
    for component in pose.header.components:
        n = len(component.points)
        if component.name in _PERSON_COMPONENTS and (conf[..., offset: offset + n] > 0).any():
            seen = True
        offset += n
    if not seen:
        raise PoseInputError(f"{name}: no person detected in any of the {conf.shape[0]} frames")


def write_pose(pose: Pose, out: str | Path) -> None:
    """Write a ``.pose`` file crash-safely (a partial file never looks converted)."""
    with atomic_file(out) as tmp, open(tmp, "wb") as f:
        pose.write(f)


def convert_video(video: str | Path, out: str | Path, progress: bool = False, anonymize: str | None = None) -> int:
    """Convert one video to a ``.pose`` file, anonymised with the appearance ``anonymize`` (``"mean"`` or a
    ``.pose`` file) when given, which also takes a ``.pose`` file for ``video``; returns its number of frames."""
    if anonymize and not is_video_path(video):
        try:
            pose = Pose.read(Path(video).read_bytes())
        except OSError as e:
            raise PoseInputError(f"{video}: cannot read the pose file ({e.strerror or e})") from None
    else:
        pose = video_to_pose(video, progress=progress)
    if anonymize:
        pose = anonymize_pose(pose, anonymize, str(video))
    write_pose(pose, out)
    return int(pose.body.data.shape[0])


def _convert_task(video: str, out: str, progress: bool = False, anonymize: str | None = None
                  ) -> tuple[str, int, str | None, float]:
    """Worker: (video, frames, error message or None, seconds)."""
    start = time.perf_counter()
    try:
        return video, convert_video(video, out, progress, anonymize), None, time.perf_counter() - start
    except Exception as e:  # reported in the summary; other videos go on
        msg = str(e) if isinstance(e, PoseInputError) else f"{video}: {type(e).__name__}: {e}"
        return video, 0, msg, time.perf_counter() - start


@dataclass
class ConversionSummary:
    """What ``convert_videos`` did."""

    converted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    frames: int = 0
    seconds: float = 0.0

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        lines = [f"converted {len(self.converted)}, skipped {len(self.skipped)} (already converted), "
                 f"failed {len(self.failed)}; {self.frames} frames in {self.seconds:.1f} s "
                 f"({self.frames_per_second:.1f} frames/s)"]
        lines += [f"  FAILED {msg}" for msg in self.failed.values()]
        return "\n".join(lines)


def plan_conversions(source: str | Path, out: str | Path, poses: bool = False) -> list[tuple[Path, Path]]:
    """(video, .pose) pairs: a folder's videos (recursively; with ``poses`` its ``.pose`` files too) mirrored
    under ``out``, or one file to ``out`` (a ``.pose`` path, or a folder that receives ``<stem>.pose``)."""
    source, out = Path(source), Path(out)

    def wanted(p: Path) -> bool:
        return p.is_file() and (is_video_path(p) or (poses and p.suffix.lower() == ".pose"))

    if source.is_dir():
        pairs = [(v, (out / v.relative_to(source)).with_suffix(".pose")) for v in sorted(source.rglob("*"))
                 if wanted(v)]
    elif source.is_file():
        pairs = [(source, out if out.suffix == ".pose" else out / f"{source.stem}.pose")]
    else:
        raise PoseInputError(f"{source}: no such video file or folder")
    same = next((src for src, dst in pairs if dst.resolve() == src.resolve()), None)
    if same is not None:
        raise PoseInputError(f"{same}: the output would overwrite the input; write to another folder")
    return pairs


def convert_videos(source: str | Path | Iterable[tuple[Path, Path]], out: str | Path | None = None,
                   workers: int = 1, overwrite: bool = False, progress: bool = True,
                   anonymize: str | None = None) -> ConversionSummary:
    """Convert a video or a folder of videos to ``.pose`` files under ``out``; with ``anonymize`` (``"mean"``
    or an appearance ``.pose`` file) the poses are anonymised, and ``.pose`` files are taken too.

    Videos whose ``.pose`` exists are skipped (resumable) unless ``overwrite``; ``workers`` > 1 runs
    that many processes. Failures are collected in the summary, never raised.
    """
    from tqdm import tqdm

    pairs = list(source) if out is None else plan_conversions(source, out, poses=bool(anonymize))  # type: ignore
    summary = ConversionSummary()
    todo, targets = [], {}
    for video, pose_path in pairs:
        if pose_path in targets:  # e.g. sign.mp4 and sign.mov in one folder
            summary.failed[str(video)] = f"{video}: same output {pose_path} as {targets[pose_path]}; not converted"
        elif not overwrite and pose_path.is_file() and pose_path.stat().st_size > 0:
            summary.skipped.append(str(video))
        else:
            todo.append((str(video), str(pose_path)))
        targets.setdefault(pose_path, video)
    if any(is_video_path(video) for video, _ in todo):
        _holistic()  # fail once, early, when the extra is missing
    start = time.perf_counter()
    bar = tqdm(total=len(todo), unit="video", desc="video -> pose", disable=not progress or len(todo) < 2)

    def record(result: tuple[str, int, str | None, float]) -> None:
        video, frames, error, _ = result
        if error is None:
            summary.converted.append(video)
            summary.frames += frames
        else:
            summary.failed[video] = error
        bar.update(1)
        bar.set_postfix(frames_per_s=f"{summary.frames / max(time.perf_counter() - start, 1e-9):.1f}",
                        failed=len(summary.failed))

    workers = max(1, min(workers, len(todo)))
    if workers == 1:
        for task in todo:  # one video alone: a bar over its frames
            record(_convert_task(*task, progress=progress and len(todo) == 1, anonymize=anonymize))
    else:  # spawn: mediapipe's threads do not survive fork
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            for future in as_completed([pool.submit(_convert_task, *task, anonymize=anonymize) for task in todo]):
                record(future.result())
    bar.close()
    summary.seconds = time.perf_counter() - start
    return summary
