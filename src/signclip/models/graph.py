"""Graph convolution over the hand skeleton, applied to each frame independently (a spatial GCN
without temporal edges, as the pose embedding of Zhou et al.'s multimodal sign-language pre-training)."""
from __future__ import annotations

import torch
from torch import nn

from signclip.pose.layout import HAND_EDGES


def normalized_adjacency(n: int, edges: list[tuple[int, int]]) -> torch.Tensor:
    """(n, n) symmetric adjacency with self loops, normalised as D^-1/2 (A + I) D^-1/2."""
    a = torch.eye(n)
    for i, j in edges:
        a[i, j] = a[j, i] = 1.0
    d = a.sum(1).rsqrt()
    return d[:, None] * a * d[None, :]


def two_hands_adjacency() -> torch.Tensor:
    """(42, 42) adjacency of the left hand (points 0-20) and the right hand (21-41), not connected."""
    edges = HAND_EDGES + [(i + 21, j + 21) for i, j in HAND_EDGES]
    return normalized_adjacency(42, edges)


class SkeletonGCN(nn.Module):
    """Per-frame spatial GCN: (B, T, N, C) node features -> (B, T, out_dim) frame embedding.

    Each layer is ``GELU(A @ H @ W)`` with a residual connection; the nodes are then flattened and
    projected. Missing points arrive as zeros (standardised), like in the MLP embedding.
    """

    def __init__(self, adjacency: torch.Tensor, in_dim: int, hidden: int, out_dim: int, layers: int = 2):
        super().__init__()
        self.register_buffer("adjacency", adjacency.float(), persistent=False)
        dims = [in_dim] + [hidden] * layers
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = nn.Sequential(nn.Linear(adjacency.shape[0] * hidden, out_dim), nn.GELU(), nn.LayerNorm(out_dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(B, T, N, C) -> (B, T, out_dim)."""
        for i, lin in enumerate(self.layers):
            z = nn.functional.gelu(torch.einsum("nm,btmc->btnc", self.adjacency, lin(h)))  # (B, T, N, H)
            h = z if i == 0 else h + z
        return self.out(h.flatten(2))
