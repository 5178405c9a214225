"""Contrastive loss: symmetric InfoNCE with a learnable temperature (CLIP)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def positives_mask(text_ids: torch.Tensor) -> torch.Tensor:
    """(B,) integer id of each sample's text -> (B, B) float, 1 where two samples share a text."""
    return (text_ids[:, None] == text_ids[None, :]).float()


def clip_loss(pose_emb: torch.Tensor, text_emb: torch.Tensor, scale: torch.Tensor,
              text_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE over the batch.

    pose_emb, text_emb: (B, E) L2-normalised; scale: exp(logit_scale); text_ids: (B,) ids so that
    samples sharing a text count as positives of each other (soft targets) instead of negatives.
    """
    logits = scale * pose_emb @ text_emb.T  # (B, B) pose -> text
    if text_ids is None:
        target = torch.arange(logits.shape[0], device=logits.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    pos = positives_mask(text_ids)
    target = pos / pos.sum(1, keepdim=True)  # (B, B), rows sum to 1; symmetric
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
