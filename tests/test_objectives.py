"""Training objectives: contrastive, masked pose modelling, fine-grained sign-text similarity."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from signclip.batching import pad_poses
from signclip.config import TrainConfig
from signclip.eval.retrieval import combined_similarity, fine_grained_similarity, retrieval_metrics, similarity_metrics
from signclip.models.fine_grained import fine_grained_similarity as fg_tensor
from signclip.models.fine_grained import pose_windows, text_tokens
from signclip.training.loss import clip_loss
from signclip.training.objectives import Objective, mask_frames, reconstruction_loss


@pytest.fixture(scope="module")
def model():
    """A fresh tiny model, 1 pose layer, frozen text backbone (fast backward)."""
    import signclip

    return signclip.create_model("tiny", pose_layers=1, freeze_text=True)


@pytest.fixture(scope="module")
def batch(model, lexicon):
    """8 real lexicon poses (different lengths, missing hands) with their prompts."""
    rows = lexicon.sample(8, random_state=3)
    arrays = [model.preprocess_pose(p) for p in rows["path"]]
    x, mask = pad_poses(arrays)  # (8, T, F), (8, T)
    tok = model.tokenize(model.prompts(rows["text"].tolist(), rows["spoken_language"].tolist(),
                                       rows["signed_language"].tolist()))
    return arrays, x, mask, tok, torch.arange(8)


def _train_steps(model, batch, cfg: TrainConfig, steps: int = 8) -> list[dict[str, float]]:
    """A few Adam steps on one batch with a fixed mask/dropout draw per step; the logged parts."""
    _, x, mask, tok, ids = batch
    objective = Objective(model, cfg)
    params = [p for p in objective.parameters() if p.requires_grad]
    saved = [p.detach().clone() for p in params]
    opt = torch.optim.Adam(params, lr=1e-3)
    model.train()
    history = []
    for _ in range(steps):
        torch.manual_seed(0)
        loss, parts = objective(x, mask, tok, ids)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append({"loss": loss.item(), **parts})
    with torch.no_grad():  # leave the shared fixture as it was
        for p, s in zip(params, saved):
            p.copy_(s)
    model.eval()
    return history


def test_default_loss_is_the_contrastive_loss(model, batch):
    _, x, mask, tok, ids = batch
    model.eval()
    loss, parts = Objective(model, TrainConfig())(x, mask, tok, ids)
    pose_emb, text_emb, scale = model(x, mask, tok["input_ids"], tok["attention_mask"])
    assert set(parts) == {"contrastive"}
    assert loss.item() == pytest.approx(clip_loss(pose_emb, text_emb, scale, ids).item(), abs=1e-5)


def test_mask_frames_hides_a_share_of_real_frames_only():
    mask = torch.zeros(4, 20, dtype=torch.bool)
    for i, n in enumerate([20, 10, 2, 1]):
        mask[i, :n] = True
    hidden = mask_frames(mask, 0.4)  # (4, 20)
    assert hidden.shape == mask.shape
    assert hidden.sum(1).tolist() == [8, 4, 1, 0]  # round(0.4 n), at least one frame stays visible
    assert not (hidden & ~mask).any()


def test_mpm_shapes_and_missing_points_excluded(model, batch):
    _, x, mask, tok, ids = batch
    x = x.clone()
    x[0, :, :30] = float("nan")  # first 10 points of pose 0 missing in every frame
    n_feat = model.pose.feature_mean.numel()
    captured = {}
    objective = Objective(model, TrainConfig(mpm_weight=1.0))
    hook = objective.mpm_head.register_forward_hook(lambda m, i, out: captured.setdefault("pred", out) .retain_grad())
    try:
        model.train()
        torch.manual_seed(0)
        loss, parts = objective(x, mask, tok, ids)
        loss.backward()
    finally:
        hook.remove()
        model.zero_grad()
        model.eval()
    pred = captured["pred"]
    assert pred.shape == (*x.shape[:2], n_feat)  # (B, T, F') standardised features
    assert set(parts) == {"contrastive", "mpm"} and parts["mpm"] > 0
    grad = pred.grad  # only masked frames with present points receive reconstruction gradient
    assert (grad[0, :, :30] == 0).all()  # missing points: no loss
    assert (grad[~mask] == 0).all()  # padding: no loss
    assert (grad[0, :, 30:].abs().sum(-1) > 0).sum() == round(0.4 * mask[0].sum().item())


def test_reconstruction_loss_ignores_invalid_entries():
    pred, target = torch.zeros(2, 3, 4), torch.ones(2, 3, 4)
    valid = torch.zeros(2, 3, 4, dtype=torch.bool)
    valid[0, 0] = True
    target2 = target.clone()
    target2[1] = 100.0  # invalid entries change nothing
    assert reconstruction_loss(pred, target, valid).item() == pytest.approx(1.0)
    assert reconstruction_loss(pred, target2, valid).item() == pytest.approx(1.0)
    assert reconstruction_loss(pred, target, torch.zeros_like(valid)).item() == 0.0


@pytest.mark.slow  # trains
def test_mpm_loss_decreases(model, batch):
    history = _train_steps(model, batch, TrainConfig(mpm_weight=1.0))
    assert history[-1]["mpm"] < history[0]["mpm"]
    assert history[-1]["loss"] < history[0]["loss"]


@pytest.mark.slow  # trains
def test_fine_grained_loss_decreases(model, batch):
    history = _train_steps(model, batch, TrainConfig(fine_grained_weight=1.0))
    assert set(history[0]) == {"loss", "contrastive", "fine_grained"}
    assert history[-1]["fine_grained"] < history[0]["fine_grained"]
    assert history[-1]["loss"] < history[0]["loss"]


def test_fine_grained_similarity_shape_range_and_padding_invariance(model, batch):
    arrays, x, mask, tok, _ = batch
    model.eval()
    with torch.no_grad():
        win, win_mask = pose_windows(model, model.pose.frame_features(x, mask), mask, 4)  # (8, K, E)
        toks = text_tokens(model, model.text.token_features(tok["input_ids"], tok["attention_mask"]))
        sim = fg_tensor(win, win_mask, toks[:3], tok["attention_mask"][:3].bool())
        # extra invalid windows and padding tokens (garbage content) change nothing
        win2 = torch.cat([win, torch.randn(8, 5, win.shape[-1])], 1)
        wm2 = torch.cat([win_mask, torch.zeros(8, 5, dtype=torch.bool)], 1)
        toks2 = torch.cat([toks[:3], torch.randn(3, 4, toks.shape[-1])], 1)
        tm2 = torch.cat([tok["attention_mask"][:3].bool(), torch.zeros(3, 4, dtype=torch.bool)], 1)
        sim2 = fg_tensor(win2, wm2, toks2, tm2)
    assert win.shape[:2] == (8, -(-x.shape[1] // 4)) and win_mask.sum(1).tolist() == [-(-len(a) // 4) for a in arrays]
    assert sim.shape == (8, 3)
    assert torch.allclose(sim, sim2, atol=1e-6)
    assert (sim.abs() <= 1 + 1e-5).all()
    # through the retrieval helper: (N poses, M texts), batching (padding) does not change a score
    texts = model.prompts(["A", "B", "hello"], "en", "ase")
    full = fine_grained_similarity(model, arrays[:5], texts, batch_size=5)
    alone = np.concatenate([fine_grained_similarity(model, [a], texts, batch_size=1) for a in arrays[:5]])
    assert full.shape == (5, 3)
    np.testing.assert_allclose(full, alone, atol=1e-5)


def test_combined_similarity_ranking(model, batch):
    arrays = batch[0]
    texts = model.prompts(["A", "B", "C"], "en", "ase")
    pose_emb = model.encode_pose(arrays[:4])
    global_sim = pose_emb @ model.encode_text(texts).T  # (4, 3)
    fine = fine_grained_similarity(model, arrays[:4], texts)
    index = np.array([0, 1, 2, 0])
    assert similarity_metrics(combined_similarity(global_sim, fine, 0.0), index) == \
        retrieval_metrics(pose_emb, model.encode_text(texts), index)
    np.testing.assert_allclose(combined_similarity(global_sim, fine, 1.0), fine)
