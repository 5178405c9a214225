"""``signclip models``, ``signclip train``, ``signclip quickstart`` and ``signclip shards``."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from signclip.config import TrainConfig, get_model_config, list_model_configs

# The quickstart: the model and training settings that won on the lexicon (benchmarks/RESULTS.md).
QUICKSTART_MODEL = "tiny-partwise"
QUICKSTART_TRAIN = dict(batch_size=32, lr=1e-3, text_lr=5e-5, warmup_steps=50, language_prompt_p=0.2,
                        ema_decay=0.995, augment={"flip_p": 0.0, "affine_sigma": 0.05},  # paper: 0.2, 0.2
                        val_fraction=0.1, test_fraction=0.2,
                        save_every=140)  # a checkpoint every 10 epochs of 14 steps


def train_config(config: Optional[Path], **overrides) -> TrainConfig:
    """A TrainConfig from a JSON file (optional) and the options given on the command line."""
    base = json.loads(config.read_text()) if config else {}
    base.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(base)


def models_cmd() -> None:
    """List the named model configs."""
    for name in list_model_configs():
        typer.echo(f"{name}: {json.dumps(get_model_config(name).to_dict())}")


def train_cmd(
    data: str = typer.Argument("lexicon", help="'lexicon' (embedded), a manifest CSV, a folder with manifest.csv, "
                                               "or a shard directory (`signclip shards`)"),
    out: Path = typer.Option(Path("runs/signclip"), "--out", "-o", help="run directory"),
    model: str = typer.Option("tiny", "--model", "-m", help="named model config or JSON file"),
    config: Optional[Path] = typer.Option(None, help="TrainConfig JSON (fields of signclip.TrainConfig)"),
    epochs: Optional[int] = None, batch_size: Optional[int] = None, lr: Optional[float] = None,
    grad_accum: Optional[int] = None, seed: Optional[int] = None, device: Optional[str] = None,
    save_every: Optional[int] = None, eval_every: Optional[int] = None,
    resume: bool = typer.Option(True, help="continue from OUT/checkpoints/last when present"),
    split_by: Optional[str] = typer.Option(None, "--split-by", help="keep each value of this column in one split, "
                                           "e.g. 'signer' for signer-independent validation/test sets"),
) -> None:
    """Train (or resume training) a model; the best model is saved to OUT/best. Also under torchrun."""
    from signclip.data.manifests import load_dataset
    from signclip.data.shards import is_shard_dir
    from signclip.data.splits import split_dataset
    from signclip.training import fit, fit_shards
    from signclip.training.distributed import cleanup, is_main

    cfg = train_config(config, epochs=epochs, batch_size=batch_size, lr=lr, grad_accum=grad_accum, seed=seed,
                       device=device, save_every=save_every, eval_every=eval_every)
    if is_shard_dir(data):  # packed shards are streamed
        _, _, summary = fit_shards(data, get_model_config(model), cfg, out, resume=resume)
    else:
        df = load_dataset(data)
        if split_by:
            df = split_dataset(df, cfg.val_fraction, cfg.test_fraction, cfg.seed, group=split_by)
        _, _, summary = fit(df, get_model_config(model), cfg, out, resume=resume)
    if is_main():
        typer.echo(json.dumps(summary["best_metrics"], indent=2))
        typer.echo(f"best model: {out / 'best'}")
    cleanup()


def quickstart_cmd(
    out: Path = typer.Option(Path("signclip-quickstart"), "--out", "-o"),
    epochs: int = typer.Option(60, help="training epochs over the lexicon's training split"),
    seed: int = 42,
) -> None:
    """Train the quickstart model on the embedded fingerspelling lexicon, evaluate on its test split,
    and write a report (metrics beside chance and a raw-keypoint baseline, figures, training curve)."""
    import torch

    from signclip.data.manifests import load_lexicon, load_manifest
    from signclip.eval.report import write_html_report, write_markdown_report
    from signclip.eval.suite import run_suite, training_classes
    from signclip.training import fit

    start = time.time()
    cfg = TrainConfig.from_dict({**QUICKSTART_TRAIN, "epochs": epochs, "seed": seed})
    model, splits, summary = fit(load_lexicon(), get_model_config(QUICKSTART_MODEL), cfg, out, resume=False)
    result = run_suite(model, load_manifest(out / "splits.csv"), out, split="test", log_csv=out / "log.csv",
                       progress=True, title="signclip quickstart report",
                       trained_classes=training_classes(out / "splits.csv"))
    n = {name: len(split.arrays) for name, split in splits.items()}
    result.facts.update({
        "data": f"fingerspelling lexicon (spoken-to-signed 0.4.0): {n['train']} train / {n['validation']} "
                f"validation / {n['test']} test poses; every test (language, letter) pair is unseen in training",
        "training": f"{QUICKSTART_MODEL}, best of {summary['steps']} steps on validation {cfg.best_metric}, "
                    f"{summary['seconds']:.0f} s; {time.time() - start:.0f} s in all on {torch.get_num_threads()} "
                    "CPU threads"})
    html = write_html_report(result, out)
    report = write_markdown_report(result, out)
    typer.echo(report.read_text())
    typer.echo(f"report: {report} (and {html}); metrics: {out / 'metrics.json'}")


def shards_cmd(
    data: str = typer.Argument(..., help="'lexicon', a manifest CSV, a folder with manifest.csv, or another format"),
    out: Path = typer.Option(..., "--out", "-o", help="shard directory to write"),
    model: str = typer.Option("tiny", "--model", "-m", help="named model config or JSON file (its pose preprocessing)"),
    rows_per_shard: int = typer.Option(4096, help="rows per parquet file"),
    rows_per_group: int = typer.Option(256, help="rows per row group (the unit dealt to ranks and workers)"),
    seed: int = typer.Option(42, help="split seed for rows without a split (as `signclip train`)"),
    val_fraction: float = 0.1, test_fraction: float = 0.2,
) -> None:
    """Preprocess a dataset once into parquet shards (+ training feature statistics) for streaming training."""
    from signclip.data.manifests import load_dataset
    from signclip.data.shards import pack_shards
    from signclip.models.signclip import SignCLIP

    m = SignCLIP.create(get_model_config(model))
    cfg = TrainConfig(seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    meta = pack_shards(load_dataset(data), out, m, cfg, rows_per_shard, rows_per_group)
    typer.echo(f"wrote {meta['rows']} poses ({meta['splits']}) in {len(meta['shards'])} shard(s) to {out}"
               + (f"; skipped {meta['skipped']} unusable" if meta.get("skipped") else ""))
