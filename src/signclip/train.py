"""Training loop: AdamW, warm-up + cosine schedule, clipping, accumulation, checkpoints, exact resume.

Output directory::

    splits.csv                  every example with its train/validation/test split
    train_config.json           the TrainConfig used
    checkpoints/last/           model + trainer_state.pt (optimiser, schedule, step), every save_every steps
    best/                       the model with the best validation metric
    log.jsonl, log.csv          losses, learning rate, temperature and validation metrics per step

Under ``torchrun`` (see :mod:`signclip.distributed`) the same code runs data-parallel: ``batch_size`` is
per process, each global batch of ``batch_size x world`` examples is split across ranks, the
contrastive loss sees the whole global batch (``gather_with_grad``), DDP averages gradients, and
rank 0 alone logs, validates and writes checkpoints. ``splits['train']`` is either preprocessed
arrays in memory (:class:`SplitData`) or a stream of packed shards (:mod:`signclip.data.shards`).
"""
from __future__ import annotations

import inspect
import json
import math
import time
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from signclip.config import ModelConfig, TrainConfig
from signclip.data.collate import pad_poses
from signclip.data.datasets import PoseTextDataset, load_arrays, load_manifest, split_dataset
from signclip.distributed import (DistEnv, barrier, broadcast_object, gather_with_grad, init_distributed,
                                  resolve_device)
from signclip.eval.retrieval import retrieval_metrics, unique_texts
from signclip.models.signclip import SignCLIP
from signclip.objectives import compute_loss, no_gather
from signclip.text.prompts import language_prompt


@dataclass
class SplitData:
    """Preprocessed poses of one split with their prompts."""

    df: pd.DataFrame
    arrays: list[np.ndarray]
    prompts: list[str] = field(default_factory=list)


def feature_statistics(model: SignCLIP, arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean/std of the model's frame features over the training poses, ignoring missing."""
    frames = np.concatenate([a.reshape(a.shape[0], -1) for a in arrays])  # (sum T, P*D)
    with torch.no_grad():
        frames = model.pose.featurize(torch.from_numpy(frames)[None]).squeeze(0).numpy()  # (sum T, F)
    seen = np.isfinite(frames).any(0)
    mean = np.where(seen, np.nanmean(np.where(seen, frames, 0), 0), 0.0)
    std = np.where(seen, np.nanstd(np.where(seen, frames, 0), 0), 1.0)
    return mean.astype(np.float32), np.maximum(std, 1e-3).astype(np.float32)


def collate(batch: list[tuple[np.ndarray, str, int]]):
    arrays, prompts, ids = zip(*batch)
    x, mask = pad_poses(arrays)
    return x, mask, list(prompts), torch.tensor(ids)


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i: i + size] for i in range(0, len(items), size)]


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int,
                  groups: Sequence[tuple[float, Sequence[str]]] = ()) -> list[list[int]]:
    """The shuffled batches of one epoch, a pure function of (seed, epoch) so resume is exact.

    ``groups``: (share, key of each sample) pairs for hard negatives: that share of the samples is
    batched in runs of equal key (e.g. the same text in other sign languages), the rest at random, and
    the batches are shuffled. A last batch of one example is dropped (a contrastive batch needs negatives)."""
    order = np.random.default_rng((seed, epoch)).permutation(n).tolist()
    if not groups:
        return [b for b in _chunks(order, batch_size) if len(b) > 1]
    shares = [share for share, _ in groups]
    if min(shares) < 0 or sum(shares) > 1:
        raise ValueError(f"grouped batches: shares {shares} must be >= 0 and sum to at most 1")
    rng = np.random.default_rng((seed, epoch, 1))
    batches, start = [], 0
    for share, keys in groups:
        size = round(share * n)
        runs: dict[str, list[int]] = {}
        for i in order[start: start + size]:
            runs.setdefault(keys[i], []).append(i)
        start += size
        runs_list = list(runs.values())
        batches += _chunks([i for j in rng.permutation(len(runs_list)) for i in runs_list[j]], batch_size)
    batches += _chunks(order[start:], batch_size)
    return [batches[j] for j in rng.permutation(len(batches)) if len(batches[j]) > 1]


def rank_batches(batches: list[list[int]], rank: int, world: int) -> list[list[int]]:
    """This rank's part of each global batch: ``world`` equal contiguous parts (all_gather needs equal
    sizes), so a global batch is trimmed to a multiple of ``world``; empty ones are dropped."""
    if world == 1:
        return batches
    parts = []
    for b in batches:
        k = len(b) // world
        if k > 0:
            parts.append(b[rank * k: (rank + 1) * k])
    return parts


