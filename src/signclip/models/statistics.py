"""Per-dimension mean/std of the pose tower's frame features, the statistics its standardisation uses.

Missing values (NaN) are ignored; a dimension never seen gets mean 0 and std 1, and every std is at
least 1e-3. Blocks of frames are combined with Chan et al.'s parallel formula, so a data set larger than
memory (packed shards) streams through the same code as one block in memory.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch


class FeatureStatistics:
    """Accumulate NaN-aware feature statistics over blocks of frames: ``update`` then ``result``."""

    def __init__(self, featurize: Callable[[torch.Tensor], torch.Tensor]):
        self.featurize = featurize  # (1, N, P*D) keypoints -> (1, N, F) features
        self.count: np.ndarray | None = None  # (F,) values seen per dimension
        self.mean: np.ndarray | None = None  # (F,)
        self.var: np.ndarray | None = None  # (F,) population variance

    def update(self, frames: np.ndarray) -> None:
        """Add a block of (N, P*D) keypoint frames (NaN = missing)."""
        with torch.no_grad():
            feats = self.featurize(torch.from_numpy(np.ascontiguousarray(frames))[None]).squeeze(0).numpy()  # (N, F)
        seen = np.isfinite(feats).any(0)
        safe = np.where(seen, feats, 0)
        count = np.isfinite(feats).sum(0)
        mean, var = np.nanmean(safe, 0), np.nanvar(safe, 0)  # (F,) each, in the features' dtype
        if self.count is None:
            self.count, self.mean, self.var = count, mean, var
            return
        total = self.count + count
        n_a, n_b = self.count.astype(np.float64), count.astype(np.float64)
        w = np.maximum(total, 1).astype(np.float64)
        delta = mean.astype(np.float64) - self.mean
        self.mean = self.mean + delta * n_b / w
        self.var = (self.var * n_a + var * n_b + delta ** 2 * n_a * n_b / w) / w
        self.count = total

    def add_poses(self, poses: Sequence[np.ndarray]) -> "FeatureStatistics":
        """Add the frames of preprocessed (T, P, D) poses as one block; returns the accumulator."""
        self.update(np.concatenate([a.reshape(a.shape[0], -1) for a in poses]))  # (sum T, P*D)
        return self

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std), float32 (F,) each."""
        if self.count is None:
            raise ValueError("feature statistics: no frames were added")
        seen = self.count > 0
        mean = np.where(seen, self.mean, 0.0)
        std = np.where(seen, np.sqrt(self.var), 1.0)
        return mean.astype(np.float32), np.maximum(std, 1e-3).astype(np.float32)
