"""From a pose-format ``Pose`` to the array the model reads.

Steps (each a small function):
0. optionally, on the ``Pose``: the paper's E6 wrist correction (pose-format's ``correct_wrists``: each body
   wrist moved to its hand's wrist where the hand is seen) and E6.2/E8.1 anonymisation
   (:mod:`signclip.pose.anonymize`);
1. select the layout's points by name (body without legs, face contour, both hands);
2. shoulder normalisation: centre on the shoulder midpoint, scale shoulder width to 1 (one shift and
   scale for the whole pose, from the full pose's shoulders even where the layout has no body);
3. mirror a left-handed pose (left hand seen, right hand never) so the signing hand is the right one;
4. resample to the model's fps, at most ``max_frames`` frames (one resampling: a long pose or a low frame
   rate never expands beyond the cap; only the frames it reads are expanded to the layout's points).

Each step is configurable (:class:`~signclip.config.PoseConfig`); the reference SignCLIP's preprocessing
is ``shoulder_width="xyz"``, no mirroring, ``fps=None`` (frames as stored), hands not required.

:func:`prepare_pose` is the one entry point for any pose input (path, bytes, ``Pose`` or an already
preprocessed array, which is checked and capped instead): the torch model, the ONNX runtime and the
server all call it.

Missing points (masked, NaN, or of confidence 0 and, unless ``missing_confidence="zero"`` as in pose-format
and the reference SignCLIP, below 0) are NaN in the output; the model's per-dimension standardisation
(mean/std from the training set, stored in the model) turns them into 0.
"""
from __future__ import annotations

import numpy as np
from pose_format import Pose
from pose_format.utils.generic import correct_wrists

from signclip.config import PoseConfig
from signclip.errors import PoseInputError
from signclip.pose.anonymize import anonymize_pose
from signclip.pose.io import PoseSource, check_pose, describe, read_pose
from signclip.pose.layout import BODY, LEFT_HAND, RIGHT_HAND, Layout, get_layout

MAX_COORDINATE = 1e4  # shoulder widths from the shoulder centre
SHOULDERS = Layout("shoulders", ((BODY, "LEFT_SHOULDER"), (BODY, "RIGHT_SHOULDER")))
WRISTS = Layout("wrists", ((BODY, "LEFT_WRIST"), (BODY, "RIGHT_WRIST"), (LEFT_HAND, "WRIST"), (RIGHT_HAND, "WRIST")))
MISSING = {"zero_or_below": np.less_equal, "zero": np.equal}  # PoseConfig.missing_confidence: (conf, 0) -> missing


def header_indices(pose: Pose, layout: Layout) -> np.ndarray:
    """(P,) index of each layout point in the pose's header, -1 where the header lacks it."""
    index: dict[tuple[str, str], int] = {}
    for component in pose.header.components:
        for point in component.points:
            index[(component.name, point)] = len(index)
    return np.array([index.get(key, -1) for key in layout.points])


def check_holistic(pose: Pose, name: str = "<Pose>") -> None:
    """A MediaPipe Holistic pose has named shoulders (what the normalisation needs)."""
    if (header_indices(pose, SHOULDERS) < 0).any():
        comps = [c.name for c in pose.header.components]
        raise PoseInputError(f"{name}: not a MediaPipe Holistic pose (components {comps}); "
                             "other keypoint formats are read by signclip.pose.formats")


def select_points(pose: Pose, layout: Layout, name: str = "<Pose>", frames: np.ndarray | slice = slice(None),
                  missing_confidence: str = "zero_or_below") -> np.ndarray:
    """(frames, points, 3) float32 of the layout's points, NaN where missing; first person only. ``frames``:
    the frame indices to read (default all)."""
    check_holistic(pose, name)
    idx = header_indices(pose, layout)  # (P,)
    found = idx >= 0
    data, seen = found_points(pose, idx[found], frames, missing_confidence)  # (F, P_found, 3), (F, P_found)
    out = np.full((data.shape[0], len(layout), 3), np.nan, dtype=np.float32)
    out[:, found] = np.where(seen[..., None], data, np.nan)
    out[:, layout.missing_by_design] = np.nan
    return out


def found_points(pose: Pose, idx: np.ndarray, frames: np.ndarray | slice = slice(None),
                 missing_confidence: str = "zero_or_below") -> tuple[np.ndarray, np.ndarray]:
    """The header points ``idx`` of the first person at ``frames``: (F, k, 3) float32 coordinates (z = 0 for
    2-D poses) and (F, k) whether each is seen (not masked, a confidence that is not missing by
    ``missing_confidence``, every coordinate finite). Only these points are copied, never the whole layout in
    every frame."""
    body = pose.body
    data = np.ma.getdata(body.data)[frames, 0][:, idx].astype(np.float32)  # (F, k, D)
    seen = ~MISSING[missing_confidence](np.asarray(body.confidence)[frames, 0][:, idx], 0)  # (F, k)
    mask = np.ma.getmask(body.data)
    if mask is not np.ma.nomask:
        seen &= ~mask[frames, 0][:, idx].any(-1)
    if data.shape[-1] < 3:  # 2-D poses: z = 0
        data = np.concatenate([data, np.zeros_like(data[..., :1])], axis=-1)
    data = data[..., :3]
    return data, seen & np.isfinite(data).all(-1)


