"""Baselines reported beside the model: chance and raw keypoints.

Raw-keypoint features are the shoulder-normalised keypoints, mean- and std-pooled over frames
(missing points ignored), z-scored with training statistics. For pose -> text retrieval they rank a
candidate text by cosine similarity to the training poses that share its parts: the mean feature of
the training poses with the same sign language plus that of those with the same text (a
nearest-class-mean that also works for (language, text) pairs never seen together in training).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from signclip.eval.retrieval import similarity_metrics, unique_texts


def keypoint_features(arrays: list[np.ndarray]) -> np.ndarray:
    """(N, 2*P*D): per-dimension mean and std over frames, missing points as 0."""
    feats = []
    for a in arrays:
        flat = a.reshape(a.shape[0], -1)
        seen = np.isfinite(flat).any(0)
        safe = np.where(seen, flat, 0.0)
        mean = np.where(seen, np.nanmean(safe, 0), 0.0)
        std = np.where(seen, np.nanstd(safe, 0), 0.0)
        feats.append(np.concatenate([mean, std]))
    return np.nan_to_num(np.stack(feats)).astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)


def keypoint_retrieval_scores(train_feats: np.ndarray, train_df: pd.DataFrame, test_feats: np.ndarray,
                              candidates: pd.DataFrame) -> np.ndarray:
    """(N test, M candidates) scores; ``candidates`` has one row per unique text with its
    ``text`` and ``signed_language``."""
    mu, sd = train_feats.mean(0), train_feats.std(0) + 1e-6
    train_z, test_z = _unit((train_feats - mu) / sd), _unit((test_feats - mu) / sd)
    scores = np.zeros((len(test_z), len(candidates)), dtype=np.float32)
    for col in ("signed_language", "text"):
        keys = train_df[col].astype(str).to_numpy()
        protos = {k: _unit(train_z[keys == k].mean(0)) for k in np.unique(keys)}
        for j, key in enumerate(candidates[col].astype(str)):
            if key in protos:
                scores[:, j] += test_z @ protos[key]
    return scores


def keypoint_baseline_metrics(train_arrays: list[np.ndarray], train_df: pd.DataFrame,
                              test_arrays: list[np.ndarray], test_df: pd.DataFrame,
                              test_prompts: list[str]) -> dict[str, float]:
    """Both retrieval directions for the raw-keypoint baseline on the test split."""
    texts, index = unique_texts(test_prompts)
    first = [test_prompts.index(t) for t in texts]
    candidates = test_df.iloc[first].reset_index(drop=True)
    sim = keypoint_retrieval_scores(keypoint_features(train_arrays), train_df, keypoint_features(test_arrays),
                                    candidates)
    return similarity_metrics(sim, index)
