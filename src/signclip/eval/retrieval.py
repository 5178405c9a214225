"""The paper's retrieval metrics.

* text -> pose: one query per *unique* text; every pose with that text is a positive;
  P@k = share of the top k poses that are positives; MedianR = median rank of the first positive.
* pose -> text: each pose is a query against the unique texts (duplicates collapsed);
  R@k = share of poses whose text is in the top k; MedianR = median rank of the correct text.

Ranks are 1-based; ties are broken by candidate order (a stable sort). A query whose answer is not among
the candidates ranks it after all of them (rank C + 1): never a hit. The same ranking gives the
recognition metrics (:mod:`signclip.eval.recognition`: classes as the candidates).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from signclip.batching import pad_poses
from signclip.data.arrays import SplitData
from signclip.models.fine_grained import fine_grained_similarity as fg
from signclip.models.fine_grained import pose_windows, text_tokens
from signclip.models.signclip import SignCLIP, evaluating

KS = (1, 5, 10)


def unique_texts(texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Unique texts in first-seen order, and for each item the index of its text."""
    index: dict[str, int] = {}
    ids = np.array([index.setdefault(t, len(index)) for t in texts])
    return list(index), ids


def ranks_of(sim: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """(Q, C) scores and (Q, C) bool positives -> (Q,) 1-based rank of each query's best positive
    (C + 1 for a query without a positive)."""
    order = np.argsort(-sim, axis=1, kind="stable")  # (Q, C) candidates, best first
    hit = np.take_along_axis(positives, order, axis=1)  # (Q, C) positive at each rank
    return np.where(hit.any(1), hit.argmax(1) + 1, sim.shape[1] + 1)


def pose_to_text(sim: np.ndarray, text_index: np.ndarray, ks: Sequence[int] = KS) -> dict[str, float]:
    """sim: (N poses, M unique texts); text_index: (N,) the correct text of each pose (-1: none of the
    candidates, never a hit). Also the class ranking of recognition: (N poses, C classes), true classes."""
    text_index = np.asarray(text_index)
    positives = np.zeros(sim.shape, dtype=bool)
    known = np.flatnonzero(text_index >= 0)
    positives[known, text_index[known]] = True
    ranks = ranks_of(sim, positives)
    if not len(ranks):
        return {**{f"R@{k}": 0.0 for k in ks}, "MedianR": float("nan")}
    found = positives.any(1)  # the correct text is a candidate (else rank C + 1, never within the top k)
    out = {f"R@{k}": float(((ranks <= k) & found).mean()) for k in ks}
    out["MedianR"] = float(np.median(ranks))
    return out


def text_to_pose(sim: np.ndarray, text_index: np.ndarray, ks: Sequence[int] = KS) -> dict[str, float]:
    """sim: (N poses, M unique texts) as above; every pose of a text is a positive for its query."""
    s = sim.T  # (M, N)
    positives = text_index[None, :] == np.arange(s.shape[0])[:, None]  # (M, N)
    hit = np.take_along_axis(positives, np.argsort(-s, axis=1, kind="stable"), axis=1)  # (M, N)
    out = {f"P@{k}": float(hit[:, :k].sum(1).mean() / k) for k in ks}
    out["MedianR"] = float(np.median(hit.argmax(1) + 1))
    return out


def similarity_metrics(sim: np.ndarray, text_index: np.ndarray) -> dict[str, float]:
    """Both directions from a (N poses, M unique texts) similarity matrix and each pose's text (N,)."""
    return {**{f"pose_to_text/{k}": v for k, v in pose_to_text(sim, text_index).items()},
            **{f"text_to_pose/{k}": v for k, v in text_to_pose(sim, text_index).items()}}


def retrieval_metrics(pose_emb: np.ndarray, text_emb: np.ndarray, text_index: np.ndarray) -> dict[str, float]:
    """Both directions from embeddings: pose_emb (N, E), text_emb (M unique, E), text_index (N,)."""
    return similarity_metrics(pose_emb @ text_emb.T, text_index)


def pose_to_text_loss(sim: np.ndarray, text_index: np.ndarray, scale: float) -> float:
    """Mean cross-entropy of each pose's text among the (N poses, M texts) candidates at temperature scale
    ``scale``: the pose side of the contrastive loss (poses whose text is no candidate are left out)."""
    known = np.flatnonzero(np.asarray(text_index) >= 0)
    logits = scale * sim[known].astype(np.float64)  # (K, M)
    logits -= logits.max(1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    return float(-log_p[np.arange(len(known)), np.asarray(text_index)[known]].mean()) if len(known) else float("nan")


def evaluate_split(model: SignCLIP, data: SplitData, batch_size: int = 64) -> dict[str, float]:
    """Retrieval metrics on one preprocessed split with its prompts (unique prompts as text candidates), and the
    contrastive loss of its poses (``pose_to_text/loss``, at the model's temperature)."""
    texts, index = unique_texts(data.prompts)
    pose_emb = model.encode_arrays(data.arrays, batch_size, progress=False)
    text_emb = model.encode_text(texts, batch_size=batch_size, progress=False)
    scale = float(model.scale().detach())
    return {**retrieval_metrics(pose_emb, text_emb, index),
            "pose_to_text/loss": pose_to_text_loss(pose_emb @ text_emb.T, index, scale)}


def chance_metrics(text_index: np.ndarray, ks: Sequence[int] = KS) -> dict[str, float]:
    """Expected metrics of a random ranking."""
    m = int(text_index.max()) + 1
    n = len(text_index)
    counts = np.bincount(text_index, minlength=m)
    out = {f"pose_to_text/{k}": v for k, v in chance_ranking(m, ks).items()}
    out.update({f"text_to_pose/P@{k}": float(counts.mean() / n) for k in ks})
    out["text_to_pose/MedianR"] = float(np.median((n + 1) / (counts + 1)))
    return out


def chance_ranking(candidates: int, ks: Sequence[int] = KS) -> dict[str, float]:
    """R@k and median rank of one correct answer among ``candidates`` in random order."""
    m = max(1, candidates)
    return {**{f"R@{k}": min(1.0, k / m) for k in ks}, "MedianR": (m + 1) / 2}


# ---- fine-grained (window x token) similarity, next to the global one -------------------------------
def fine_grained_similarity(model: SignCLIP, poses: Sequence, texts: Sequence[str], window: int = 4,
                            batch_size: int = 32) -> np.ndarray:
    """(N poses, M texts) fine-grained similarity (local windows of ``window`` frames against text
    tokens, :func:`signclip.models.fine_grained.fine_grained_similarity`); ``texts`` are full prompts.

    ``poses`` are anything :meth:`SignCLIP.encode_pose` takes. Padding never changes a score."""
    arrays = [model.preprocess_pose(p) for p in poses]
    sim = np.zeros((len(arrays), len(texts)), dtype=np.float32)
    with torch.no_grad(), evaluating(model):
        toks, masks = [], []
        for s in range(0, len(texts), batch_size):
            tok = model.tokenize(list(texts[s: s + batch_size]))
            h = model.text.token_features(tok["input_ids"], tok["attention_mask"])  # (b, L, H)
            toks.append(text_tokens(model, h))
            masks.append(tok["attention_mask"].bool())
        for s in range(0, len(arrays), batch_size):
            x, mask = pad_poses(arrays[s: s + batch_size])
            x, mask = x.to(model.device), mask.to(model.device)
            win, win_mask = pose_windows(model, model.pose.frame_features(x, mask), mask, window)  # (b, K, E)
            for j, (t, tm) in enumerate(zip(toks, masks)):
                sim[s: s + len(x), j * batch_size: j * batch_size + len(t)] = fg(win, win_mask, t, tm).cpu().numpy()
    return sim


def combined_similarity(global_sim: np.ndarray, fine_sim: np.ndarray, fine_weight: float = 0.5) -> np.ndarray:
    """Rank by ``(1 - fine_weight) * global + fine_weight * fine`` (both cosine-like, in [-1, 1])."""
    return (1.0 - fine_weight) * global_sim + fine_weight * fine_sim
