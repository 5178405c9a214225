"""Padding preprocessed poses into batches."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pad_arrays(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """List of (T_i, P, D) arrays -> (B, T_max, P*D) float32 (NaN = missing) and (B, T_max) bool mask.
    Padded frames are NaN (missing points standardise to 0), not zeros, which standardise to large values
    that dominate the per-tensor scale of int8 (dynamically quantised) inference."""
    t_max = max(a.shape[0] for a in arrays)
    feat = arrays[0].shape[1] * arrays[0].shape[2]
    x = np.full((len(arrays), t_max, feat), np.nan, dtype=np.float32)
    mask = np.zeros((len(arrays), t_max), dtype=bool)
    for i, a in enumerate(arrays):
        x[i, : a.shape[0]] = a.reshape(a.shape[0], -1)
        mask[i, : a.shape[0]] = True
    return x, mask


def pad_poses(arrays: Sequence[np.ndarray]):
    """:func:`pad_arrays` as torch tensors (torch imported here so this module stays torch-free)."""
    import torch

    x, mask = pad_arrays(arrays)
    return torch.from_numpy(x), torch.from_numpy(mask)
