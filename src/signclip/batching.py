"""Batching for inference: pad preprocessed poses, and encode items sorted by length.

Torch-free (torch is imported only by :func:`pad_poses`), so the ONNX runtime shares it.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib.util import find_spec

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
    """:func:`pad_arrays` as torch tensors: (B, T_max, P*D) float32 and (B, T_max) bool."""
    import torch

    x, mask = pad_arrays(arrays)
    return torch.from_numpy(x), torch.from_numpy(mask)


def encode_by_length(lengths: Sequence[int], batch_size: int, encode: Callable[[np.ndarray], np.ndarray], dim: int,
                     progress: bool | None = None, desc: str = "embedding") -> np.ndarray:
    """Encode N items in batches of similar length (longest first), results in input order.

    ``encode(idx)`` embeds the items at the (b,) indices ``idx`` -> (b, dim). Sorting keeps padding small;
    the encoders are padding-correct, so the order never changes a result. The progress bar (tqdm) shows by
    default when there are more than four batches and tqdm is installed (the ONNX runtime does without it).
    Returns (N, dim) float32."""
    order = np.argsort([-n for n in lengths], kind="stable")
    out = np.zeros((len(order), dim), dtype=np.float32)
    starts = range(0, len(order), batch_size)
    show = progress if progress is not None else len(order) > 4 * batch_size and find_spec("tqdm") is not None
    if show:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=desc, unit="batch")
    for s in starts:
        idx = order[s: s + batch_size]
        out[idx] = encode(idx)
    return out
