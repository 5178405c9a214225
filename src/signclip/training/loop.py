"""The training loop: AdamW, warm-up + cosine schedule, clipping, accumulation, checkpoints, exact resume.

Output directory::

    splits.csv                  every example with its train/validation/test split (written by fit)
    train_config.json           the TrainConfig used
    checkpoints/last/           model + trainer state, every save_every steps
    best/                       the model with the best validation metric
    log.jsonl, log.csv          losses, learning rate, temperature and validation metrics per step

Under ``torchrun`` (see :mod:`signclip.training.distributed`) the same code runs data-parallel:
``batch_size`` is per process, each global batch of ``batch_size x world`` examples is split across
ranks, the contrastive loss sees the whole global batch (``gather_with_grad``), DDP averages gradients,
and rank 0 alone logs, validates and writes checkpoints. ``splits['train']`` is either preprocessed
arrays in memory (:class:`SplitData`) or a stream of packed shards (:class:`ShardSplit`).
"""
from __future__ import annotations

import inspect
import json
import math
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from signclip.config import TrainConfig
from signclip.cpu import adapt_threads, resolve_precision
from signclip.data.arrays import SplitData, table_prompts
from signclip.data.manifests import optional_column
from signclip.data.shards import ShardSplit
from signclip.eval.retrieval import evaluate_split
from signclip.files import recover_dir, write_text
from signclip.models.signclip import SignCLIP
from signclip.text.prompts import language_prompt
from signclip.training.batches import MemorySource, PoseTextDataset, source_weights
from signclip.training.checkpoints import (
    append_log,
    has_checkpoint,
    load_checkpoint,
    read_log,
    run_lock,
    save_checkpoint,
)
from signclip.training.distributed import barrier, broadcast_object, gather_with_grad, init_distributed
from signclip.training.objectives import Objective, no_gather
from signclip.training.optim import (
    enable_gradient_checkpointing,
    freeze_parameters,
    lr_lambda,
    make_ema,
    make_optimizer,
)
from signclip.training.streaming import ShardSource


def language_prompts_for(model: SignCLIP, df: pd.DataFrame) -> list[str | None]:
    """The text-free ``<en> <ase>`` prompt of each row (None where the row has no language)."""
    return [language_prompt(s, g, model.cfg.prompt_template)
            for s, g in zip(optional_column(df, "spoken_language"), optional_column(df, "signed_language"))]


def wrap_ddp(objective: Objective, device: torch.device, find_unused_parameters: bool = True) -> nn.Module:
    """DDP over the objective: gradients averaged over ranks. The buffers (feature statistics) are
    constant during training, so they are not re-broadcast before every forward."""
    sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(
        DistributedDataParallel.__init__).parameters else {"broadcast_buffers": False})
    return DistributedDataParallel(objective, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=find_unused_parameters, **sync)


def fit_model_to_data(model: SignCLIP, splits: dict, refit_statistics: bool = True) -> None:
    """The model's preprocessing statistics (unless ``refit_statistics`` is off: a fine-tuned model keeps
    its own) and languages from the training data; prompts of every split held in memory (a language seen
    only in validation/test must not break prompt building)."""
    train_data = splits["train"]
    in_memory = [d for d in splits.values() if isinstance(d, SplitData)]
    spoken = [c for d in in_memory for c in optional_column(d.df, "spoken_language")]
    signed = [c for d in in_memory for c in optional_column(d.df, "signed_language")]
    if isinstance(train_data, SplitData):
        if len(train_data.arrays) < 2:
            raise ValueError(f"need at least 2 training poses, got {len(train_data.arrays)}")
        model.fit_preprocessing(train_data.arrays if refit_statistics else (), spoken, signed)
    else:  # packed shards: languages and feature statistics were computed while packing
        shard_spoken, shard_signed = train_data.languages()
        model.fit_preprocessing(spoken_languages=shard_spoken + spoken, signed_languages=shard_signed + signed,
                                statistics=train_data.statistics() if refit_statistics else None)
    for data in in_memory:
        data.prompts = table_prompts(model, data.df)


