"""SignCLIP: a pose tower and a text tower mapping into one L2-normalised space.

A saved model is a directory::

    config.json          ModelConfig (architecture, preprocessing, known languages)
    model.safetensors    all weights, including the pose feature mean/std computed on training data
    tokenizer/           the text tokenizer
    text_config/         the text backbone's Hugging Face config (architecture without weights)
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from signclip.config import ModelConfig, get_model_config
from signclip.data.collate import pad_poses
from signclip.errors import PoseInputError, TextInputError
from signclip.models.partwise import PartwisePoseEncoder
from signclip.models.pose_encoder import PoseEncoder
from signclip.models.text_encoder import TextEncoder, load_tokenizer
from signclip.pose.io import PoseSource, describe
from signclip.pose.layout import get_layout
from signclip.pose.preprocess import preprocess, resample_frames
from signclip.text.prompts import make_prompts

PoseInput = PoseSource | np.ndarray  # path, .pose bytes, Pose, or a preprocessed (T, P, D) array
# ModelConfig.pose_encoder -> pose tower class (each has ``from_config(cfg, layout)``)
POSE_ENCODERS: dict[str, type[PoseEncoder]] = {"global": PoseEncoder, "partwise": PartwisePoseEncoder}


class SignCLIP(nn.Module):
    """Pose–text contrastive model with ``encode_pose`` / ``encode_text`` in the style of open_clip."""

    def __init__(self, cfg: ModelConfig, text: TextEncoder, tokenizer):
        super().__init__()
        self.cfg = cfg
        if cfg.pose_encoder not in POSE_ENCODERS:
            raise ValueError(f"pose_encoder: unknown {cfg.pose_encoder!r}; known: {sorted(POSE_ENCODERS)}")
        self.pose = POSE_ENCODERS[cfg.pose_encoder].from_config(cfg, get_layout(cfg.pose.layout))
        # masked pose modelling decoder (training only): frame features (W) -> standardised features (F)
        width, n_feat = self.pose.width, self.pose.feature_mean.numel()
        self.mpm_head = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, n_feat))
        self.text = text
        self.tokenizer = tokenizer
        self.logit_scale = nn.Parameter(torch.tensor(float(cfg.init_logit_scale)))

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def create(cls, cfg: ModelConfig | str = "tiny", **overrides) -> "SignCLIP":
        """A fresh model: random pose tower, pretrained text tower."""
        if isinstance(cfg, str):
            cfg = get_model_config(cfg, **overrides)
        text = TextEncoder.pretrained(cfg.text_model, cfg.embed_dim, cfg.freeze_text)
        return cls(cfg, text, load_tokenizer(cfg.text_model))

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "SignCLIP":
        """Load a model saved with :meth:`save` (no network access)."""
        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path}: not a saved signclip model (no config.json)")
        cfg = ModelConfig.from_dict(json.loads((path / "config.json").read_text()))
        text = TextEncoder.from_config_dir(path / "text_config", cfg.embed_dim, cfg.freeze_text)
        model = cls(cfg, text, load_tokenizer(path / "tokenizer"))
        model.load_state_dict(load_file(str(path / "model.safetensors")))
        return model.to(device).eval()

    def save(self, path: str | Path, state: dict[str, torch.Tensor] | None = None) -> Path:
        """Write config, weights (safetensors, incl. preprocessing statistics) and tokenizer.
        ``state``: weights to write instead of the current ones (e.g. the best seen in training)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps(self.cfg.to_dict(), indent=2))
        state = {k: v.detach().cpu().contiguous() for k, v in (state or self.state_dict()).items()}
        save_file(state, str(path / "model.safetensors"))
        self.tokenizer.save_pretrained(str(path / "tokenizer"))
        self.text.backbone.config.save_pretrained(str(path / "text_config"))
        return path

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    def set_pose_statistics(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Per-dimension mean/std of the training poses (NaN-aware), stored in the weights."""
        self.pose.feature_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.pose.feature_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    # ---- tensors in, tensors out (training) -----------------------------------------------------
    def tokenize(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        tok = self.tokenizer(list(prompts), padding=True, truncation=True, max_length=self.cfg.text_max_tokens,
                             return_tensors="pt")
        return {"input_ids": tok["input_ids"].to(self.device), "attention_mask": tok["attention_mask"].to(self.device)}

    def forward_pose(self, x: torch.Tensor, mask: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """(B, T, F), (B, T) -> (B, E)."""
        z = self.pose(x, mask)
        return nn.functional.normalize(z, dim=-1) if normalize else z

    def forward_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """(B, L), (B, L) -> (B, E)."""
        z = self.text(input_ids, attention_mask)
        return nn.functional.normalize(z, dim=-1) if normalize else z

    def forward(self, x: torch.Tensor, mask: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor, features: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised pose and text embeddings (B, E) each, and the temperature scale exp(logit_scale).
        With ``features``: frame features (B, T, W) and token features (B, L, H) instead of embeddings
        (for the objectives that need them, see :mod:`signclip.objectives`)."""
        scale = self.logit_scale.clamp(max=np.log(100)).exp()
        if features:
            return self.pose.frame_features(x, mask), self.text.token_features(input_ids, attention_mask), scale
        return self.forward_pose(x, mask), self.forward_text(input_ids, attention_mask), scale

    # ---- user API -------------------------------------------------------------------------------
    def preprocess_pose(self, pose: PoseInput, name: str | None = None) -> np.ndarray:
        """Any pose input -> (T, P, D) array in this model's layout (max_frames enforced)."""
        if isinstance(pose, np.ndarray):
            expected = (len(get_layout(self.cfg.pose.layout)), self.cfg.pose.dims)
            if pose.ndim != 3 or pose.shape[1:] != expected or pose.shape[0] == 0:
                raise PoseInputError(f"{name or 'array'}: expected a preprocessed array of shape "
                                     f"(frames>0, {expected[0]}, {expected[1]}), got {pose.shape}")
            pose = np.asarray(pose, dtype=np.float32)
            pose = np.where(np.isfinite(pose).all(-1, keepdims=True), pose, np.float32(np.nan))  # inf -> missing
            if np.isnan(pose).all():
                raise PoseInputError(f"{name or 'array'}: every coordinate is missing or NaN")
            if pose.shape[0] > self.cfg.pose.max_frames:
                pose = resample_frames(pose, self.cfg.pose.max_frames)
            return pose
        return preprocess(pose, self.cfg.pose, name or describe(pose))

    @torch.no_grad()
    def encode_pose(self, poses: PoseInput | Sequence[PoseInput], batch_size: int = 32, normalize: bool = True,
                    progress: bool | None = None) -> np.ndarray:
        """Embed poses (paths, ``.pose`` bytes, ``Pose`` objects or preprocessed arrays) -> (N, E) float32.

        Poses are sorted by length and batched; padding does not change any embedding.
        """
        single = not isinstance(poses, (list, tuple))
        items = [poses] if single else list(poses)
        arrays = [self.preprocess_pose(p) for p in items]
        out = self._encode_arrays(arrays, batch_size, normalize, progress)
        return out[0] if single else out

    @torch.no_grad()
    def _encode_arrays(self, arrays: list[np.ndarray], batch_size: int, normalize: bool,
                       progress: bool | None) -> np.ndarray:
        was_training = self.training
        self.eval()
        order = np.argsort([-a.shape[0] for a in arrays], kind="stable")
        out = np.zeros((len(arrays), self.cfg.embed_dim), dtype=np.float32)
        starts = range(0, len(arrays), batch_size)
        show = progress if progress is not None else len(arrays) > 4 * batch_size
        for s in tqdm(starts, desc="embedding poses", disable=not show, unit="batch"):
            idx = order[s: s + batch_size]
            x, mask = pad_poses([arrays[i] for i in idx])
            out[idx] = self.forward_pose(x.to(self.device), mask.to(self.device), normalize).float().cpu().numpy()
        self.train(was_training)
        return out

    @torch.no_grad()
    def encode_text(self, texts: str | Sequence[str], spoken_language: str | Sequence[str | None] | None = None,
                    signed_language: str | Sequence[str | None] | None = None, batch_size: int = 64,
                    normalize: bool = True, progress: bool | None = None) -> np.ndarray:
        """Embed texts -> (N, E) float32. With languages, each text becomes a prompt ``<en> <ase> text``;
        a language may be one code for all texts or one per text. Never runs the pose tower."""
        single = isinstance(texts, str)
        items = [texts] if single else list(texts)
        if not items:
            raise TextInputError("texts: empty list")
        prompts = self.prompts(items, spoken_language, signed_language)
        was_training = self.training
        self.eval()
        order = np.argsort([-len(p) for p in prompts], kind="stable")
        out = np.zeros((len(prompts), self.cfg.embed_dim), dtype=np.float32)
        show = progress if progress is not None else len(prompts) > 4 * batch_size
        for s in tqdm(range(0, len(prompts), batch_size), desc="embedding texts", disable=not show, unit="batch"):
            idx = order[s: s + batch_size]
            tok = self.tokenize([prompts[i] for i in idx])
            out[idx] = self.forward_text(tok["input_ids"], tok["attention_mask"], normalize).float().cpu().numpy()
        self.train(was_training)
        return out[0] if single else out

    def prompts(self, texts: Sequence[str], spoken_language=None, signed_language=None) -> list[str]:
        """The prompts this model would embed for these texts and languages."""
        return make_prompts(texts, spoken_language, signed_language, template=self.cfg.prompt_template,
                            known_spoken=self.cfg.spoken_languages, known_signed=self.cfg.signed_languages)


def create_model(name: str | ModelConfig = "tiny", **overrides) -> SignCLIP:
    """A fresh model from a named config (``signclip.list_models()``), a JSON path or a ModelConfig."""
    return SignCLIP.create(name, **overrides)


def load(path: str | Path, device: str | torch.device = "cpu") -> SignCLIP:
    """Load a saved model directory."""
    return SignCLIP.load(path, device)
