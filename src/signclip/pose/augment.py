"""Training-time augmentation on preprocessed (frames, points, dims) arrays, as in the paper."""
from __future__ import annotations

import numpy as np

from signclip.config import AugmentConfig
from signclip.pose.layout import Layout
from signclip.pose.preprocess import mirror, resample_frames


def augment(x: np.ndarray, layout: Layout, cfg: AugmentConfig, rng: np.random.Generator,
            max_frames: int) -> np.ndarray:
    """Random flip, a hand dropped for a stretch of frames, 2-D rotation/shear/scale, temporal speed change and
    Gaussian noise. ``x``: (frames, points, dims), NaN where missing; never modified in place."""
    if cfg.flip_p > 0 and rng.random() < cfg.flip_p:
        x = mirror(x, layout)
    if cfg.hand_drop_p > 0 and rng.random() < cfg.hand_drop_p:
        x = drop_hand(x, layout, rng)
    if cfg.affine_sigma > 0:
        s = cfg.affine_sigma
        angle = rng.normal(0, s)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        shear = np.array([[1.0, rng.normal(0, s)], [0.0, 1.0]])
        scale = np.diag(1.0 + rng.normal(0, s, size=2))
        m = (rot @ shear @ scale).astype(np.float32)  # (2, 2)
        x = x.copy()
        x[..., :2] = x[..., :2] @ m.T
    if cfg.speed_sigma > 0 and x.shape[0] > 1:
        speed = max(0.3, rng.normal(1.0, cfg.speed_sigma))
        x = resample_frames(x, int(np.clip(round(x.shape[0] / speed), 2, max_frames)))
    if cfg.noise_sigma > 0:
        x = x + rng.normal(0, cfg.noise_sigma, size=x.shape).astype(np.float32)
    return x.astype(np.float32, copy=False)


def drop_hand(x: np.ndarray, layout: Layout, rng: np.random.Generator) -> np.ndarray:
    """One hand, left or right at random, missing (NaN) over a random stretch of 25-100 % of the frames: a hand
    the tracker lost or the camera cut off, as in recordings framed differently from the training data."""
    hand = list(layout.hand_slices.values())[rng.integers(2)]
    t = x.shape[0]
    length = max(1, round(t * rng.uniform(0.25, 1.0)))
    start = rng.integers(t - length + 1)
    x = x.copy()
    x[start:start + length, hand] = np.nan
    return x