def batch_source(model: SignCLIP, train_data: SplitData | ShardSplit, cfg: TrainConfig, env):
    """What yields the training batches: in-memory examples, or a stream of packed shards."""
    if isinstance(train_data, SplitData):
        dataset = PoseTextDataset(train_data.arrays, train_data.prompts, model.cfg.pose, cfg.augment, cfg.seed,
                                  language_prompts_for(model, train_data.df), cfg.language_prompt_p)
        groups = [(share, train_data.df[col].astype(str).tolist()) for share, col in
                  ((cfg.text_grouped_batches, "text"), (cfg.language_grouped_batches, "signed_language")) if share > 0]
        return MemorySource(dataset, cfg.batch_size, cfg.seed, env, cfg.num_workers, groups,
                            source_weights(train_data.df, cfg.source_weights))
    if cfg.text_grouped_batches or cfg.language_grouped_batches or cfg.source_weights:
        raise ValueError("text_grouped_batches / language_grouped_batches / source_weights need in-memory "
                         "training data, not streamed shards")
    return ShardSource.for_model(train_data, model, cfg, env)


def clearly_worse(value: float, best: float, n: int) -> bool:
    """Whether a validation score is clearly below the best so far: by more than two binomial standard errors
    of a rate measured on ``n`` poses (``n`` = 0: any amount below).

    The rule that picks the kept weights: the latest ones not clearly worse than the best. While validation
    saturates (the same score, or noise around it, for a long stretch) the later weights win — on the logged
    test curves of unseen signers they never did worse — but once validation declines beyond its noise, the
    weights before the decline are kept, not the over-trained ones."""
    if n <= 0:
        return value < best
    p = min(max(best, 1 / n), 1 - 1 / n)  # a perfect score still has the noise of one pose
    return best - value > 2 * math.sqrt(p * (1 - p) / n)


