"""Pose tower: per-frame MLP -> (frame patches) -> transformer with a padding mask -> masked mean pool ->
projection."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def as_slice(index: torch.Tensor) -> slice | None:
    """A contiguous ascending index range as a slice, else None. Indexing with the slice gives the same
    values as with the index tensor, as a view in torch and a Slice (not a much slower Gather) in ONNX."""
    i = index.flatten().tolist()
    return slice(i[0], i[0] + len(i)) if i and i == list(range(i[0], i[0] + len(i))) else None


def positions(max_frames: int, patch_frames: int = 1) -> int:
    """Rows of a learned position table: one per token of a ``max_frames`` pose."""
    if patch_frames < 1:
        raise ValueError(f"pose_patch_frames: {patch_frames}; expected 1 (no patches) or more frames per token")
    return -(-max_frames // patch_frames)


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, N, W) features, (B, N) mask -> (B, W) mean over the positions where mask is true."""
    m = mask.unsqueeze(-1).to(h.dtype)  # (B, N, 1)
    return (h * m).sum(1) / m.sum(1).clamp(min=1.0)


class FramePatches(nn.Module):
    """Groups of ``frames`` consecutive frame embeddings -> one token (a strided temporal convolution, kernel =
    stride = ``frames``, then LayerNorm), so a transformer reads ceil(T / frames) tokens instead of T frames.

    ``groups`` > 1 keeps equal channel groups apart (the part-wise tower's streams: a grouped convolution and
    a LayerNorm per group). Padded frames are zeroed and the last group is completed with zeros, so a pose
    gives the same tokens alone as in a padded batch; a token is real when any of its frames is."""

    def __init__(self, width: int, frames: int, groups: int = 1):
        super().__init__()
        if frames < 1 or width % groups:
            raise ValueError(f"frame patches: {frames} frames per token, width {width} in {groups} groups")
        self.frames, self.groups = frames, groups
        self.conv = nn.Conv1d(width, width, frames, stride=frames, groups=groups)
        self.norm = nn.LayerNorm(width // groups)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, W) frame embeddings, (B, T) real frames -> (B, T', W) tokens, (B, T') real tokens;
        T' = ceil(T / frames)."""
        n = self.frames
        h = (h * mask.unsqueeze(-1).to(h.dtype)).transpose(1, 2)  # (B, W, T), padded frames 0
        tokens = self.conv(F.pad(h, (0, n - 1))).transpose(1, 2)  # (B, T', W): the last group completed with 0
        b, t, w = tokens.shape
        tokens = self.norm(tokens.reshape(b, t, self.groups, w // self.groups)).flatten(2)  # (B, T', W)
        real = F.max_pool1d(F.pad(mask.to(h.dtype), (0, n - 1)).unsqueeze(1), n).squeeze(1) > 0  # (B, T')
        return tokens, real

    def expand(self, tokens: torch.Tensor, frames: int) -> torch.Tensor:
        """(B, T', W) tokens -> (B, frames, W): each token repeated for the frames it covers."""
        b, t, w = tokens.shape
        return tokens.unsqueeze(2).expand(b, t, self.frames, w).flatten(1, 2)[:, :frames]


class PoseEncoder(nn.Module):
    """Encode padded pose sequences; padded frames never influence real ones.

    Input features are shoulder-normalised keypoints with NaN for missing points. The per-dimension
    mean/std of the training set are buffers (saved with the weights); standardised NaNs become 0.
    With ``patch_frames`` > 1 (:class:`FramePatches`) the transformer reads one token per ``patch_frames``
    frames and the learned positions count tokens; the frame features repeat each token for its frames, so
    the pooled embedding weighs each token by its real frames.
    """

    learns_statistics = True  # SignCLIP.fit_preprocessing sets feature_mean / feature_std from training data

    def __init__(self, in_dim: int, width: int, layers: int, heads: int, mlp_ratio: float,
                 dropout: float, max_frames: int, embed_dim: int, dims: int = 3,
                 hands: list[list[int]] | None = None, patch_frames: int = 1):
        super().__init__()
        self.dims = dims
        self.width = width  # size of the frame features
        # layout indices of each hand's 21 points (wrist first), for hand-shape features
        self.register_buffer("hand_index", torch.tensor(hands or [], dtype=torch.long), persistent=False)
        self.hand_span = as_slice(self.hand_index)  # the two hands are usually adjacent in the layout
        in_dim = in_dim + self.hand_index.numel() * dims
        self.register_buffer("feature_mean", torch.zeros(in_dim))
        self.register_buffer("feature_std", torch.ones(in_dim))
        self.frame_mlp = nn.Sequential(nn.Linear(in_dim, width), nn.GELU(), nn.LayerNorm(width))
        self.patches = FramePatches(width, patch_frames) if patch_frames > 1 else None
        self.pos_embedding = nn.Parameter(torch.randn(positions(max_frames, patch_frames), width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, int(width * mlp_ratio), dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(width),
                                                 enable_nested_tensor=False)
        self.proj = nn.Linear(width, embed_dim, bias=False)
        self.gradient_checkpointing = False

    @classmethod
    def from_config(cls, cfg, layout) -> "PoseEncoder":
        """Build from a :class:`~signclip.config.ModelConfig` and its point :class:`Layout`."""
        if cfg.graph_conv:
            raise ValueError("graph_conv: only the 'partwise' pose encoder has a graph-convolution embedding")
        if cfg.split_non_manual:
            raise ValueError("split_non_manual: only the 'partwise' pose encoder has a non-manual stream")
        hands = list(layout.hand_slices.values()) if cfg.hand_features else None
        return cls(len(layout) * cfg.pose.dims, cfg.pose_width, cfg.pose_layers, cfg.pose_heads, cfg.pose_mlp_ratio,
                   cfg.pose_dropout, cfg.pose.max_frames, cfg.embed_dim, cfg.pose.dims, hands, cfg.pose_patch_frames)

    def featurize(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, P*D) keypoints -> (B, T, F) features: the keypoints, then each hand relative to its
        wrist and scaled by the wrist-to-middle-knuckle length (hand shape independent of position)."""
        if self.hand_index.numel() == 0:
            return x
        b, t, _ = x.shape
        pts = x.reshape(b, t, -1, self.dims)  # (B, T, P, D)
        if self.hand_span is not None:
            pts = pts[:, :, self.hand_span].reshape(b, t, *self.hand_index.shape, self.dims)  # (B, T, 2, 21, D)
        else:
            pts = pts[:, :, self.hand_index]  # (B, T, 2, 21, D)
        wrist = pts[:, :, :, :1]  # (B, T, 2, 1, D)
        size = torch.linalg.vector_norm(pts[:, :, :, 9:10, :2] - wrist[..., :2], dim=-1, keepdim=True)
        size = torch.where(size > 1e-6, size, float("nan"))
        rel = (pts - wrist) / size  # (B, T, 2, 21, D), NaN where the hand is missing
        return torch.cat([x, rel.reshape(b, t, -1)], dim=-1)

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """Keypoints -> standardised features (mean/std of the training set); missing -> 0."""
        x = (self.featurize(x) - self.feature_mean) / self.feature_std
        return torch.where(torch.isnan(x), 0.0, x)

    def frame_features(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, F) keypoints, (B, T) bool real-frame mask -> (B, T, W) contextual frame features."""
        h, real = self.tokens(self.frame_mlp(self.standardize(x)), mask)  # (B, T', W), (B, T')
        h = self.run_transformer(self.transformer, h + self.pos_embedding[: h.shape[1]], ~real)
        return self.frames(h, x.shape[1])  # (B, T, W)

    def tokens(self, h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, W) frame embeddings, (B, T) real frames -> the transformer's (B, T', W) input and (B, T')
        real tokens: the frames themselves, or their patches."""
        return (h, mask) if self.patches is None else self.patches(h, mask)

    def frames(self, h: torch.Tensor, t: int) -> torch.Tensor:
        """(B, T', W) transformer outputs -> (B, t, W) features per frame."""
        return h if self.patches is None else self.patches.expand(h, t)

    def run_transformer(self, transformer: nn.TransformerEncoder, h: torch.Tensor, padding: torch.Tensor
                        ) -> torch.Tensor:
        """(B, T, W) through the layers with a (B, T) padding mask (optionally checkpointed), then the norm."""
        for layer in transformer.layers:
            if self.gradient_checkpointing and self.training:
                h = torch.utils.checkpoint.checkpoint(layer, h, None, padding, use_reentrant=False)
            else:
                h = layer(h, src_key_padding_mask=padding)
        return transformer.norm(h)

    def pool(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, W) frame features, (B, T) real frames -> (B, E): masked mean, then projection."""
        return self.proj(masked_mean(h, mask))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, F), (B, T) -> (B, E) pose embeddings (not normalised)."""
        return self.pool(self.frame_features(x, mask), mask)
