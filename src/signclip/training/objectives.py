"""Training objectives: what one batch contributes to the loss.

:class:`Objective` is the single place the training loop asks for a loss. It combines

* the global contrastive loss (symmetric InfoNCE on mean-pooled pose and text embeddings);
* masked pose modelling (``TrainConfig.mpm_weight``, after Zhou et al.'s multimodal sign-language
  pre-training): a share of each pose's real frames is hidden from the pose tower (its keypoints become
  missing, so the frame embedding is the learned "nothing seen" embedding) and the objective's own
  ``mpm_head`` (a training-only decoder, not part of the saved model) reconstructs their standardised
  features from the contextual frame features; points missing in the data are excluded from the loss;
* fine-grained sign–text contrast (``TrainConfig.fine_grained_weight``, as Zhou et al. and FILIP): windows
  of ``s`` frames against text tokens, both through the towers' own projections (no new weights).

One forward pass of each tower serves all three. ``gather`` is applied to everything that crosses
the batch (contrastive embeddings, ids, windows and tokens), never to the per-pose MPM loss.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from signclip.config import TrainConfig
from signclip.models.fine_grained import fine_grained_similarity, pose_windows, text_tokens
from signclip.models.signclip import SignCLIP
from signclip.training.loss import clip_loss, contrastive_loss

Gather = Callable[[torch.Tensor], torch.Tensor]


def no_gather(t: torch.Tensor) -> torch.Tensor:
    """Single process: the local batch is the global batch."""
    return t


# ---- building blocks ---------------------------------------------------------------------------
def pool_frames(model: SignCLIP, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, W) frame features, (B, T) real frames -> (B, E) normalised pose embeddings (masked mean)."""
    return F.normalize(model.pose.pool(h, mask), dim=-1)


def pool_tokens(model: SignCLIP, h: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, L, H) token features -> (B, E) normalised text embeddings (masked mean, as TextEncoder)."""
    return F.normalize(model.text.pool(h, attention_mask), dim=-1)


def mask_frames(mask: torch.Tensor, ratio: float) -> torch.Tensor:
    """(B, T) real frames -> (B, T) bool frames to hide: round(ratio * n) real frames of each pose,
    uniformly at random, keeping at least one frame visible (none hidden in a 1-frame pose)."""
    n = mask.sum(1, keepdim=True)  # (B, 1)
    k = torch.minimum(torch.round(n * ratio), n - 1).clamp(min=0)  # (B, 1)
    scores = torch.rand(mask.shape, device=mask.device).masked_fill(~mask, 2.0)  # padding sorts last
    rank = scores.argsort(1).argsort(1)  # (B, T) position of each frame in the random order
    return (rank < k) & mask


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean squared error over ``valid`` entries only. pred, target (B, T, F); valid (B, T, F) bool."""
    w = valid.to(pred.dtype)
    return ((pred - target) ** 2 * w).sum() / w.sum().clamp(min=1.0)


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() \
        and torch.distributed.get_world_size() > 1


def _pad_dim1(t: torch.Tensor, n: int) -> torch.Tensor:
    """Pad (B, K, ...) to (B, n, ...) with zeros, so per-rank tensors have one shape for ``gather``."""
    return torch.cat([t, t.new_zeros((t.shape[0], n - t.shape[1], *t.shape[2:]))], 1) if n > t.shape[1] else t


# ---- the loss ----------------------------------------------------------------------------------
def mpm_head(model: SignCLIP) -> nn.Module:
    """Masked pose modelling decoder: frame features (W) -> standardised pose features (F')."""
    width, n_feat = model.pose.width, model.pose.feature_mean.numel()
    return nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, n_feat))


class Objective(nn.Module):
    """The model, its training-only heads and the loss as one module: DDP wraps this, so every parameter
    the objective touches (also outside ``SignCLIP.forward``) takes part in gradient synchronisation.

    ``gather`` concatenates a per-rank tensor across ranks (with gradients), so the contrastive negatives
    are the global batch."""

    def __init__(self, model: SignCLIP, cfg: TrainConfig, gather: Gather = no_gather):
        super().__init__()
        self.model, self.cfg, self.gather = model, cfg, gather
        self.mpm_head = mpm_head(model) if cfg.mpm_weight > 0 else None

    def heads_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights of the training-only heads (saved with the trainer state for an exact resume)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("model.")}

    def forward(self, x: torch.Tensor, mask: torch.Tensor, tok: dict[str, torch.Tensor],
                text_ids: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of one batch and its named parts (for the log).

        x: (B, T, F) keypoints, mask: (B, T) real frames, tok: tokenised prompts (B, L), text_ids: (B,)
        ids of the prompts (equal ids are positives)."""
        model, cfg, gather = self.model, self.cfg, self.gather
        hidden = None
        if cfg.mpm_weight > 0:
            hidden = mask_frames(mask, cfg.mpm_mask_ratio)  # (B, T)
            x_in = x.masked_fill(hidden.unsqueeze(-1), float("nan"))  # hidden frames look fully missing
        else:
            x_in = x
        # frame features (B, T, W), token features (B, L, H), temperature scale ()
        h, h_tok, scale = model(x_in, mask, tok["input_ids"], tok["attention_mask"], features=True)
        pose_emb, text_emb = pool_frames(model, h, mask), pool_tokens(model, h_tok, tok["attention_mask"])  # (B, E)
        ids = gather(text_ids)
        contrastive = clip_loss(gather(pose_emb), gather(text_emb), scale, ids)
        loss, parts = contrastive, {"contrastive": contrastive.item()}

        if cfg.mpm_weight > 0:
            target = model.pose.standardize(x)  # (B, T, F') missing -> 0
            seen = ~torch.isnan(model.pose.featurize(x))  # (B, T, F') points present in the data
            mpm = reconstruction_loss(self.mpm_head(h), target, seen & hidden.unsqueeze(-1))
            loss = loss + cfg.mpm_weight * mpm
            parts["mpm"] = mpm.item()

        if cfg.fine_grained_weight > 0:
            fine = self.fine_grained_loss(h, mask, h_tok, tok["attention_mask"], scale, ids)
            loss = loss + cfg.fine_grained_weight * fine
            parts["fine_grained"] = fine.item()
        return loss, parts

    def fine_grained_loss(self, h: torch.Tensor, mask: torch.Tensor, h_tok: torch.Tensor,
                          attention_mask: torch.Tensor, scale: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Contrastive loss on the fine-grained similarity of the (gathered) windows and tokens."""
        model, window, gather = self.model, self.cfg.fine_grained_window, self.gather
        win, win_mask = pose_windows(model, h, mask, window)  # (B, K, E), (B, K)
        toks, tok_mask = text_tokens(model, h_tok), attention_mask.bool()  # (B, L, E), (B, L)
        if _distributed():  # equal shapes on every rank
            k_max = -(-model.cfg.pose.max_frames // window)
            win, win_mask = _pad_dim1(win, k_max), _pad_dim1(win_mask.float(), k_max)
            n_tok = model.cfg.text_max_tokens
            toks, tok_mask = _pad_dim1(toks, n_tok), _pad_dim1(tok_mask.float(), n_tok)
            win, win_mask, toks, tok_mask = gather(win), gather(win_mask) > 0, gather(toks), gather(tok_mask) > 0
        return contrastive_loss(scale * fine_grained_similarity(win, win_mask, toks, tok_mask), ids)
