"""Fine-tuning a pose encoder on a downstream task: ``finetune(table, task_config, out, init=MODEL)``.

The run folder is laid out as ``signclip train``'s, with the same machinery (:mod:`signclip.training`: the run
lock, crash-safe resumable checkpoints with a ``previous`` fallback, the JSONL log, the EMA of the weights,
torchrun data parallelism, the reproducible batches of each epoch)::

    splits.csv          every row with its split (reused on resume)
    task_config.json    the TaskConfig used
    checkpoints/last/   task model + trainer state, every save_every steps (exact resume)
    best/               the task model with the best validation metric (ISLR top-1, CSLR WER, SLT BLEU-4)
    log.jsonl, log.csv  loss, learning rate and validation metrics per step

The pose encoder trains at ``encoder_lr_scale`` x the learning rate, the new head at the full rate, with a
step or a warm-up + cosine schedule (Zhou et al., Table III).
"""
from __future__ import annotations

import json
import math
from contextlib import nullcontext
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from signclip.config import ModelConfig, get_recipe
from signclip.cpu import resolve_precision
from signclip.data.arrays import SplitData, load_split
from signclip.data.splits import SPLITS
from signclip.files import write_text
from signclip.models.signclip import SignCLIP
from signclip.tasks.config import LOWER_IS_BETTER, TaskConfig
from signclip.tasks.evaluate import evaluate_task, targets_of
from signclip.tasks.metrics import require_metric_libraries
from signclip.tasks.model import TaskModel, load
from signclip.tasks.vocab import build_vocab
from signclip.training.batches import MemorySource, PoseTextDataset
from signclip.training.checkpoints import run_lock
from signclip.training.distributed import init_distributed
from signclip.training.fit import run_splits
from signclip.training.loop import Trainer
from signclip.training.optim import lr_lambda, make_ema


def check_targets(df: pd.DataFrame, cfg: TaskConfig, name: str = "data") -> None:
    """Raise a one-line ValueError naming the column when the table cannot teach the task."""
    if cfg.target not in df.columns or df[cfg.target].isna().all():
        what = ("each row's space-separated gloss sequence" if cfg.target == "glosses" else
                "each row's sentence" if cfg.task == "slt" else "each row's class")
        raise ValueError(f"{name}: no {cfg.target!r} column with values: the {cfg.task} task learns {what}")


def make_task_optimizer(model: TaskModel, cfg: TaskConfig) -> torch.optim.Optimizer:
    """AdamW: the pose encoder at ``encoder_lr_scale`` x lr, the head at lr; no decay on biases, norms and
    position embeddings."""
    tc = cfg.train
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lr = tc.lr * (cfg.encoder_lr_scale if name.startswith("pose.") else 1.0)
        decay = 0.0 if p.ndim < 2 or "pos_embedding" in name else tc.weight_decay
        groups.setdefault((lr, decay), []).append(p)
    ordered = sorted(groups.items(), key=lambda g: -g[0][0])  # the head's rate first: the log shows it
    return torch.optim.AdamW([{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in ordered],
                             betas=tuple(tc.betas))


def schedule(cfg: TaskConfig, total: int):
    """The learning-rate factor of each step: warm-up + cosine, or x ``lr_decay`` at each of ``lr_decay_at``
    (shares of the run) after the warm-up."""
    warmup = cfg.train.warmup(total)
    if cfg.lr_schedule == "cosine":
        return lr_lambda(warmup, total)
    milestones = [round(f * total) for f in cfg.lr_decay_at]

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return cfg.lr_decay ** sum(step >= m for m in milestones)
    return f


class TaskObjective(nn.Module):
    """The task model's loss as the trainer's objective (what DDP wraps); tasks have no training-only heads."""

    def __init__(self, model: TaskModel):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, mask: torch.Tensor, targets: list[str]) -> tuple[torch.Tensor, dict]:
        return self.model(x, mask, targets), {}

    def heads_state_dict(self) -> dict[str, torch.Tensor]:
        return {}


