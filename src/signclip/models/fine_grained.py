"""Fine-grained sign–text similarity (Zhou et al.; FILIP): windows of frames against text tokens.

Both sides go through the towers' own projections (no new weights), so the same functions serve the
training objective (:mod:`signclip.training.objectives`) and ranking at evaluation
(:func:`signclip.eval.retrieval.fine_grained_similarity`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from signclip.models.signclip import SignCLIP


def pose_windows(model: SignCLIP, h: torch.Tensor, mask: torch.Tensor, window: int = 4
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


def text_tokens(model: SignCLIP, h: torch.Tensor) -> torch.Tensor:
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
