"""Contrastive loss: symmetric InfoNCE with a learnable temperature (CLIP)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def positives_mask(text_ids: torch.Tensor) -> torch.Tensor:
    """(B,) integer id of each sample's text -> (B, B) float, 1 where two samples share a text."""
    return (text_ids[:, None] == text_ids[None, :]).float()


def contrastive_loss(logits: torch.Tensor, text_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE on (B, B) pose -> text logits. With ``text_ids`` (B,), samples sharing a text
    are positives of each other (soft targets) instead of negatives."""
    if text_ids is None:
        target = torch.arange(logits.shape[0], device=logits.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    pos = positives_mask(text_ids).to(logits.dtype)
    soft = pos / pos.sum(1, keepdim=True)  # (B, B), rows sum to 1; symmetric
    return (F.cross_entropy(logits, soft) + F.cross_entropy(logits.T, soft)) / 2


def clip_loss(pose_emb: torch.Tensor, text_emb: torch.Tensor, scale: torch.Tensor,
              text_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE over the batch: pose_emb, text_emb (B, E) L2-normalised; scale = exp(logit_scale)."""
    return contrastive_loss(scale * pose_emb @ text_emb.T, text_ids)
