"""Training objectives: what one batch contributes to the loss.

``compute_loss`` is the single place the training loop asks for a loss. It combines

* the global contrastive loss (symmetric InfoNCE on mean-pooled pose and text embeddings);
* masked pose modelling (``TrainConfig.mpm_weight``, seed 004): a share of each pose's real frames
  is hidden from the pose tower (its keypoints become missing, so the frame embedding is the
  learned "nothing seen" embedding) and ``model.mpm_head`` reconstructs their standardised features
  from the contextual frame features; points missing in the data are excluded from the loss;
* fine-grained sign–text contrast (``TrainConfig.fine_grained_weight``, seed 004 / FILIP): windows of
  ``s`` frames against text tokens, both through the towers' own projections (no new weights).

One forward pass of each tower serves all three. ``gather`` is applied to everything that crosses
the batch (contrastive embeddings, ids, windows and tokens), never to the per-pose MPM loss.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from signclip.config import TrainConfig
from signclip.loss import clip_loss, contrastive_loss

if TYPE_CHECKING:
    from signclip.models.signclip import SignCLIP

Gather = Callable[[torch.Tensor], torch.Tensor]


def no_gather(t: torch.Tensor) -> torch.Tensor:
    """Single process: the local batch is the global batch."""
    return t


# ---- building blocks ---------------------------------------------------------------------------
def pool_frames(model: "SignCLIP", h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, W) frame features, (B, T) real frames -> (B, E) normalised pose embeddings (masked mean)."""
    return F.normalize(model.pose.pool(h, mask), dim=-1)


def pool_tokens(model: "SignCLIP", h: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, L, H) token features -> (B, E) normalised text embeddings (masked mean, as TextEncoder)."""
    return F.normalize(model.text.pool(h, attention_mask), dim=-1)


def pose_windows(model: "SignCLIP", h: torch.Tensor, mask: torch.Tensor, window: int = 4
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, W) frame features -> (B, K, E) normalised window embeddings, (B, K) bool valid windows.

    Window k averages the real frames among frames [k*s, (k+1)*s); a window without real frames is
    invalid. Windows start at frame 0, so padding at the end changes nothing.
    """
    b, t, w = h.shape
    k = -(-t // window)
    pad = k * window - t
    m = F.pad(mask, (0, pad)).to(h.dtype).reshape(b, k, window, 1)  # (B, K, s, 1)
    hw = F.pad(h, (0, 0, 0, pad)).reshape(b, k, window, w)  # (B, K, s, W)
    count = m.sum(2)  # (B, K, 1)
    mean = (hw * m).sum(2) / count.clamp(min=1.0)  # (B, K, W)
    return F.normalize(model.pose.proj(mean), dim=-1), count.squeeze(-1) > 0


def text_tokens(model: "SignCLIP", h: torch.Tensor) -> torch.Tensor:
    """(B, L, H) token features -> (B, L, E) normalised token embeddings (the text projection)."""
    return F.normalize(model.text.proj(h), dim=-1)


def fine_grained_similarity(windows: torch.Tensor, window_mask: torch.Tensor, tokens: torch.Tensor,
                            token_mask: torch.Tensor) -> torch.Tensor:
    """Sequence-level similarity of N poses and M texts from local features -> (N, M) in [-1, 1].

    windows (N, K, E), window_mask (N, K) bool, tokens (M, L, E), token_mask (M, L) bool.
    Average of the two FILIP directions: mean over tokens of the best window, and mean over windows
    of the best token. Invalid windows / padding tokens never count.
    """
    s = torch.einsum("nke,mle->nmkl", windows, tokens)  # (N, M, K, L)
    wm = window_mask[:, None, :, None]  # (N, 1, K, 1)
    tm = token_mask[None, :, None, :]  # (1, M, 1, L)
    neg = torch.finfo(s.dtype).min
    t2p = s.masked_fill(~wm, neg).amax(2)  # (N, M, L) best window per token
    p2t = s.masked_fill(~tm, neg).amax(3)  # (N, M, K) best token per window
    tmf, wmf = token_mask[None].to(s.dtype), window_mask[:, None].to(s.dtype)  # (1, M, L), (N, 1, K)
    t2p = (t2p * tmf).sum(-1) / tmf.sum(-1).clamp(min=1.0)  # (N, M)
    p2t = (p2t * wmf).sum(-1) / wmf.sum(-1).clamp(min=1.0)  # (N, M)
    return (t2p + p2t) / 2


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
def compute_loss(model: "SignCLIP", x: torch.Tensor, mask: torch.Tensor, tok: dict[str, torch.Tensor],
                 text_ids: torch.Tensor, cfg: TrainConfig, gather: Gather = no_gather
                 ) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one batch and its named parts (for the log).

    x: (B, T, F) keypoints, mask: (B, T) real frames, tok: tokenised prompts (B, L), text_ids: (B,)
    ids of the prompts (equal ids are positives). ``gather`` concatenates a per-rank tensor across
    ranks (with gradients) so the contrastive negatives are the global batch.
    """
    net, model = model, getattr(model, "module", model)  # call through a DDP wrapper, read its module
    hidden = None
    if cfg.mpm_weight > 0:
        hidden = mask_frames(mask, cfg.mpm_mask_ratio)  # (B, T)
        x_in = x.masked_fill(hidden.unsqueeze(-1), float("nan"))  # hidden frames look fully missing
    else:
        x_in = x
    h, h_tok, scale = net(x_in, mask, tok["input_ids"], tok["attention_mask"], features=True)  # (B,T,W), (B,L,H), ()
    pose_emb, text_emb = pool_frames(model, h, mask), pool_tokens(model, h_tok, tok["attention_mask"])  # (B, E)
    ids = gather(text_ids)
    contrastive = clip_loss(gather(pose_emb), gather(text_emb), scale, ids)
    loss, parts = contrastive, {"contrastive": contrastive.item()}

    if cfg.mpm_weight > 0:
        target = model.pose.standardize(x)  # (B, T, F') missing -> 0
        seen = ~torch.isnan(model.pose.featurize(x))  # (B, T, F') points present in the data
        mpm = reconstruction_loss(model.mpm_head(h), target, seen & hidden.unsqueeze(-1))
        loss = loss + cfg.mpm_weight * mpm
        parts["mpm"] = mpm.item()
    elif _distributed():  # DDP (find_unused_parameters=False) needs a gradient for every parameter
        loss = loss + 0.0 * sum(p.sum() for p in model.mpm_head.parameters())

    if cfg.fine_grained_weight > 0:
        win, win_mask = pose_windows(model, h, mask, cfg.fine_grained_window)  # (B, K, E), (B, K)
        toks, tok_mask = text_tokens(model, h_tok), tok["attention_mask"].bool()  # (B, L, E), (B, L)
        if _distributed():  # equal shapes on every rank
            k_max = -(-model.cfg.pose.max_frames // cfg.fine_grained_window)
            win, win_mask = _pad_dim1(win, k_max), _pad_dim1(win_mask.float(), k_max)
            toks, tok_mask = _pad_dim1(toks, model.cfg.text_max_tokens), _pad_dim1(tok_mask.float(), model.cfg.text_max_tokens)
            win, win_mask, toks, tok_mask = gather(win), gather(win_mask) > 0, gather(toks), gather(tok_mask) > 0
        fine = contrastive_loss(scale * fine_grained_similarity(win, win_mask, toks, tok_mask), ids)
        loss = loss + cfg.fine_grained_weight * fine
        parts["fine_grained"] = fine.item()
    return loss, parts