class Trainer:
    """One training run of ``model`` on ``splits`` into ``out_dir`` (see the module docstring)."""

    def __init__(self, model: SignCLIP, splits: dict, cfg: TrainConfig, out_dir: str | Path, progress: bool = True):
        self.model, self.splits, self.cfg, self.progress = model, splits, cfg, progress
        self.env = init_distributed(cfg.device)
        self.precision = resolve_precision(cfg.precision, self.env.device.type)  # auto: bf16 where the CPU has it
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        fit_model_to_data(model, splits, cfg.refit_statistics)
        if self.env.is_main:
            write_text(self.out / "train_config.json", json.dumps(cfg.to_dict(), indent=2))
        self.source = batch_source(model, splits["train"], cfg, self.env)
        self.steps_per_epoch = max(1, self.source.n_batches() // cfg.grad_accum)
        self.total_steps = cfg.total_steps(self.steps_per_epoch)
        self.eval_every = cfg.eval_every or self.steps_per_epoch
        self.save_every = cfg.save_every or self.steps_per_epoch

        device = self.env.device
        model.to(device)
        if cfg.gradient_checkpointing:
            enable_gradient_checkpointing(model)
        freeze_parameters(model, cfg.frozen_parameters)
        self.objective = Objective(model, cfg, gather_with_grad if self.env.distributed else no_gather).to(device)
        self.optimizer = make_optimizer(self.objective, cfg)
        schedule = lr_lambda(cfg.warmup(self.total_steps), self.total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.ema = make_ema(model, cfg.ema_decay)
        self.step, self.best, self.best_metrics, self.best_state, self.best_step = 0, -math.inf, {}, None, 0
        self.last = self.out / "checkpoints" / "last"
        self.log_path = self.out / "log.jsonl"
        self.log_rows: list[dict] = []

    def plan(self) -> str:
        """What this run will do, in one paragraph (printed when training starts)."""
        cfg, aug = self.cfg, self.cfg.augment
        epochs = self.total_steps / self.steps_per_epoch
        rule = ("--steps given" if cfg.steps else f"{cfg.epochs} epochs" if self.total_steps > cfg.min_steps
                else f"at least {cfg.min_steps} steps")
        validation = self.splits["validation"]
        n_val = len(validation.arrays) if isinstance(validation, SplitData) else len(validation)
        keep = (f"the best {'EMA ' if self.ema else ''}weights by validation {cfg.best_metric} are kept" if n_val > 1
                else "no validation poses: the last weights are kept")
        return (f"training {self.model.cfg.name}: {self.total_steps} steps ({epochs:.1f} epochs of "
                f"{self.steps_per_epoch} batches of {cfg.batch_size}; {rule}), warm-up {cfg.warmup(self.total_steps)} "
                f"steps, lr {cfg.lr:g}" + ("" if self.model.cfg.freeze_text else f" (text tower {cfg.text_lr:g})")
                + f", EMA {cfg.ema_decay:g}, augmentation flip {aug.flip_p:g} / affine {aug.affine_sigma:g} / "
                f"speed {aug.speed_sigma:g} / noise {aug.noise_sigma:g} / hand drop {aug.hand_drop_p:g}; {n_val} "
                f"validation poses, {keep}; precision {self.precision}"
                + (" (bf16 instructions on this CPU)" if cfg.precision == "auto" and self.precision == "bf16" else ""))

    # ---- the run ------------------------------------------------------------------------------------
    def run(self, resume: bool = True) -> dict:
        """Train to ``epochs``, resuming from ``checkpoints/last`` when it exists and ``resume`` is true;
        returns a summary with the best validation metrics."""
        recover_dir(self.out / "best")
        if resume and has_checkpoint(self.last):
            self.resume()
        net = wrap_ddp(self.objective, self.env.device, self.cfg.find_unused_parameters) if self.env.distributed \
            else self.objective
        if self.env.is_main:
            self.start_log(resume)
        bar = tqdm(total=self.total_steps, initial=self.step, desc="training", unit="step",
                   disable=not (self.progress and self.env.is_main))
        self.model.train()
        start = time.time()
        while self.step < self.total_steps:
            self.run_epoch(net, bar, start)
        bar.close()
        self.finish()
        return {"steps": self.step, "best_step": broadcast_object(self.best_step),
                "best_metrics": broadcast_object(self.best_metrics), "seconds": time.time() - start,
                "world_size": self.env.world_size}

    def run_epoch(self, net: nn.Module, bar: tqdm, start: float) -> None:
        """The rest of the current epoch: accumulate micro-batches, step, log, validate, checkpoint."""
        cfg, device = self.cfg, self.env.device
        epoch, in_epoch = divmod(self.step, self.steps_per_epoch)
        micro = 0
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")
        batches = self.source.loader(epoch, in_epoch * cfg.grad_accum, self.steps_per_epoch * cfg.grad_accum)
        for x, mask, prompts, ids in batches:
            # dropout, exactly resumable; rank 0 draws what a single process draws
            torch.manual_seed(cfg.seed * 1_000_003 + self.step * cfg.grad_accum + micro + self.env.rank * 7_919)
            sync = micro + 1 == cfg.grad_accum or not self.env.distributed
            with nullcontext() if sync else net.no_sync():
                with autocast:
                    loss, parts = self.batch_loss(net, x, mask, prompts, ids)
                (loss / cfg.grad_accum).backward()
            micro += 1
            if micro < cfg.grad_accum:
                continue
            micro = 0
            row = self.optimizer_step(epoch, loss, parts, start)
            row["threads"] = adapt_threads() or torch.get_num_threads()
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.3f}")
            if self.step % self.eval_every == 0 or self.step == self.total_steps:
                self.validate(row, bar)
            if self.env.is_main:
                self.log_rows.append(row)
                append_log(self.log_path, row)
            if self.step % self.save_every == 0 or self.step == self.total_steps:
                self.save()
            if self.step >= self.total_steps:
                break

    def batch_loss(self, net: nn.Module, x: torch.Tensor, mask: torch.Tensor, prompts: list[str],
                   ids: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of one micro-batch and its named parts: ``net`` (the objective, maybe DDP-wrapped) on the
        batch on this rank's device, the prompts tokenised. (B, T, F) poses, (B, T) mask, (B,) prompt ids."""
        device = self.env.device
        return net(x.to(device, non_blocking=True), mask.to(device, non_blocking=True), self.model.tokenize(prompts),
                   ids.to(device, non_blocking=True))

    def optimizer_step(self, epoch: int, loss: torch.Tensor, parts: dict, start: float) -> dict:
        """Clip, step the optimiser, the schedule and the EMA; the step's log row."""
        grad_norm = torch.nn.utils.clip_grad_norm_(self.objective.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.step += 1
        scale = getattr(self.model, "logit_scale", None)  # a contrastive model's temperature
        return {"step": self.step, "epoch": epoch, "loss": loss.item(), **parts, "lr": self.scheduler.get_last_lr()[0],
                **({} if scale is None else {"temperature": float(1 / scale.detach().exp())}),
                "grad_norm": float(grad_norm), "time": time.time() - start}

    def validate(self, row: dict, bar: tqdm) -> None:
        """Rank 0: retrieval metrics of the kept weights on the validation split; remember the best."""
        validation = self.splits["validation"]
        if not self.env.is_main or len(validation.arrays) <= 1:
            return
        evaluated = self.model if self.ema is None else self.ema.module  # the weights that would be kept
        metrics = evaluate_split(evaluated, validation)
        row.update({f"val/{k}": v for k, v in metrics.items()})
        test = self.splits.get("test")
        if self.cfg.monitor_test and isinstance(test, SplitData) and len(test.arrays) > 1:
            row.update({f"test/{k}": v for k, v in evaluate_split(evaluated, test).items()})
        self.model.train()
        higher_is_better = "MedianR" not in self.cfg.best_metric
        value = metrics[self.cfg.best_metric] * (1 if higher_is_better else -1)
        self.best = max(self.best, value)  # the best validation score so far
        rate = "R@" in self.cfg.best_metric or "accuracy" in self.cfg.best_metric
        if not clearly_worse(value, self.best, len(validation.arrays) if rate else 0):
            # the latest weights not clearly worse than the best are kept; written with the next checkpoint
            self.best_metrics, self.best_step = metrics, self.step
            self.best_state = {k: v.detach().cpu().clone() for k, v in evaluated.state_dict().items()}
        bar.set_postfix(loss=f"{row['loss']:.3f}", val=f"{metrics[self.cfg.best_metric]:.3f}")

    # ---- files --------------------------------------------------------------------------------------
    def start_log(self, resume: bool) -> None:
        """Keep the log rows up to the step training continues from. A log without a checkpoint to resume
        from is set aside as ``log.jsonl.old`` (not silently emptied)."""
        rows = read_log(self.log_path)
        if resume and self.step == 0 and rows:
            self.log_path.replace(self.log_path.with_name("log.jsonl.old"))
            warnings.warn(f"{self.out}: {len(rows)} logged steps but no checkpoint to resume from; training "
                          f"starts at step 0 (the old log is kept as log.jsonl.old)", stacklevel=3)
        self.log_rows = [r for r in rows if r["step"] <= self.step]
        write_text(self.log_path, "".join(json.dumps(r) + "\n" for r in self.log_rows))

    def save(self) -> None:
        """Rank 0: the best model so far (when it changed) and the resumable checkpoint."""
        if self.env.is_main:
            if self.best_state is not None:
                self.model.save(self.out / "best", self.best_state)
                self.best_state = None
            save_checkpoint(self.model, self.last, {
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(), "step": self.step,
                "best": self.best, "best_metrics": self.best_metrics, "best_step": self.best_step,
                "world_size": self.env.world_size,
                "ema": None if self.ema is None else self.ema.state_dict(),
                "heads": self.objective.heads_state_dict()})
        barrier()

    def resume(self) -> None:
        """Continue from ``checkpoints/last``: weights, optimiser, schedule, step, best so far, EMA, heads."""
        loaded, state = load_checkpoint(self.last, self.env.device, type(self.model).load)
        self.model.load_state_dict(loaded.state_dict())
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.best, self.best_metrics = state["step"], state["best"], state["best_metrics"]
        self.best_step = state.get("best_step", self.step)
        if self.ema is not None and state.get("ema") is not None:  # else: the average starts from the checkpoint
            self.ema.load_state_dict(state["ema"])
        if state.get("heads"):
            self.objective.load_state_dict(state["heads"], strict=False)

    def finish(self) -> None:
        """Rank 0: without a validation split the last (averaged) weights are the best we have; log.csv."""
        if self.env.is_main and not (self.out / "best").exists():
            self.model.save(self.out / "best", None if self.ema is None else self.ema.module.state_dict())
            self.best_step = self.step
        if self.env.is_main:
            write_text(self.out / "log.csv", pd.DataFrame(self.log_rows).to_csv(index=False))
        barrier()


def train(model: SignCLIP, splits: dict, cfg: TrainConfig, out_dir: str | Path,
          resume: bool = True, progress: bool = True) -> dict:
    """Train ``model`` in place on ``splits['train']``, validating on ``splits['validation']``.

    Returns a summary with the best validation metrics. Resumes from ``out_dir/checkpoints/last``
    when it exists and ``resume`` is true, continuing exactly where it stopped (same world size).
    The run folder is locked meanwhile: a second trainer on it is refused."""
    main = init_distributed(cfg.device).is_main
    with run_lock(Path(out_dir)) if main else nullcontext():
        trainer = Trainer(model, splits, cfg, out_dir, progress)
        if progress and main:
            tqdm.write(trainer.plan())
        return trainer.run(resume)
