"""SignCLIP: a pose tower and a text tower mapping into one L2-normalised space.

A saved model is a directory::

    config.json          ModelConfig (architecture, preprocessing, known languages)
    model.safetensors    all weights, including the pose feature mean/std computed on training data
    tokenizer/           the text tokenizer
    text_config/         the text backbone's Hugging Face config (architecture without weights)
    appearance.pose      only where the config anonymises poses with a given appearance (signclip.pose.anonymize)

``load`` also takes a Hugging Face Hub id ``hf-hub:ORG/NAME[@REVISION]`` (:mod:`signclip.models.hub`), and
:func:`signclip.push_to_hub` shares a model there with a generated model card.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from signclip.config import ModelConfig, get_model_config
from signclip.cpu import adapt_threads, resolve_precision
from signclip.errors import DamagedFileError
from signclip.files import recover_dir, replacing_dir
from signclip.models.encoder import PoseTextEncoder
from signclip.models.hub import resolve_model_dir
from signclip.models.partwise import PartwisePoseEncoder
from signclip.models.pose_encoder import PoseEncoder
from signclip.models.reference import ReferencePoseEncoder
from signclip.models.statistics import FeatureStatistics
from signclip.models.text_encoder import TextEncoder, load_tokenizer
from signclip.pose.anonymize import bundle_appearance, resolve_appearance
from signclip.pose.layout import get_layout

WEIGHTS = "model.safetensors"
# ModelConfig.pose_encoder -> pose tower class (each has ``from_config(cfg, layout)``)
POSE_ENCODERS: dict[str, type[PoseEncoder]] = {"global": PoseEncoder, "partwise": PartwisePoseEncoder,
                                               "reference": ReferencePoseEncoder}


class SignCLIP(nn.Module, PoseTextEncoder):
    """Pose–text contrastive model with ``encode_pose`` / ``encode_text`` in the style of open_clip (the user
    API of :class:`~signclip.models.encoder.PoseTextEncoder`, shared with the ONNX runtime)."""

    def __init__(self, cfg: ModelConfig, text: TextEncoder, tokenizer):
        super().__init__()
        self.cfg = cfg
        if cfg.pose_encoder not in POSE_ENCODERS:
            raise ValueError(f"pose_encoder: unknown {cfg.pose_encoder!r}; known: {sorted(POSE_ENCODERS)}")
        self.pose = POSE_ENCODERS[cfg.pose_encoder].from_config(cfg, get_layout(cfg.pose.layout))
        self.text = text
        self.tokenizer = tokenizer
        self.logit_scale = nn.Parameter(torch.tensor(float(cfg.init_logit_scale)))
        self.weights_file: Path | None = None  # where the weights were loaded from / saved to
        self._fingerprint: str | None = None
        self.precision = "fp32"  # of inference (set_precision); training has its own (TrainConfig.precision)

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def create(cls, cfg: ModelConfig | str = "tiny", **overrides) -> "SignCLIP":
        """A fresh model: random pose tower, pretrained text tower."""
        if isinstance(cfg, str):
            cfg = get_model_config(cfg, **overrides)
        text = TextEncoder.pretrained(cfg.text_model, cfg.embed_dim, cfg.freeze_text, **text_options(cfg))
        return cls(cfg, text, load_tokenizer(cfg.text_model))

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu",
             cache_dir: str | Path | None = None) -> "SignCLIP":
        """Load a model saved with :meth:`save`: a directory (no network access), or a Hugging Face Hub id
        ``hf-hub:ORG/NAME[@REVISION]`` downloaded into the Hugging Face cache (``cache_dir``, default
        ``HF_HUB_CACHE``; with ``HF_HUB_OFFLINE=1`` only the cache is read)."""
        path = recover_dir(resolve_model_dir(path, cache_dir))
        if not (path / "config.json").is_file():
            task = " but a task model (task.json): load it with signclip.load" if (path / "task.json").is_file() else ""
            raise FileNotFoundError(f"{path}: not a saved signclip model (no config.json){task}")
        try:
            cfg = ModelConfig.from_dict(json.loads((path / "config.json").read_text()))
            cfg.pose = resolve_appearance(cfg.pose, path)
            state = load_file(str(path / WEIGHTS))
        except (OSError, ValueError, SafetensorError) as e:
            raise DamagedFileError(f"{path}: cannot read the saved model ({type(e).__name__}: {e})") from None
        text = TextEncoder.from_config_dir(path / "text_config", cfg.embed_dim, cfg.freeze_text, **text_options(cfg))
        model = cls(cfg, text, load_tokenizer(path / "tokenizer"))
        # models saved before the masked-pose-modelling head moved to the training objective carry it
        model.load_state_dict({k: v for k, v in state.items() if not k.startswith("mpm_head.")})
        model.weights_file = path / WEIGHTS
        return model.to(device).eval()

    def save(self, path: str | Path, state: dict[str, torch.Tensor] | None = None) -> Path:
        """Write config, weights (safetensors, incl. preprocessing statistics) and tokenizer, crash-safe
        (a folder written aside, then swapped in). ``state``: weights to write instead of the current
        ones (e.g. the best seen in training)."""
        path = Path(path)
        with replacing_dir(path) as tmp:
            self.write(tmp, state)
        self.weights_file, self._fingerprint = path / WEIGHTS, None
        return path

    def write(self, folder: Path, state: dict[str, torch.Tensor] | None = None) -> None:
        """The files of :meth:`save` into an existing folder (not crash-safe by itself)."""
        cfg = replace(self.cfg, pose=bundle_appearance(self.cfg.pose, folder))
        (folder / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        state = {k: (v.float() if v.dtype == torch.bfloat16 else v).detach().cpu().contiguous()
                 for k, v in (state or self.state_dict()).items()}
        save_file(state, str(folder / WEIGHTS))
        self.tokenizer.save_pretrained(str(folder / "tokenizer"))
        self.text.backbone.config.save_pretrained(str(folder / "text_config"))

    @property
    def fingerprint(self) -> str | None:
        """The first 16 hex digits of the SHA-256 of the weights file this model was loaded from or saved
        to (None for a model never saved): indexes record it to refuse embeddings of another model."""
        if self._fingerprint is None and self.weights_file is not None and self.weights_file.is_file():
            digest = hashlib.sha256()
            with open(self.weights_file, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    def set_precision(self, precision: str = "auto") -> str:
        """The precision of :meth:`encode_pose` / :meth:`encode_text`: ``bf16`` stores the weight matrices in
        bfloat16 and runs under autocast (on a CPU with bf16 instructions ~2-3x the fp32 speed of a BERT-sized
        tower at batch 32, min cosine to fp32 >= 0.999: ``benchmarks/cpu_speed.py``); ``fp32`` stores them in
        float32 again (weights rounded by bf16 stay rounded); ``auto`` = bf16 where the CPU has bf16
        instructions (:func:`signclip.cpu.resolve_precision`). For inference: train and export in fp32
        (training has ``TrainConfig.precision``). Returns the precision chosen."""
        self.precision = resolve_precision(precision, self.device.type)
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        for p in self.parameters():
            if p.dim() >= 2:  # matrices (linear layers, embeddings); norms, biases and statistics stay fp32
                p.data = p.data.to(dtype)
        return self.precision

    # ---- fitted on training data ---------------------------------------------------------------
    def feature_statistics(self) -> FeatureStatistics:
        """An empty accumulator of this pose tower's feature statistics (feed it blocks of frames)."""
        return FeatureStatistics(self.pose.featurize)

    @torch.no_grad()
    def fit_preprocessing(self, poses: Sequence[np.ndarray] = (), spoken_languages: Iterable[str | None] = (),
                          signed_languages: Iterable[str | None] = (),
                          statistics: tuple[np.ndarray, np.ndarray] | None = None) -> "SignCLIP":
        """Fit what the model takes from its training data, stored with its weights and config:

        * the per-dimension mean/std of the pose features, from preprocessed (T, P, D) training ``poses``
          or given as ``statistics`` (e.g. computed while packing shards); kept as they are when neither,
          and always for a pose tower that reads unstandardised features (``learns_statistics`` False);
        * the language codes it knows (added to those it knows already; None/NaN ignored)."""
        if self.pose.learns_statistics:
            if statistics is None and len(poses):
                statistics = self.feature_statistics().add_poses(poses).result()
            if statistics is not None:
                self.pose.feature_mean.copy_(torch.as_tensor(statistics[0], dtype=torch.float32))
                self.pose.feature_std.copy_(torch.as_tensor(statistics[1], dtype=torch.float32))
        for field, codes in (("spoken_languages", spoken_languages), ("signed_languages", signed_languages)):
            known = set(getattr(self.cfg, field)) | {str(c) for c in codes if isinstance(c, str) or pd.notna(c)}
            setattr(self.cfg, field, sorted(known))
        return self

    # ---- tensors in, tensors out (training) -----------------------------------------------------
    def tokenize(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        tok = self.tokenizer(list(prompts), padding=True, truncation=True, max_length=self.cfg.text_max_tokens,
                             return_tensors="pt")
        return {"input_ids": tok["input_ids"].to(self.device), "attention_mask": tok["attention_mask"].to(self.device)}

    def forward_pose(self, x: torch.Tensor, mask: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """(B, T, F), (B, T) -> (B, E)."""
        z = self.pose(x, mask)
        return nn.functional.normalize(z, dim=-1) if normalize else z

    def forward_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     normalize: bool = True) -> torch.Tensor:
        """(B, L), (B, L) -> (B, E)."""
        z = self.text(input_ids, attention_mask)
        return nn.functional.normalize(z, dim=-1) if normalize else z

    def scale(self) -> torch.Tensor:
        """The similarity scale exp(logit_scale) (1 / temperature), at most 100 as in CLIP."""
        return self.logit_scale.clamp(max=np.log(100)).exp()

    def forward(self, x: torch.Tensor, mask: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor, features: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised pose and text embeddings (B, E) each, and the temperature scale exp(logit_scale).
        With ``features``: frame features (B, T, W) and token features (B, L, H) instead of embeddings
        (for the objectives that need them, see :mod:`signclip.training.objectives`)."""
        scale = self.scale()
        if features:
            return self.pose.frame_features(x, mask), self.text.token_features(input_ids, attention_mask), scale
        return self.forward_pose(x, mask), self.forward_text(input_ids, attention_mask), scale

    # ---- the batch functions of PoseTextEncoder's user API -------------------------------------
    def pose_batch(self, x: np.ndarray, mask: np.ndarray, normalize: bool) -> np.ndarray:
        """(B, T, F) keypoints and (B, T) mask -> (B, E) float32 (:meth:`encode_pose` and the others)."""
        adapt_threads()
        x_t, mask_t = torch.from_numpy(x).to(self.device), torch.from_numpy(mask).to(self.device)
        with self.autocast():
            z = self.forward_pose(x_t, mask_t, normalize=False)
        return output(z, normalize)

    def text_batch(self, prompts: list[str], normalize: bool) -> np.ndarray:
        """B prompts -> (B, E) float32 (:meth:`encode_text`)."""
        adapt_threads()
        tok = self.tokenize(prompts)
        with self.autocast():
            z = self.forward_text(tok["input_ids"], tok["attention_mask"], normalize=False)
        return output(z, normalize)

    def autocast(self) -> torch.autocast:
        """bf16 autocast at inference precision bf16 (:meth:`set_precision`), else nothing."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    @contextmanager
    def inference(self) -> Iterator[None]:
        """No gradients, eval mode (then the mode the model had)."""
        with torch.no_grad(), evaluating(self):
            yield


def output(z: torch.Tensor, normalize: bool) -> np.ndarray:
    """(B, E) embeddings, maybe bf16 -> float32 numpy, L2-normalised in float32 if ``normalize``."""
    z = z.float()
    return (nn.functional.normalize(z, dim=-1) if normalize else z).cpu().numpy()


def text_options(cfg: ModelConfig) -> dict:
    """The :class:`TextEncoder` options of a config: pooling and projection."""
    return {"pooling": cfg.text_pooling, "projection": cfg.text_projection}


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode inside the block, then the mode the model had."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def create_model(name: str | ModelConfig = "tiny", **overrides) -> SignCLIP:
    """A fresh model from a named config (``signclip.list_models()``), a JSON path or a ModelConfig."""
    return SignCLIP.create(name, **overrides)


def load(path: str | Path, device: str | torch.device = "cpu", cache_dir: str | Path | None = None) -> SignCLIP:
    """Load a saved model directory or a Hugging Face Hub id ``hf-hub:ORG/NAME[@REVISION]``."""
    return SignCLIP.load(path, device, cache_dir)