class MemorySource:
    """Training batches of an in-memory split: the epoch's global batches of :func:`epoch_batches`
    (``batch_size x world``), this rank's part of each; a pure function of (seed, epoch, rank)."""

    def __init__(self, dataset: PoseTextDataset, batch_size: int, seed: int, env: DistEnv, num_workers: int = 0,
                 groups: Sequence[tuple[float, Sequence[str]]] = ()):
        self.dataset, self.batch_size, self.seed, self.env, self.num_workers = dataset, batch_size, seed, env, num_workers
        self.groups = groups  # hard-negative batching, see epoch_batches

    def _batches(self, epoch: int) -> list[list[int]]:
        world = self.env.world_size
        return rank_batches(epoch_batches(len(self.dataset), self.batch_size * world, self.seed, epoch, self.groups),
                            self.env.rank, world)

    def n_batches(self) -> int:
        """Batches per epoch (the same on every rank and in every epoch)."""
        return len(self._batches(0))

    def loader(self, epoch: int, start: int, stop: int) -> Iterable:
        """Batches ``start:stop`` of ``epoch`` as (x (B, T, F), mask (B, T), prompts, text ids (B,))."""
        self.dataset.epoch = epoch
        return DataLoader(self.dataset, batch_sampler=self._batches(epoch)[start:stop], collate_fn=collate,
                          num_workers=self.num_workers, pin_memory=self.env.device.type == "cuda")


class Objective(nn.Module):
    """The model and its training objective as one module: DDP wraps this, so every parameter the
    objective touches (also outside ``SignCLIP.forward``) takes part in gradient synchronisation."""

    def __init__(self, model: SignCLIP, cfg: TrainConfig, gather=no_gather):
        super().__init__()
        self.model, self.cfg, self.gather = model, cfg, gather

    def forward(self, x: torch.Tensor, mask: torch.Tensor, tok: dict[str, torch.Tensor],
                text_ids: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        return compute_loss(self.model, x, mask, tok, text_ids, self.cfg, gather=self.gather)


def wrap_ddp(objective: Objective, device: torch.device, find_unused_parameters: bool = True) -> nn.Module:
    """DDP over the objective: gradients averaged over ranks. The buffers (feature statistics) are
    constant during training, so they are not re-broadcast before every forward."""
    sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(
        DistributedDataParallel.__init__).parameters else {"broadcast_buffers": False})
    return DistributedDataParallel(objective, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=find_unused_parameters, **sync)