def hands_seen(pose: Pose, layout: Layout, missing_confidence: str = "zero_or_below") -> tuple[bool, bool]:
    """Whether the layout's (left, right) hand is seen in at least one frame of the pose."""
    idx = header_indices(pose, layout)
    return tuple(bool(found_points(pose, hand[hand >= 0], missing_confidence=missing_confidence)[1].any())
                 for hand in (idx[points] for points in layout.hand_slices.values()))  # type: ignore[return-value]


def normalize_shoulders(x: np.ndarray, shoulders: np.ndarray, name: str = "<Pose>", measure: str = "xy"
                        ) -> np.ndarray:
    """Centre on the mean shoulder midpoint and scale the mean shoulder width, measured in ``measure``
    ("xy" or "xyz"), to 1: one shift and one scale for the whole pose. ``shoulders``: (T, 2, 3) left, right.
    The width is measured in float64 (float32 overflows squaring coordinates of 1e20), relative to the
    coordinates' scale (a pose in pixels, in metres or scaled by 1e-20 is the same pose)."""
    if measure not in ("xy", "xyz"):
        raise ValueError(f"shoulder_width: {measure!r} is not 'xy' or 'xyz'")
    left, right = shoulders[:, 0], shoulders[:, 1]  # (T, 3) each
    valid = np.isfinite(left).all(-1) & np.isfinite(right).all(-1)
    if not valid.any():
        raise PoseInputError(f"{name}: no frame shows both shoulders, cannot normalise the pose")
    center = ((left[valid] + right[valid]) / 2).mean(0)
    pairs = np.stack([left[valid], right[valid]], 1)[..., : len(measure)].astype(np.float64)  # (V, 2, d)
    width = np.linalg.norm(pairs[:, 0] - pairs[:, 1], axis=-1).mean()
    scale = np.abs(pairs).max()
    if not width > 1e-6 * scale:  # any scale of a pose is fine; shoulders at one point are not
        raise PoseInputError(f"{name}: the shoulders coincide ({width:.3g} apart at coordinates up to {scale:.3g}), "
                             "cannot normalise the pose")
    return (x - center) / np.float32(width)


def hands_present(x: np.ndarray, layout: Layout) -> tuple[bool, bool]:
    """Whether the (left, right) hand is seen in at least one frame."""
    slices = layout.hand_slices
    return tuple(bool(np.isfinite(x[:, idx]).any()) for idx in slices.values())  # type: ignore[return-value]


def mirror(x: np.ndarray, layout: Layout) -> np.ndarray:
    """Mirror a shoulder-normalised pose horizontally (left and right swap, x negated)."""
    y = x[:, layout.mirror].copy()
    y[..., 0] = -y[..., 0]
    return y


