"""Task configs: the head, its loss and decoding, and how to fine-tune it. Named configs live in
``task_configs/<name>.json`` (``islr``, ``cslr``, ``slt``: Zhou et al.'s Table III settings), like the model
configs and training recipes; a saved task model keeps its TaskConfig in ``task.json``."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from signclip.config import TrainConfig, _from_dict

TASKS = ("islr", "cslr", "slt")
# the table column each task learns: the sign (isolated recognition), the gloss sequence, the sentence
TARGETS = {"islr": "text", "cslr": "glosses", "slt": "text"}
# the validation metric that keeps the best weights; WER is lower-is-better
BEST_METRIC = {"islr": "per_instance/top1", "cslr": "wer", "slt": "bleu4"}
LOWER_IS_BETTER = {"wer"}


@dataclass
class TaskConfig:
    """One downstream task: head, loss, decoding and optimisation (``train``: the fields of TrainConfig that
    apply: lr, weight decay, betas, batch size, epochs/steps, warm-up, clipping, EMA, seed, splits, device...)."""

    task: str = "islr"  # islr | cslr | slt
    name: str = "islr"
    description: str = ""
    head_width: int = 0  # CSLR TCN/BiLSTM and SLT projector/decoder width; 0 = the encoder's frame width
    dropout: float = 0.1  # in the heads
    label_smoothing: float = 0.0  # cross-entropy (ISLR 0.2 in Table III)
    encoder_lr_scale: float = 0.1  # the pre-trained encoder trains at this share of the learning rate
    # "step": x lr_decay at each of lr_decay_at (shares of the run); "cosine": warm-up + cosine
    lr_schedule: str = "step"
    lr_decay: float = 0.1
    lr_decay_at: list[float] = field(default_factory=lambda: [1 / 3, 2 / 3])
    # CSLR: TCN (conv k, max-pool 2) x tcn_blocks, then a BiLSTM; CTC blank is token 0
    tcn_kernel: int = 5
    tcn_blocks: int = 2
    lstm_layers: int = 2
    # SLT: MLP projector -> transformer decoder over word tokens
    decoder_layers: int = 3
    decoder_heads: int = 4
    max_text_tokens: int = 64
    beam_size: int = 4  # CSLR CTC prefix beam search / SLT beam search; 1 = greedy
    length_penalty: float = 1.0  # SLT beam search: scores divided by length ** length_penalty
    top_k: int = 5  # ISLR: classes recognize() returns
    refit_statistics: bool = False  # with an initial model: refit the feature statistics to this data
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task: unknown {self.task!r}; known: {list(TASKS)}")
        if self.lr_schedule not in ("step", "cosine"):
            raise ValueError(f"lr_schedule: expected 'step' or 'cosine', got {self.lr_schedule!r}")

    @property
    def target(self) -> str:
        """The table column this task learns (``text`` or ``glosses``)."""
        return TARGETS[self.task]

    @property
    def best_metric(self) -> str:
        return BEST_METRIC[self.task]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TaskConfig":
        return _from_dict(cls, d)


def list_task_configs() -> list[str]:
    """Names of the task configs shipped with the package."""
    files = resources.files("signclip") / "task_configs"
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".json"))


def get_task_config(name_or_path: str | Path, **train_overrides: Any) -> TaskConfig:
    """A named task config (``islr``, ``cslr``, ``slt``) or a JSON file, with TrainConfig fields overridden
    (None values ignored, e.g. options not given on the command line)."""
    path = Path(name_or_path)
    if path.suffix == ".json" and path.is_file():
        d = json.loads(path.read_text())
    elif str(name_or_path) in list_task_configs():
        d = json.loads((resources.files("signclip") / "task_configs" / f"{name_or_path}.json").read_text())
    else:
        raise ValueError(f"unknown task config {str(name_or_path)!r}; known: {list_task_configs()} or a JSON file")
    d.setdefault("name", path.stem)
    d["train"] = {**d.get("train", {}), **{k: v for k, v in train_overrides.items() if v is not None}}
    return TaskConfig.from_dict(d)