def enable_gradient_checkpointing(model: SignCLIP) -> None:
    """Recompute activations in backward: the pose transformer layers, and the text backbone if it trains."""
    model.pose.gradient_checkpointing = True
    backbone = model.text.backbone
    if not getattr(model.text, "frozen", False) and getattr(backbone, "supports_gradient_checkpointing", False):
        if hasattr(backbone, "activation_checkpointing_enable"):  # transformers >= 5
            backbone.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def make_ema(model: SignCLIP, decay: float) -> AveragedModel | None:
    """An exponential moving average of ``model``'s weights (buffers copied), or None when decay is 0."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"ema_decay: expected 0 (off) or a value in (0, 1), got {decay}")
    if decay == 0.0:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def lr_lambda(warmup: int, total: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return f


def make_optimizer(model: SignCLIP, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; the pretrained text backbone gets ``text_lr``; no decay on biases, norms, scale."""
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lr = cfg.text_lr if name.startswith("text.backbone.") else cfg.lr
        decay = 0.0 if (p.ndim < 2 or "pos_embedding" in name or name == "logit_scale") else cfg.weight_decay
        groups.setdefault((lr, decay), []).append(p)
    return torch.optim.AdamW([{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()],
                             betas=tuple(cfg.betas))


def evaluate_split(model: SignCLIP, data: SplitData, batch_size: int = 64) -> dict[str, float]:
    """Retrieval metrics on one preprocessed split (unique prompts as text candidates)."""
    texts, index = unique_texts(data.prompts)
    pose_emb = model._encode_arrays(data.arrays, batch_size, True, False)
    text_emb = model.encode_text(texts, batch_size=batch_size, progress=False)
    return retrieval_metrics(pose_emb, text_emb, index)


def prepare_splits(df: pd.DataFrame, model: SignCLIP, cfg: TrainConfig, progress: bool = True) -> dict[str, SplitData]:
    """Split (deterministically), preprocess each split once, and build the prompts."""
    if not df["split"].isin(["train"]).any():
        df = split_dataset(df, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    out = {}
    for split in ("train", "validation", "test"):
        arrays, kept, _ = load_arrays(df[df["split"] == split], model.cfg.pose, progress=progress)
        out[split] = SplitData(kept, arrays)
    return out


def set_languages(model: SignCLIP, df: pd.DataFrame) -> None:
    """Record the language codes of the training data in the model config."""
    def codes(col: str) -> list[str]:
        return sorted(set(df[col].dropna().astype(str)) | set(getattr(model.cfg, col + "s")))
    model.cfg.spoken_languages = codes("spoken_language")
    model.cfg.signed_languages = codes("signed_language")


def make_prompts_for(model: SignCLIP, df: pd.DataFrame) -> list[str]:
    def col(name: str) -> list[str | None]:
        return [None if pd.isna(v) else str(v) for v in df[name]]
    return model.prompts(df["text"].tolist(), col("spoken_language"), col("signed_language"))


def language_prompts_for(model: SignCLIP, df: pd.DataFrame) -> list[str | None]:
    """The text-free ``<en> <ase>`` prompt of each row (None where the row has no language)."""
    return [language_prompt(None if pd.isna(s) else str(s), None if pd.isna(g) else str(g), model.cfg.prompt_template)
            for s, g in zip(df["spoken_language"], df["signed_language"])]


def save_checkpoint(model: SignCLIP, path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    model.save(tmp)
    torch.save(state, tmp / "trainer_state.pt")
    if path.exists():
        import shutil
        shutil.rmtree(path)
    tmp.rename(path)


def train(model: SignCLIP, splits: dict, cfg: TrainConfig, out_dir: str | Path,
          resume: bool = True, progress: bool = True) -> dict:
    """Train ``model`` in place on ``splits['train']``, validating on ``splits['validation']``.

    ``splits['train']`` is a :class:`SplitData` or a :class:`signclip.data.shards.ShardSplit` (streamed).
    Returns a summary with the best validation metrics. Resumes from ``out_dir/checkpoints/last``
    when it exists and ``resume`` is true, continuing exactly where it stopped (same world size)."""
    env = init_distributed(cfg.device)
    device, main = env.device, env.is_main
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_data = splits["train"]
    in_memory = [d for d in splits.values() if isinstance(d, SplitData)]
    if isinstance(train_data, SplitData):
        if len(train_data.arrays) < 2:
            raise ValueError(f"need at least 2 training poses, got {len(train_data.arrays)}")
        # every split's codes: a language seen only in validation/test must not crash prompt building
        set_languages(model, pd.concat([d.df for d in in_memory]))
        model.set_pose_statistics(*feature_statistics(model, train_data.arrays))
    else:  # packed shards: languages and feature statistics were computed while packing
        set_languages(model, pd.concat([train_data.language_table()] + [d.df for d in in_memory]))
        model.set_pose_statistics(*train_data.statistics())
    for data in in_memory:
        data.prompts = make_prompts_for(model, data.df)
    if main:
        (out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2))

    if isinstance(train_data, SplitData):
        dataset = PoseTextDataset(train_data.arrays, train_data.prompts, model.cfg.pose, cfg.augment, cfg.seed,
                                  language_prompts_for(model, train_data.df), cfg.language_prompt_p)
        groups = [(share, train_data.df[col].astype(str).tolist()) for share, col in
                  ((cfg.text_grouped_batches, "text"), (cfg.language_grouped_batches, "signed_language")) if share > 0]
        source = MemorySource(dataset, cfg.batch_size, cfg.seed, env, cfg.num_workers, groups)
    else:
        if cfg.text_grouped_batches or cfg.language_grouped_batches:
            raise ValueError("text_grouped_batches / language_grouped_batches need in-memory training data, "
                             "not streamed shards")
        source = train_data.source(model, cfg, env)
    steps_per_epoch = max(1, source.n_batches() // cfg.grad_accum)
    total_steps = cfg.epochs * steps_per_epoch
    eval_every = cfg.eval_every or steps_per_epoch
    save_every = cfg.save_every or steps_per_epoch

    model.to(device)
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    optimizer = make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.warmup_steps, total_steps))
    ema = make_ema(model, cfg.ema_decay)
    step, best, best_metrics, best_state = 0, -math.inf, {}, None
    last = out / "checkpoints" / "last"
    if resume and (last / "trainer_state.pt").exists():
        state = torch.load(last / "trainer_state.pt", weights_only=False, map_location=device)
        loaded = SignCLIP.load(last)
        model.load_state_dict(loaded.state_dict())
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, best, best_metrics = state["step"], state["best"], state["best_metrics"]
        if ema is not None and state.get("ema") is not None:  # else: the average starts from the checkpoint
            ema.load_state_dict(state["ema"])
    objective = Objective(model, cfg, gather_with_grad if env.distributed else no_gather)
    if env.distributed:
        objective = wrap_ddp(objective, device, cfg.find_unused_parameters)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
    if cfg.precision not in ("fp32", "bf16"):
        raise ValueError(f"precision: expected 'fp32' or 'bf16', got {cfg.precision!r}")
    log_path = out / "log.jsonl"
    log_rows = [r for r in _read_log(log_path) if r["step"] <= step]
    if main:
        log_path.write_text("".join(json.dumps(r) + "\n" for r in log_rows))  # drop rows past the resume point
    higher_is_better = "MedianR" not in cfg.best_metric

    bar = tqdm(total=total_steps, initial=step, desc="training", disable=not (progress and main), unit="step")
    model.train()
    start = time.time()
    while step < total_steps:
        epoch, in_epoch = divmod(step, steps_per_epoch)
        micro = 0
        for x, mask, prompts, ids in source.loader(epoch, in_epoch * cfg.grad_accum, steps_per_epoch * cfg.grad_accum):
            # dropout, exactly resumable; rank 0 draws what a single process draws
            torch.manual_seed(cfg.seed * 1_000_003 + step * cfg.grad_accum + micro + env.rank * 7_919)
            sync = micro + 1 == cfg.grad_accum or not env.distributed
            with nullcontext() if sync else objective.no_sync():
                with autocast:
                    loss, parts = objective(x.to(device, non_blocking=True), mask.to(device, non_blocking=True),
                                            model.tokenize(prompts), ids.to(device, non_blocking=True))
                (loss / cfg.grad_accum).backward()
            micro += 1
            if micro < cfg.grad_accum:
                continue
            micro = 0
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            row = {"step": step, "epoch": epoch, "loss": loss.item(), **parts, "lr": scheduler.get_last_lr()[0],
                   "temperature": float(1 / model.logit_scale.detach().exp()), "grad_norm": float(grad_norm),
                   "time": time.time() - start}
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.3f}")
            if main and (step % eval_every == 0 or step == total_steps) and len(splits["validation"].arrays) > 1:
                evaluated = model if ema is None else ema.module  # the weights that would be kept
                metrics = evaluate_split(evaluated, splits["validation"])
                model.train()
                row.update({f"val/{k}": v for k, v in metrics.items()})
                value = metrics[cfg.best_metric] * (1 if higher_is_better else -1)
                if value > best:  # kept in memory, written with the next checkpoint
                    best, best_metrics = value, metrics
                    best_state = {k: v.detach().cpu().clone() for k, v in evaluated.state_dict().items()}
                bar.set_postfix(loss=f"{row['loss']:.3f}", val=f"{metrics[cfg.best_metric]:.3f}")
            if main:
                log_rows.append(row)
                _append_log(log_path, row)
            if step % save_every == 0 or step == total_steps:
                if main:
                    if best_state is not None:
                        model.save(out / "best", best_state)
                        best_state = None
                    save_checkpoint(model, last, {"optimizer": optimizer.state_dict(),
                                                  "scheduler": scheduler.state_dict(), "step": step, "best": best,
                                                  "best_metrics": best_metrics, "world_size": env.world_size,
                                                  "ema": None if ema is None else ema.state_dict()})
                barrier()
            if step >= total_steps:
                break
    bar.close()
    if main and not (out / "best").exists():  # no validation split: the last model is the best we have
        model.save(out / "best", None if ema is None else ema.module.state_dict())
    if main:
        pd.DataFrame(log_rows).to_csv(out / "log.csv", index=False)
    barrier()
    return {"steps": step, "best_metrics": broadcast_object(best_metrics), "seconds": time.time() - start,
            "world_size": env.world_size}