def resample_positions(t: int, num_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear resampling of ``t`` frames to ``num_frames``: for each new frame its (lo, hi) source frames
    and the weight of hi; an exact frame does not read its neighbour."""
    pos = np.linspace(0, t - 1, num_frames) if t != num_frames else np.arange(t, dtype=float)
    lo = np.floor(pos).astype(int)
    hi = np.where(pos > lo, np.minimum(lo + 1, t - 1), lo)
    return lo, hi, pos - lo


def interpolate(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Frames ``x[lo] * (1 - w) + x[hi] * w``; a point missing in either neighbour is missing."""
    if (lo == hi).all():
        return x[lo]
    w = w.reshape(-1, *([1] * (x.ndim - 1))).astype(x.dtype)
    return x[lo] * (1 - w) + x[hi] * w


def resample_frames(x: np.ndarray, num_frames: int) -> np.ndarray:
    """Linearly resample (T, ...) to (num_frames, ...); a point missing in either neighbour is missing."""
    if x.shape[0] == num_frames:
        return x
    return interpolate(x, *resample_positions(x.shape[0], num_frames))


def adjust_pose(pose: Pose, cfg: PoseConfig, name: str = "<Pose>") -> Pose:
    """The steps on the ``Pose`` itself, each a new ``Pose``: E6 wrist correction, E6.2/E8.1 anonymisation."""
    check_holistic(pose, name)
    if cfg.correct_wrists:
        if (header_indices(pose, WRISTS) < 0).any():
            raise PoseInputError(f"{name}: correct_wrists needs the body's and both hands' wrists")
        pose = correct_wrists(pose)  # pose-format's: a copy
    if cfg.anonymize:
        pose = anonymize_pose(pose, cfg.anonymize, name)
    return pose


def pose_to_array(pose: Pose, cfg: PoseConfig, name: str = "<Pose>") -> np.ndarray:
    """Preprocess a ``Pose`` into (frames, points, dims) float32 with NaN for missing points.

    Only the frames the resampling reads are expanded to the layout's points (at most twice ``max_frames``),
    so memory follows the file, not its frames x the layout's points; shoulders and hands are looked for in
    every frame."""
    check_pose(pose, name)
    pose = adjust_pose(pose, cfg, name)
    layout = get_layout(cfg.layout)
    missing = cfg.missing_confidence
    shoulders = select_points(pose, SHOULDERS, name, missing_confidence=missing)  # (T, 2, 3)
    frames, fps = shoulders.shape[0], float(pose.body.fps)  # fps checked by read_pose
    resample = cfg.fps is not None and abs(fps - cfg.fps) > 1e-3  # fps None: the frames as stored
    target = max(1, round(frames * cfg.fps / fps)) if resample else frames
    lo, hi, w = resample_positions(frames, min(target, cfg.max_frames))
    read = np.union1d(lo, hi)  # the frames read, sorted
    x = select_points(pose, layout, name, read, missing)  # (F, P, 3)
    if not np.isfinite(x).any():
        raise PoseInputError(f"{name}: every coordinate is missing or NaN")
    x = normalize_shoulders(x, shoulders, name, cfg.shoulder_width)
    left, right = hands_seen(pose, layout, missing)
    if cfg.require_hands and not (left or right):
        raise PoseInputError(f"{name}: no hand detected in any frame (require_hands=True)")
    if cfg.mirror_left_handed and left and not right:
        x = mirror(x, layout)
    x = interpolate(x, np.searchsorted(read, lo), np.searchsorted(read, hi), w)
    check_magnitude(x, name)
    return np.ascontiguousarray(x[..., : cfg.dims], dtype=np.float32)


def check_magnitude(x: np.ndarray, name: str) -> None:
    """Shoulder-normalised keypoints more than :data:`MAX_COORDINATE` shoulder widths away are no body pose."""
    seen = x[np.isfinite(x)]
    if seen.size and np.abs(seen).max() > MAX_COORDINATE:
        raise PoseInputError(f"{name}: keypoints up to {np.abs(seen).max():.3g} shoulder widths from the "
                             f"shoulders (at most {MAX_COORDINATE:g}); not a body pose")


def cap_frames(x: np.ndarray, max_frames: int) -> np.ndarray:
    """(T, ...) -> at most ``max_frames`` frames, uniformly resampled when longer."""
    return resample_frames(x, max_frames) if x.shape[0] > max_frames else x


def check_array(x: np.ndarray, cfg: PoseConfig, name: str = "array") -> np.ndarray:
    """A preprocessed (T, P, D) array given by a caller -> float32 in the layout of ``cfg``; a point with
    a non-finite coordinate is missing (NaN). Rejects wrong shapes and arrays where nothing is seen."""
    expected = (len(get_layout(cfg.layout)), cfg.dims)
    if x.ndim != 3 or x.shape[1:] != expected or x.shape[0] == 0:
        raise PoseInputError(f"{name}: expected a preprocessed array of shape (frames>0, {expected[0]}, "
                             f"{expected[1]}), got {x.shape}")
    x = np.asarray(x, dtype=np.float32)
    x = np.where(np.isfinite(x).all(-1, keepdims=True), x, np.float32(np.nan))  # inf -> missing
    if np.isnan(x).all():
        raise PoseInputError(f"{name}: every coordinate is missing or NaN")
    check_magnitude(x, name)
    return x


def preprocess(source: PoseSource, cfg: PoseConfig, name: str | None = None) -> np.ndarray:
    """Read (path, bytes or ``Pose``) and preprocess; errors name the source."""
    name = name or describe(source)
    return pose_to_array(read_pose(source, name), cfg, name)


def prepare_pose(pose: PoseSource | np.ndarray, cfg: PoseConfig, name: str | None = None) -> np.ndarray:
    """Any pose input -> (T <= max_frames, P, D) float32 (NaN = missing) as the model reads it: a
    preprocessed array is checked and capped; a path, ``.pose`` bytes or ``Pose`` is read and preprocessed."""
    if isinstance(pose, np.ndarray):
        return cap_frames(check_array(pose, cfg, name or "array"), cfg.max_frames)
    return preprocess(pose, cfg, name or describe(pose))
