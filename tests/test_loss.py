"""Symmetric InfoNCE against a naive loop, soft positives for duplicate texts, and a loss that falls."""
from __future__ import annotations

import copy
import math

import pytest
import torch

from signclip.batching import pad_poses
from signclip.config import TrainConfig
from signclip.pose.preprocess import preprocess
from signclip.training.loss import clip_loss, positives_mask
from signclip.training.optim import make_optimizer


def naive_loss(p, t, scale, ids=None):
    """Loop implementation: mean over rows of -sum_j target_ij log softmax_j, both directions."""
    n = len(p)
    ids = list(range(n)) if ids is None else [int(i) for i in ids]
    total = 0.0
    for direction in range(2):
        for i in range(n):
            logits = [scale * float(p[i] @ t[j]) if direction == 0 else scale * float(t[i] @ p[j]) for j in range(n)]
            m = max(logits)
            log_z = m + math.log(sum(math.exp(v - m) for v in logits))
            pos = [j for j in range(n) if ids[j] == ids[i]]
            total += sum(-(logits[j] - log_z) / len(pos) for j in pos) / n
    return total / 2


def random_embeddings(n, e, seed):
    g = torch.Generator().manual_seed(seed)
    p = torch.nn.functional.normalize(torch.randn(n, e, generator=g, dtype=torch.float64), dim=-1)
    t = torch.nn.functional.normalize(torch.randn(n, e, generator=g, dtype=torch.float64), dim=-1)
    return p, t


@pytest.mark.parametrize("scale", [1.0, 14.3, 100.0])
def test_infonce_matches_naive(scale):
    p, t = random_embeddings(7, 5, 0)
    got = clip_loss(p, t, torch.tensor(scale, dtype=torch.float64))
    assert float(got) == pytest.approx(naive_loss(p, t, scale), rel=1e-9)


def test_distinct_ids_equal_plain_infonce():
    p, t = random_embeddings(6, 4, 1)
    s = torch.tensor(10.0, dtype=torch.float64)
    assert float(clip_loss(p, t, s, torch.arange(6))) == pytest.approx(float(clip_loss(p, t, s)), rel=1e-12)


def test_duplicate_texts_are_soft_positives():
    p, t = random_embeddings(6, 4, 2)
    ids = torch.tensor([0, 1, 0, 2, 1, 0])
    s = torch.tensor(10.0, dtype=torch.float64)
    got = float(clip_loss(p, t, s, ids))
    assert got == pytest.approx(naive_loss(p, t, 10.0, ids), rel=1e-6)  # targets are float32
    assert got != pytest.approx(float(clip_loss(p, t, s)), rel=1e-3)
    pos = positives_mask(ids)
    assert pos.shape == (6, 6) and torch.equal(pos, pos.T) and pos[0, 2] == 1 and pos[0, 1] == 0


def test_duplicates_reach_the_target_entropy():
    """Two poses with the same text, embedded exactly on it: the loss is the entropy of the soft
    target (log 2 for each of the two duplicate rows), the minimum possible."""
    t = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0]], dtype=torch.float64)
    soft = float(clip_loss(t, t, torch.tensor(100.0, dtype=torch.float64), torch.tensor([0, 0, 1])))
    assert soft == pytest.approx(2 * math.log(2) / 3, abs=1e-6)


@pytest.mark.slow  # trains
def test_loss_decreases_on_a_tiny_batch(tiny_model, lexicon):
    torch.manual_seed(0)
    model = copy.deepcopy(tiny_model).train()
    model.text.frozen = True  # keep it fast: train the pose tower, projections and temperature only
    model.text.backbone.requires_grad_(False)
    rows = lexicon.iloc[:8]
    arrays = [preprocess(p, model.cfg.pose) for p in rows["path"]]
    model.fit_preprocessing(arrays)
    x, mask = pad_poses(arrays)
    tok = model.tokenize(model.prompts(rows["text"].tolist(), "en", rows["signed_language"].tolist()))
    opt = make_optimizer(model, TrainConfig(lr=1e-3, text_lr=1e-4))
    losses = []
    for _ in range(6):
        loss = clip_loss(*model(x, mask, tok["input_ids"], tok["attention_mask"]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.7, losses
    assert model.logit_scale.grad is not None