def _read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _append_log(path: Path, row: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


def fit(data: pd.DataFrame, model_cfg: ModelConfig | str, train_cfg: TrainConfig, out_dir: str | Path,
        resume: bool = True, progress: bool = True) -> tuple[SignCLIP, dict[str, SplitData], dict]:
    """Split, preprocess, train, and reload the best model. The split is saved to ``splits.csv``
    (and reused on resume). Under torchrun every rank runs this; rank 0 writes the files."""
    env = init_distributed(train_cfg.device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    splits_csv = out / "splits.csv"
    reuse = broadcast_object(resume and splits_csv.exists())
    if reuse:
        data = load_manifest(splits_csv)
    elif not data["split"].isin(["train"]).any():
        data = split_dataset(data, train_cfg.val_fraction, train_cfg.test_fraction, train_cfg.seed)
    barrier()  # every rank has read splits.csv before rank 0 rewrites it
    if env.is_main:
        data.to_csv(splits_csv, index=False)
    if isinstance(model_cfg, SignCLIP):
        model = model_cfg
    else:
        torch.manual_seed(train_cfg.seed)  # the same seed gives the same initial weights, as the same split
        model = SignCLIP.create(model_cfg)
    splits = prepare_splits(data, model, train_cfg, progress)
    summary = train(model, splits, train_cfg, out, resume=resume, progress=progress)
    best = SignCLIP.load(out / "best", device=resolve_device(train_cfg.device))
    for d in splits.values():
        d.prompts = make_prompts_for(best, d.df)
    return best, splits, summary
