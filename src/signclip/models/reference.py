"""The reference SignCLIP's pose tower (Jiang et al. 2024, fairseq MMPT ``MMBertForEncoder``), for
checkpoints converted with :func:`signclip.models.convert.convert_reference`.

Per frame a VideoTokenMLP (Linear -> GELU -> LayerNorm(eps 1e-5) -> Linear) makes a token; a BERT
encoder reads ``[CLS] frame_1 .. frame_T [SEP]`` with position ids ``0, 1 .. T`` and, for [SEP],
``max_video_len + 1`` (the reference always pads to ``max_video_len`` frames); the embedding is the mean
of the frame and [SEP] outputs ([CLS] excluded), with no projection. The input is the reference's
features: shoulder-normalised keypoints with missing points 0, no standardisation.

Unlike the reference, padded frames are masked: a pose in a batch gives the same embedding as alone.
"""
from __future__ import annotations

import torch
from torch import nn

from signclip.models.pose_encoder import PoseEncoder, masked_mean

BERT_POSITIONS = 512  # max_position_embeddings of bert-base, whose weights the reference towers started from


class ReferencePoseEncoder(PoseEncoder):
    """VideoTokenMLP -> BERT over [CLS] frames [SEP] -> mean of frames and [SEP]."""

    learns_statistics = False  # the reference reads raw features: the statistics stay mean 0, std 1

    def __init__(self, in_dim: int, width: int, layers: int, heads: int, intermediate: int, dropout: float,
                 max_video_len: int):
        from transformers import BertConfig, BertModel  # imported when used: its import pulls in torch._dynamo

        nn.Module.__init__(self)  # PoseEncoder's own layers are replaced by the BERT below
        if max_video_len + 1 >= BERT_POSITIONS:
            raise ValueError(f"max_video_len: {max_video_len} leaves no position for [SEP] in {BERT_POSITIONS}")
        self.width, self.max_video_len, self.gradient_checkpointing = width, max_video_len, False
        self.register_buffer("hand_index", torch.zeros(0, dtype=torch.long), persistent=False)  # no hand features
        self.register_buffer("feature_mean", torch.zeros(in_dim), persistent=False)  # identity: NaN -> 0 only
        self.register_buffer("feature_std", torch.ones(in_dim), persistent=False)
        self.frame_mlp = nn.Sequential(nn.Linear(in_dim, width), nn.GELU(), nn.LayerNorm(width, eps=1e-5),
                                       nn.Linear(width, width))  # the reference's VideoTokenMLP
        config = BertConfig(vocab_size=2, hidden_size=width, num_hidden_layers=layers, num_attention_heads=heads,
                            intermediate_size=intermediate, hidden_dropout_prob=dropout,
                            attention_probs_dropout_prob=dropout, max_position_embeddings=BERT_POSITIONS,
                            pad_token_id=None)
        # word embeddings: row 0 = [CLS], row 1 = [SEP] (the only rows of its vocabulary the reference reads)
        self.bert = BertModel(config, add_pooling_layer=False)

    @classmethod
    def from_config(cls, cfg, layout) -> "ReferencePoseEncoder":
        if cfg.pose_patch_frames != 1:
            raise ValueError("pose_patch_frames: only the 'global' and 'partwise' pose encoders make frame patches")
        if cfg.pose.max_frames > cfg.max_video_len:
            raise ValueError(f"pose.max_frames: {cfg.pose.max_frames} > max_video_len {cfg.max_video_len}")
        if cfg.embed_dim != cfg.pose_width:
            raise ValueError(f"embed_dim: the reference pose tower has no projection; must equal pose_width "
                             f"{cfg.pose_width}")
        return cls(len(layout) * cfg.pose.dims, cfg.pose_width, cfg.pose_layers, cfg.pose_heads,
                   int(cfg.pose_width * cfg.pose_mlp_ratio), cfg.pose_dropout, cfg.max_video_len)

    def hidden(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, F) keypoints, (B, T) real frames -> (B, T + 2, W) outputs for [CLS], the frames, [SEP]."""
        b, t = mask.shape
        special = self.bert.embeddings.word_embeddings.weight  # (2, W): [CLS], [SEP]
        tokens = torch.cat([special[:1].expand(b, 1, -1), self.frame_mlp(self.standardize(x)),
                            special[1:].expand(b, 1, -1)], dim=1)  # (B, T + 2, W)
        positions = self.bert.embeddings.position_ids[:, : t + 1]  # (1, T + 1): [CLS] and the frames
        positions = torch.cat([positions, torch.full_like(positions[:, :1], self.max_video_len + 1)], dim=1)
        ones = mask.new_ones(b, 1)
        attention = torch.cat([ones, mask, ones], dim=1).long()  # (B, T + 2), padded frames 0
        return self.bert(inputs_embeds=tokens, attention_mask=attention, position_ids=positions).last_hidden_state

    def frame_features(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, F), (B, T) -> (B, T, W) contextual frame features."""
        return self.hidden(x, mask)[:, 1:-1]

    def pool(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, W) frame features -> (B, W) their mean (no [SEP]: see :meth:`forward`)."""
        return masked_mean(h, mask)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, F), (B, T) -> (B, W): the mean of the real frames' and [SEP]'s outputs, as the reference."""
        return masked_mean(self.hidden(x, mask)[:, 1:], torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1))
