"""``fit``: a dataset table (or a shard directory) in, the best trained model out.

Split (saved to ``RUN/splits.csv`` and reused on resume), preprocess, :func:`~signclip.training.loop.train`,
and reload the best model. Under torchrun every rank runs this; rank 0 writes the files.
"""
from __future__ import annotations

import copy
import dataclasses
from contextlib import nullcontext
from pathlib import Path

import pandas as pd
import torch

from signclip.config import ModelConfig, TrainConfig
from signclip.data.arrays import SplitData, load_split, table_prompts
from signclip.data.manifests import load_manifest
from signclip.data.shards import ShardSplit
from signclip.data.splits import SPLITS, ensure_split, split_summary, validation_group
from signclip.files import write_text
from signclip.models.signclip import SignCLIP
from signclip.training.checkpoints import run_lock
from signclip.training.distributed import barrier, broadcast_object, init_distributed, is_main, resolve_device
from signclip.training.loop import train
from signclip.training.regime import apply_regime


def prepare_splits(df: pd.DataFrame, model: SignCLIP, cfg: TrainConfig, progress: bool = True) -> dict[str, SplitData]:
    """Split (deterministically), preprocess each split once (prompts come from training)."""
    df = ensure_split(df, cfg.val_fraction, cfg.test_fraction, cfg.seed, cfg.split_by)
    return {split: load_split(df[df["split"] == split], model.cfg.pose, progress) for split in SPLITS}


def new_model(model_cfg: ModelConfig | str | SignCLIP, seed: int) -> SignCLIP:
    """The model to train: given, or created with initial weights fixed by ``seed`` (as the split is)."""
    if isinstance(model_cfg, SignCLIP):
        return model_cfg
    torch.manual_seed(seed)
    return SignCLIP.create(model_cfg)


def reload_best(out: Path, splits: dict, cfg: TrainConfig) -> SignCLIP:
    """The best model of a run, with the prompts of the in-memory splits made by it."""
    best = SignCLIP.load(out / "best", device=resolve_device(cfg.device))
    for data in splits.values():
        if isinstance(data, SplitData):
            data.prompts = table_prompts(best, data.df)
    return best


def run_splits(data: pd.DataFrame, cfg: TrainConfig, out: Path, resume: bool, progress: bool) -> pd.DataFrame:
    """The run's split table: OUT/splits.csv when resuming, else :func:`ensure_split`; rank 0 saves it and prints
    what decided each split."""
    splits_csv = out / "splits.csv"
    if broadcast_object(resume and splits_csv.exists()):
        data = load_manifest(splits_csv)
    else:
        data = ensure_split(data, cfg.val_fraction, cfg.test_fraction, cfg.seed, cfg.split_by)
    barrier()  # every rank has read splits.csv before rank 0 rewrites it
    if is_main():
        write_text(splits_csv, data.to_csv(index=False))
        if progress:
            print("splits (saved to splits.csv): " + "; ".join(split_summary(data)), flush=True)
    return data


def fit(data: pd.DataFrame, model_cfg: ModelConfig | str | SignCLIP, train_cfg: TrainConfig, out_dir: str | Path,
        resume: bool = True, progress: bool = True) -> tuple[SignCLIP, dict[str, SplitData], dict]:
    """Split, preprocess, train, and reload the best model; returns it, the splits and the run summary."""
    env = init_distributed(train_cfg.device)
    out = Path(out_dir)
    with run_lock(out) if env.is_main else nullcontext():
        data = run_splits(data, train_cfg, out, resume, progress)
        train_cfg, lines = apply_regime(data, train_cfg)
        if env.is_main and progress:
            print("\n".join(lines), flush=True)
        model = new_model(model_cfg, train_cfg.seed)
        splits = prepare_splits(data, model, train_cfg, progress)
        if not (train_cfg.retrain and len(splits["validation"].arrays) > 1):
            summary = train(model, splits, train_cfg, out, resume=resume, progress=progress)
            return reload_best(out, splits, train_cfg), splits, summary
        initial = copy.deepcopy(model)  # the same initial weights for the second run
        selection = train(model, splits, train_cfg, out / SELECTION, resume=resume, progress=progress)
        merged, cfg = retrain_plan(splits, selection, train_cfg)
        if env.is_main and progress:
            by = validation_group(data, train_cfg.split_by)
            print(f"validation{f' on unseen {by}s' if by else ''} chose step {selection['best_step']} of "
                  f"{selection['steps']}: training again on the {len(merged['train'].arrays)} training + validation "
                  f"poses for {cfg.steps} steps (the same epochs), keeping the last weights", flush=True)
        summary = train(initial, merged, cfg, out, resume=resume, progress=progress)
        summary["selection"] = {k: selection[k] for k in ("steps", "best_step", "best_metrics")}
        return reload_best(out, merged, cfg), merged, summary


SELECTION = "selection"  # RUN/selection: the run whose validation chose the length of a retrained run


def retrain_plan(splits: dict[str, SplitData], selection: dict, cfg: TrainConfig
                 ) -> tuple[dict[str, SplitData], TrainConfig]:
    """The splits and config of training again after ``selection``: validation rows join training, and the run
    lasts as many epochs of the merged rows as the selected step was of the training rows."""
    train_data, val = splits["train"], splits["validation"]
    merged = SplitData(pd.concat([train_data.df, val.df], ignore_index=True), train_data.arrays + val.arrays)
    steps = max(1, round(selection["best_step"] * len(merged.arrays) / len(train_data.arrays)))
    empty = SplitData(val.df.iloc[:0], [])
    return ({"train": merged, "validation": empty, "test": splits["test"]},
            dataclasses.replace(cfg, steps=steps, min_steps=0, retrain=False))


def fit_shards(root: str | Path, model_cfg: ModelConfig | str | SignCLIP, cfg: TrainConfig, out_dir: str | Path,
               resume: bool = True, progress: bool = True) -> tuple[SignCLIP, dict, dict]:
    """:func:`fit` for a shard directory: stream the training rows, validate on the validation rows
    (loaded into memory), reload the best model."""
    init_distributed(cfg.device)
    model = new_model(model_cfg, cfg.seed)
    data = ShardSplit(root, "train")
    data.check(model.cfg.pose)
    splits = {"train": data, "validation": ShardSplit(root, "validation").load(progress),
              "test": ShardSplit(root, "test")}
    summary = train(model, splits, cfg, out_dir, resume=resume, progress=progress)
    return reload_best(Path(out_dir), splits, cfg), splits, summary
