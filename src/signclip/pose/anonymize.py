"""Pose anonymisation, the paper's E6.2 (in training) and E8.1 (at zero-shot), with pose-anonymization, the
paper authors' library: the signer's appearance (the first frame's body proportions and face shape) is replaced
by the library's mean appearance (``"mean"``) or by that of a given ``.pose`` file. The hands and the wrists
keep their own positions, so the signing is unchanged; every other point moves by the difference between the
two appearances (the library's ``change_appearace``). Where the library reads the appearance off frame 0, here
each point's appearance is its first seen position: the same where frame 0 shows the whole person, and no pose
loses its body when the person appears a frame late (14 of the 3,163 traduttore clips start with an empty frame).
The result is scaled as the library writes poses (shoulders 204.8 px apart);
:mod:`signclip.pose.preprocess` normalises it like any pose (``PoseConfig.anonymize``), and
``signclip pose --anonymize`` writes anonymised ``.pose`` files (:func:`signclip.pose.video.convert_videos`).

A model whose config names an appearance file keeps a copy of it (:data:`APPEARANCE_FILE`) beside its weights,
so a saved model is self-contained (:func:`bundle_appearance`, :func:`resolve_appearance`).
"""
from __future__ import annotations

import copy
import shutil
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.ma as ma
from pose_anonymization.appearance import change_appearace, get_mean_appearance
from pose_format import Pose
from pose_format.utils.generic import pose_normalization_info

from signclip.config import PoseConfig
from signclip.errors import PoseInputError

MEAN = "mean"  # PoseConfig.anonymize: pose-anonymization's mean appearance
APPEARANCE_FILE = "appearance.pose"  # a given appearance, copied into a saved model's folder


@lru_cache(maxsize=8)
def appearance_pose(appearance: str) -> Pose:
    """The pose whose first frame is the target appearance: ``"mean"`` or the path of a ``.pose`` file."""
    if appearance == MEAN:
        return get_mean_appearance()
    path = Path(appearance)
    try:
        pose = Pose.read(path.read_bytes())
    except OSError as e:
        raise PoseInputError(f"pose.anonymize: cannot read the appearance file {path} ({e.strerror or e})") from None
    except Exception as e:  # pose-format raises anything on a file that is no pose
        raise PoseInputError(f"pose.anonymize: {path} is not a readable .pose file ({type(e).__name__}: {e}); "
                             f"give {MEAN!r} or a .pose file") from None
    if pose.body.data.shape[0] == 0:
        raise PoseInputError(f"pose.anonymize: the appearance file {path} has no frame")
    return pose


def first_seen(data: ma.MaskedArray) -> ma.MaskedArray:
    """(frames, people, points, dims) -> (people, points, dims): each point where it is first seen (masked
    where never seen)."""
    seen = ~ma.getmaskarray(data).any(-1)  # (T, people, P)
    first = seen.argmax(0)[None, ..., None]  # (1, people, P, 1)
    picked = np.take_along_axis(ma.getdata(data), first, axis=0)[0]
    return ma.masked_array(picked, mask=np.broadcast_to(~seen.any(0)[..., None], picked.shape))


def appearance_of(pose: Pose) -> ma.MaskedArray:
    """(people, points, dims): the pose's appearance, shoulder-normalised as pose-anonymization's (in place)."""
    return first_seen(pose.normalize(pose_normalization_info(pose.header)).body.data)


def anonymize_pose(pose: Pose, appearance: str = MEAN, name: str = "<Pose>") -> Pose:
    """A copy of ``pose`` (MediaPipe Holistic, 3-D) with the appearance of ``appearance`` instead of its own,
    as pose-anonymization's ``transfer_appearance`` (``remove_appearance`` when ``appearance`` is ``"mean"``)."""
    target = appearance_pose(appearance)
    known = {(c.name, p) for c in target.header.components for p in c.points}
    lacking = [f"{c.name} {p}" for c in pose.header.components for p in c.points if (c.name, p) not in known]
    if lacking:
        what = "the mean appearance" if appearance == MEAN else f"the appearance {appearance}"
        raise PoseInputError(f"{name}: {what} lacks {len(lacking)} of the pose's points (e.g. {lacking[0]}); "
                             "anonymisation takes MediaPipe Holistic poses")
    if pose.body.data.shape[-1] != target.body.data.shape[-1]:
        raise PoseInputError(f"{name}: {pose.body.data.shape[-1]}-D points; anonymisation takes 3-D (XYZ) poses")
    components = [c.name for c in pose.header.components]
    target = target.get_components(components, {c.name: c.points for c in pose.header.components})
    own = Pose(copy.deepcopy(pose.header), pose.body.copy())  # the library changes header and body in place
    return change_appearace(own, appearance_of(own) - appearance_of(target))


def bundle_appearance(cfg: PoseConfig, folder: Path) -> PoseConfig:
    """``cfg`` as a saved model in ``folder`` keeps it: a given appearance file copied into the folder and
    named relative to it (the mean appearance and no anonymisation need nothing)."""
    if cfg.anonymize in (None, MEAN):
        return cfg
    source = Path(cfg.anonymize)
    appearance_pose(str(source))  # readable, else a clear error before anything is written
    if source.resolve() != (folder / APPEARANCE_FILE).resolve():
        shutil.copyfile(source, folder / APPEARANCE_FILE)
    return replace(cfg, anonymize=APPEARANCE_FILE)


def resolve_appearance(cfg: PoseConfig, folder: Path) -> PoseConfig:
    """``cfg`` of a model loaded from ``folder``: a relative appearance file is the model's own copy."""
    if cfg.anonymize in (None, MEAN) or Path(cfg.anonymize).is_absolute():
        return cfg
    return replace(cfg, anonymize=str((folder / cfg.anonymize).resolve()))