class TaskTrainer(Trainer):
    """One fine-tuning run of ``model`` on ``splits`` into ``out`` (see the module docstring): signclip's
    :class:`~signclip.training.loop.Trainer` (its steps, logging, checkpoints, exact resume, EMA and DDP) with
    the task's batches (pose, target text), objective, optimiser groups, schedule and validation metric."""

    def __init__(self, model: TaskModel, splits: dict[str, SplitData], cfg: TaskConfig, out: str | Path,
                 progress: bool = True):
        tc = cfg.train
        self.model, self.splits, self.cfg, self.task_cfg, self.progress = model, splits, tc, cfg, progress
        self.env = init_distributed(tc.device)
        self.precision = resolve_precision(tc.precision, self.env.device.type)
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        if self.env.is_main:
            write_text(self.out / "task_config.json", json.dumps(cfg.to_dict(), indent=2))
        train = splits["train"]
        dataset = PoseTextDataset(train.arrays, [str(t) for t in targets_of(model, train.df)],
                                  model.encoder_cfg.pose, tc.augment, tc.seed)
        self.source = MemorySource(dataset, tc.batch_size, tc.seed, self.env, tc.num_workers)
        self.steps_per_epoch = max(1, self.source.n_batches() // tc.grad_accum)
        self.total_steps = tc.total_steps(self.steps_per_epoch)
        self.eval_every = tc.eval_every or self.steps_per_epoch
        self.save_every = tc.save_every or self.steps_per_epoch
        model.to(self.env.device)
        model.pose.gradient_checkpointing = tc.gradient_checkpointing
        self.objective = TaskObjective(model)
        self.optimizer = make_task_optimizer(model, cfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule(cfg, self.total_steps))
        self.ema = make_ema(model, tc.ema_decay)
        self.step, self.best, self.best_metrics, self.best_state, self.best_step = 0, -math.inf, {}, None, 0
        self.last, self.log_path, self.log_rows = self.out / "checkpoints" / "last", self.out / "log.jsonl", []

    def plan(self) -> str:
        cfg, tc, n_val = self.task_cfg, self.cfg, len(self.splits["validation"].arrays)
        return (f"fine-tuning {cfg.task} ({cfg.name}) on a {self.model.encoder_cfg.name} pose encoder: "
                f"{self.total_steps} steps ({self.total_steps / self.steps_per_epoch:.1f} epochs of "
                f"{self.steps_per_epoch} batches of {tc.batch_size}), lr {tc.lr:g} (encoder x"
                f"{cfg.encoder_lr_scale:g}), "
                f"{cfg.lr_schedule} schedule, EMA {tc.ema_decay:g}; {len(self.model.vocab)} output tokens; {n_val} "
                "validation poses" + (f", the best weights by validation {cfg.best_metric} are kept" if n_val else ""))

    def batch_loss(self, net: nn.Module, x: torch.Tensor, mask: torch.Tensor, targets: list[str],
                   ids: torch.Tensor) -> tuple[torch.Tensor, dict]:
        device = self.env.device
        return net(x.to(device, non_blocking=True), mask.to(device, non_blocking=True), targets)

    def validate(self, row: dict, bar: tqdm) -> None:
        """Rank 0: the task metrics of the weights that would be kept; remember the best."""
        validation = self.splits["validation"]
        if not self.env.is_main or not validation.arrays:
            return
        evaluated = self.model if self.ema is None else self.ema.module
        metrics, _ = evaluate_task(evaluated, validation)
        self.model.train()
        row.update({f"val/{k}": v for k, v in metrics.items()})
        key = self.task_cfg.best_metric
        value = metrics[key] * (-1 if key in LOWER_IS_BETTER else 1)
        if value >= self.best:  # a tie keeps the later weights
            self.best, self.best_metrics, self.best_step = value, metrics, self.step
            self.best_state = {k: v.detach().cpu().clone() for k, v in evaluated.state_dict().items()}
        bar.set_postfix(loss=f"{row['loss']:.3f}", val=f"{metrics[key]:.2f}")


def initial_encoder(init: str | Path | SignCLIP | TaskModel | None, model: str | ModelConfig | None
                    ) -> SignCLIP | TaskModel | ModelConfig:
    """What the task model's pose tower starts from: a model (a SignCLIP, a task model, or the directory or
    ``hf-hub:`` id of one; a converted reference model is a saved SignCLIP), or a fresh tower of ``model``
    (a named config or JSON file; default: the default recipe's model)."""
    if init is not None and model is not None:
        raise ValueError("give init (a trained model) or model (a new pose tower), not both")
    if init is None:
        return model if isinstance(model, ModelConfig) else get_recipe("default").model_config(model)
    return load(init) if isinstance(init, (str, Path)) else init


def finetune(data: pd.DataFrame, cfg: TaskConfig, out: str | Path,
             init: str | Path | SignCLIP | TaskModel | None = None, model: str | ModelConfig | None = None,
             resume: bool = True, progress: bool = True) -> tuple[TaskModel, dict[str, SplitData], dict]:
    """Split ``data`` (as ``signclip train``: rows marked test are the test set), preprocess, fine-tune a
    task model whose pose tower starts from ``init`` (or a fresh ``model`` tower), and reload the best one.
    Returns it, the splits and the run summary."""
    tc = cfg.train
    check_targets(data, cfg)
    require_metric_libraries()
    env = init_distributed(tc.device)
    out = Path(out)
    with run_lock(out) if env.is_main else nullcontext():
        data = run_splits(data, tc, out, resume, progress)
        encoder = initial_encoder(init, model)
        pose_cfg = (encoder if isinstance(encoder, ModelConfig) else
                    encoder.cfg if isinstance(encoder, SignCLIP) else encoder.encoder_cfg).pose
        splits = {s: load_split(data[data["split"] == s], pose_cfg, progress) for s in SPLITS}
        train_rows = splits["train"]
        keep = [i for i, t in enumerate(targets_of(cfg, train_rows.df)) if t is not None]
        splits["train"] = SplitData(train_rows.df.iloc[keep].reset_index(drop=True),
                                    [train_rows.arrays[i] for i in keep])
        torch.manual_seed(tc.seed)
        task_model = TaskModel.create(cfg, build_vocab(cfg.task, splits["train"].df[cfg.target]), encoder)
        validation = splits["validation"]  # ISLR validates on the classes it learns
        known = [i for i, t in enumerate(targets_of(cfg, validation.df))
                 if t and (cfg.task != "islr" or task_model.known(t))]
        splits["validation"] = SplitData(validation.df.iloc[known].reset_index(drop=True),
                                         [validation.arrays[i] for i in known])
        if isinstance(encoder, ModelConfig) or cfg.refit_statistics:
            task_model.fit_statistics(splits["train"].arrays)
        trainer = TaskTrainer(task_model, splits, cfg, out, progress)
        if progress and env.is_main:
            tqdm.write(trainer.plan())
        summary = trainer.run(resume)
        return TaskModel.load(out / "best", env.device), splits, summary
