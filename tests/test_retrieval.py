"""The paper's retrieval metrics against a naive implementation, on hand-made similarity matrices."""
from __future__ import annotations

import numpy as np
import pytest

from signclip.eval.retrieval import (
    chance_metrics,
    pose_to_text,
    ranks_of,
    retrieval_metrics,
    text_to_pose,
    unique_texts,
)


def naive_pose_to_text(sim, texts, ks):
    """Each pose is a query against the unique texts (duplicates collapsed); ties by first-seen order."""
    uniq = []
    for t in texts:
        if t not in uniq:
            uniq.append(t)
    ranks = []
    for i, t in enumerate(texts):
        cands = sorted(range(len(uniq)), key=lambda j: (-sim[i][j], j))
        ranks.append(cands.index(uniq.index(t)) + 1)
    out = {f"R@{k}": sum(r <= k for r in ranks) / len(ranks) for k in ks}
    out["MedianR"] = float(np.median(ranks))
    return out


def naive_text_to_pose(sim, texts, ks):
    """One query per unique text; every pose with that text is a positive; P@k = positives in top k / k."""
    uniq = []
    for t in texts:
        if t not in uniq:
            uniq.append(t)
    precisions = {k: [] for k in ks}
    first = []
    for j, u in enumerate(uniq):
        poses = sorted(range(len(texts)), key=lambda i: (-sim[i][j], i))
        for k in ks:
            precisions[k].append(sum(texts[i] == u for i in poses[:k]) / k)
        first.append(next(r for r, i in enumerate(poses, 1) if texts[i] == u))
    out = {f"P@{k}": sum(v) / len(v) for k, v in precisions.items()}
    out["MedianR"] = float(np.median(first))
    return out


TEXTS = ["a", "b", "a", "c"]  # pose 0 and pose 2 share a text
SIM = np.array([  # (4 poses, 3 unique texts a, b, c)
    [0.9, 0.1, 0.2],  # a: rank 1
    [0.8, 0.5, 0.1],  # b: rank 2
    [0.1, 0.3, 0.2],  # a: rank 3
    [0.5, 0.4, 0.6],  # c: rank 1
])


def test_unique_texts_first_seen_order():
    uniq, index = unique_texts(["b", "a", "b", "c", "a"])
    assert uniq == ["b", "a", "c"]
    np.testing.assert_array_equal(index, [0, 1, 0, 2, 1])


def test_hand_made_pose_to_text():
    _, index = unique_texts(TEXTS)
    got = pose_to_text(SIM, index, ks=(1, 2, 5))
    assert got == {"R@1": 0.5, "R@2": 0.75, "R@5": 1.0, "MedianR": 1.5}


def test_hand_made_text_to_pose():
    _, index = unique_texts(TEXTS)
    got = text_to_pose(SIM, index, ks=(1, 2, 4))
    # a: poses by score 0,1,3,2 (positives 0, 2); b: 1,3,2,0 (positive 1); c: 3,0,2,1 (positive 3, tie 0.2 by order)
    assert got["P@1"] == 1.0
    assert got["P@2"] == pytest.approx((1 / 2 + 1 / 2 + 1 / 2) / 3)
    assert got["P@4"] == pytest.approx((2 / 4 + 1 / 4 + 1 / 4) / 3)
    assert got["MedianR"] == 1.0


def test_ties_broken_by_candidate_order():
    sim = np.zeros((2, 3))
    positives = np.array([[False, False, True], [True, False, False]])
    np.testing.assert_array_equal(ranks_of(sim, positives), [3, 1])


@pytest.mark.parametrize("seed", range(5))
def test_against_naive_random_with_duplicates(seed):
    rng = np.random.default_rng(seed)
    texts = [f"t{i}" for i in rng.integers(0, 9, size=30)]  # many duplicates
    uniq, index = unique_texts(texts)
    sim = rng.normal(size=(len(texts), len(uniq)))
    if seed % 2:  # coarse scores force ties
        sim = np.round(sim, 0)
    ks = (1, 5, 10)
    assert pose_to_text(sim, index, ks) == pytest.approx(naive_pose_to_text(sim.tolist(), texts, ks))
    assert text_to_pose(sim, index, ks) == pytest.approx(naive_text_to_pose(sim.tolist(), texts, ks))


def test_retrieval_metrics_from_embeddings():
    rng = np.random.default_rng(0)
    texts = ["a", "b", "a", "c", "d", "b"]
    uniq, index = unique_texts(texts)
    text_emb = rng.normal(size=(len(uniq), 8))
    pose_emb = text_emb[index] + 0.1 * rng.normal(size=(len(texts), 8))
    got = retrieval_metrics(pose_emb, text_emb, index)
    sim = pose_emb @ text_emb.T
    for k, v in naive_pose_to_text(sim.tolist(), texts, (1, 5, 10)).items():
        assert got[f"pose_to_text/{k}"] == pytest.approx(v)
    for k, v in naive_text_to_pose(sim.tolist(), texts, (1, 5, 10)).items():
        assert got[f"text_to_pose/{k}"] == pytest.approx(v)
    assert got["pose_to_text/R@1"] == 1.0


def test_chance_metrics():
    index = np.array([0, 1, 0, 2, 3, 1, 4, 5, 6, 7, 8, 9])  # 10 unique texts, 12 poses
    c = chance_metrics(index)
    assert c["pose_to_text/R@1"] == pytest.approx(0.1)
    assert c["pose_to_text/R@10"] == 1.0
    assert c["text_to_pose/P@1"] == pytest.approx(1.2 / 12)


def test_pose_to_text_loss_is_the_contrastive_cross_entropy():
    from signclip.eval.retrieval import pose_to_text_loss

    sim = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    assert pose_to_text_loss(sim, np.array([0, 1, -1]), 1.0) == pytest.approx(np.log(1 + np.exp(-1)))
    assert pose_to_text_loss(sim[:2], np.array([1, 0]), 10.0) == pytest.approx(np.log(1 + np.exp(10)))
