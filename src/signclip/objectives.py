"""Training objectives: what one batch contributes to the loss.

``compute_loss`` is the single place the training loop asks for a loss, so new objectives (masked
pose modelling, fine-grained similarity, …) and distributed gathering plug in here.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from signclip.config import TrainConfig
from signclip.loss import clip_loss
from signclip.models.signclip import SignCLIP

Gather = Callable[[torch.Tensor], torch.Tensor]


def no_gather(t: torch.Tensor) -> torch.Tensor:
    """Single process: the local batch is the global batch."""
    return t


def compute_loss(model: SignCLIP, x: torch.Tensor, mask: torch.Tensor, tok: dict[str, torch.Tensor],
                 text_ids: torch.Tensor, cfg: TrainConfig, gather: Gather = no_gather
                 ) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one batch and its named parts (for the log).

    x: (B, T, F) keypoints, mask: (B, T) real frames, tok: tokenised prompts (B, L), text_ids: (B,)
    ids of the prompts (equal ids are positives). ``gather`` concatenates a per-rank tensor across
    ranks (with gradients) so the contrastive negatives are the global batch.
    """
    pose_emb, text_emb, scale = model(x, mask, tok["input_ids"], tok["attention_mask"])  # (B, E), (B, E), ()
    loss = clip_loss(gather(pose_emb), gather(text_emb), scale, gather(text_ids))
    return loss, {"contrastive": loss.item()}
