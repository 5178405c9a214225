"""Part-wise pose tower (after Zhou et al.'s multimodal sign-language pre-training): a manual stream (both
hands) and a non-manual stream (body + face), each a per-frame embedding -> its own transformer, fused per
frame by concatenation + projection.

It shares featurisation, standardisation, pooling and projection with :class:`PoseEncoder`, so the
same training statistics, objectives and export paths apply; only ``frame_features`` differs.
"""
from __future__ import annotations

import torch
from torch import nn

from signclip.models.graph import SkeletonGCN, two_hands_adjacency
from signclip.models.pose_encoder import FramePatches, PoseEncoder, as_slice, positions
from signclip.pose.layout import BODY, LEFT_HAND, RIGHT_HAND


def _transformer(width: int, layers: int, heads: int, mlp_ratio: float, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(width, heads, int(width * mlp_ratio), dropout, activation="gelu",
                                       batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(width), enable_nested_tensor=False)


class PartEmbedding(nn.Module):
    """Per-frame embedding of consecutive column groups (body parts), each by its own Linear -> GELU ->
    LayerNorm to an equal share of ``width``, concatenated: a part with few columns keeps its share."""

    def __init__(self, sizes: list[int], width: int):
        super().__init__()
        if width % len(sizes):
            raise ValueError(f"width {width} does not split into {len(sizes)} equal parts")
        self.sizes = sizes
        w = width // len(sizes)
        self.parts = nn.ModuleList(nn.Sequential(nn.Linear(n, w), nn.GELU(), nn.LayerNorm(w)) for n in sizes)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, T, sum(sizes)) -> (B, T, width)."""
        return torch.cat([embed(part) for embed, part in zip(self.parts, z.split(self.sizes, dim=-1))], dim=-1)


class PartwisePoseEncoder(PoseEncoder):
    """Manual (hands) and non-manual (body, face) streams of width ``width // 2`` each, fused to ``width``.

    ``graph_conv`` replaces the manual stream's per-frame MLP by a GCN over the two hand skeletons
    (nodes = 42 hand points, node features = standardised coordinates and, with hand features, the
    wrist-relative hand shape). ``body_points`` > 0 (the body points lead the layout) embeds the body
    and the face of the non-manual stream separately (:class:`PartEmbedding`). ``patch_frames`` > 1 makes
    each stream's frames into patches (:class:`FramePatches`, one group per stream) before its transformer.
    """

    def __init__(self, in_dim: int, width: int, layers: int, heads: int, mlp_ratio: float, dropout: float,
                 max_frames: int, embed_dim: int, dims: int, hands: list[list[int]], hand_features: bool = True,
                 graph_conv: bool = False, gcn_hidden: int = 32, body_points: int = 0, patch_frames: int = 1):
        nn.Module.__init__(self)  # PoseEncoder's own layers are replaced by the two streams below
        if width % 2 or (width // 2) % heads:
            raise ValueError(f"pose_width: {width} must split into two streams divisible by pose_heads={heads}")
        self.dims, self.width, self.gradient_checkpointing = dims, width, False
        self.register_buffer("hand_index", torch.tensor(hands if hand_features else [], dtype=torch.long),
                             persistent=False)
        self.hand_span = as_slice(self.hand_index)
        n_points = in_dim // dims
        feat_dim = in_dim + self.hand_index.numel() * dims
        self.register_buffer("feature_mean", torch.zeros(feat_dim))
        self.register_buffer("feature_std", torch.ones(feat_dim))
        # columns of the standardised features: point p is p*D..p*D+D; hand shapes follow the keypoints
        hand_points = [p for hand in hands for p in hand]  # (42,) layout indices
        raw = torch.arange(in_dim).reshape(n_points, dims)  # (P, D)
        shape_cols = torch.arange(in_dim, feat_dim).reshape(-1, dims)  # (42 or 0, D)
        node_cols = raw[hand_points]  # (42, D)
        if hand_features:
            node_cols = torch.cat([node_cols, shape_cols], dim=1)  # (42, 2D)
        manual = torch.cat([node_cols.flatten(), shape_cols.flatten()]).unique()
        non_manual = torch.tensor([c for c in range(in_dim) if c not in set(manual.tolist())])
        self.register_buffer("manual_cols", manual, persistent=False)
        self.register_buffer("non_manual_cols", non_manual, persistent=False)
        self.register_buffer("node_cols", node_cols, persistent=False)
        # with the hands last in the layout (as in every built-in layout) both streams are column ranges;
        # the slices are made contiguous below: the same layout as a gather, so bit-identical results
        self.manual_span, self.non_manual_span = as_slice(manual), as_slice(non_manual)
        half = width // 2
        if graph_conv:
            self.manual_embed = SkeletonGCN(two_hands_adjacency(), node_cols.shape[1], gcn_hidden, half)
        else:
            self.manual_embed = nn.Sequential(nn.Linear(len(manual), half), nn.GELU(), nn.LayerNorm(half))
        if body_points:  # the body points lead the layout, so its columns lead the non-manual ones
            body = body_points * dims
            self.non_manual_embed = PartEmbedding([body, len(non_manual) - body], half)
        else:
            self.non_manual_embed = nn.Sequential(nn.Linear(len(non_manual), half), nn.GELU(), nn.LayerNorm(half))
        self.graph_conv = graph_conv
        self.patches = FramePatches(width, patch_frames, groups=2) if patch_frames > 1 else None
        # one position table per stream
        self.pos_embedding = nn.Parameter(torch.randn(2, positions(max_frames, patch_frames), half) * 0.02)
        self.manual = _transformer(half, layers, heads, mlp_ratio, dropout)
        self.non_manual = _transformer(half, layers, heads, mlp_ratio, dropout)
        self.fuse = nn.Sequential(nn.Linear(width, width), nn.LayerNorm(width))
        self.proj = nn.Linear(width, embed_dim, bias=False)

    @classmethod
    def from_config(cls, cfg, layout) -> "PartwisePoseEncoder":
        hands = [layout.hand_slices[LEFT_HAND], layout.hand_slices[RIGHT_HAND]]
        return cls(len(layout) * cfg.pose.dims, cfg.pose_width, cfg.pose_layers, cfg.pose_heads, cfg.pose_mlp_ratio,
                   cfg.pose_dropout, cfg.pose.max_frames, cfg.embed_dim, cfg.pose.dims, hands, cfg.hand_features,
                   cfg.graph_conv, body_points=layout.count(BODY) if cfg.split_non_manual else 0,
                   patch_frames=cfg.pose_patch_frames)

    def frame_features(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, F) keypoints, (B, T) bool real-frame mask -> (B, T, W) fused frame features."""
        z = self.standardize(x)  # (B, T, F')
        if self.graph_conv:
            m = self.manual_embed(z[..., self.node_cols])  # (B, T, 42, C) -> (B, T, W/2)
        else:
            m = self.manual_embed(z[..., self.manual_span or self.manual_cols].contiguous())  # (B, T, W/2)
        n = self.non_manual_embed(z[..., self.non_manual_span or self.non_manual_cols].contiguous())  # (B, T, W/2)
        h, real = self.tokens(torch.cat([m, n], dim=-1), mask)  # (B, T', W), (B, T'): frames or patches
        m, n = h.chunk(2, dim=-1)  # (B, T', W/2) each
        t, padding = h.shape[1], ~real
        m = self.run_transformer(self.manual, m + self.pos_embedding[0, :t], padding)
        n = self.run_transformer(self.non_manual, n + self.pos_embedding[1, :t], padding)
        return self.frames(self.fuse(torch.cat([m, n], dim=-1)), x.shape[1])  # (B, T, W)
