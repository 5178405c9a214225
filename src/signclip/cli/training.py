"""``signclip models``, ``signclip train``, ``signclip quickstart`` and ``signclip shards``."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from signclip.cli.hub import THREADS_HELP
from signclip.config import TrainConfig, get_model_config, get_recipe, list_model_configs, list_recipes
from signclip.cpu import PRECISIONS, use_threads
from signclip.errors import UsageError


def models_cmd() -> None:
    """List the named model configs, training recipes and task configs (`signclip finetune`)."""
    for name in list_model_configs():
        typer.echo(f"{name}: {json.dumps(get_model_config(name).to_dict())}")
    for name in list_recipes():
        recipe = get_recipe(name)
        typer.echo(f"recipe {name}: model {recipe.model} {recipe.model_overrides or ''} - {recipe.description}")
    from signclip.tasks.config import get_task_config, list_task_configs

    for name in list_task_configs():
        typer.echo(f"task config {name}: {get_task_config(name).description}")


def train_cmd(
    data: Optional[list[str]] = typer.Argument(None, help="one or more sources: 'lexicon' (embedded, the "
                                               "default), a manifest CSV, a folder with manifest.csv; or one shard "
                                               "directory (`signclip shards`)"),
    out: Path = typer.Option(Path("runs/signclip"), "--out", "-o", help="run directory"),
    recipe: Optional[str] = typer.Option(None, help="training recipe (`signclip models` lists them); default: "
                                                    "'default', or 'finetune' with --init"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="named model config or JSON file (default: "
                                                                    "the recipe's)"),
    init: Optional[str] = typer.Option(None, "--init", help="fine-tune this model (a saved model directory, "
                                                            "hf-hub:ORG/NAME, or a converted reference model)"),
    refit_stats: bool = typer.Option(False, "--refit-stats", help="with --init: fit the feature statistics to "
                                                                  "this data instead of keeping the model's"),
    config: Optional[Path] = typer.Option(None, help="TrainConfig JSON (fields of signclip.TrainConfig) over the "
                                                     "recipe"),
    epochs: Optional[int] = None,
    steps: Optional[int] = typer.Option(None, help="optimiser steps in all (instead of epochs)"),
    batch_size: Optional[int] = None, lr: Optional[float] = None, grad_accum: Optional[int] = None,
    seed: Optional[int] = None, device: Optional[str] = None, save_every: Optional[int] = None,
    eval_every: Optional[int] = None,
    threads: Optional[int] = typer.Option(None, help=THREADS_HELP),
    precision: Optional[str] = typer.Option(None, help="training precision: auto (bf16 autocast on a CPU with bf16 "
                                                      "instructions, else fp32), fp32 or bf16 (default: the "
                                                      "recipe's)"),
    resume: bool = typer.Option(True, help="continue from OUT/checkpoints/last when present"),
    split_by: Optional[str] = typer.Option(None, "--split-by", help="keep each value of this column in one split, "
                                           "e.g. 'signer' for signer-independent validation/test sets"),
    retrain: bool = typer.Option(False, "--retrain", help="after validation chose the length, train again on the "
                                 "training + validation rows for that length (with --split-by: validation on "
                                 "held-out signers, without losing them)"),
    source_weight: Optional[list[str]] = typer.Option(None, "--source-weight", help="NAME=FACTOR: draw each row of "
                                                      "that source FACTOR times per epoch (several sources; "
                                                      "repeatable)"),
) -> None:
    """Train (or resume, or fine-tune with --init) a model; the best model is saved to OUT/best. With no
    options it uses the default recipe and says what it chose. Also under torchrun."""
    from signclip.data.manifests import load_datasets
    from signclip.data.shards import is_shard_dir
    from signclip.models.signclip import load
    from signclip.training import fit, fit_shards
    from signclip.training.batches import source_weights
    from signclip.training.distributed import cleanup, is_main

    if init and model:
        raise UsageError("give --model (a new model) or --init (a trained one), not both")
    chosen = get_recipe(recipe or ("finetune" if init else "default"))
    base = json.loads(config.read_text()) if config else {}
    sources = data or ["lexicon"]
    options = {"epochs": epochs, "steps": steps, "batch_size": batch_size, "lr": lr, "grad_accum": grad_accum,
               "seed": seed, "device": device, "save_every": save_every, "eval_every": eval_every,
               "split_by": split_by, "retrain": retrain or None, "refit_statistics": True if refit_stats else None,
               "source_weights": parse_weights(source_weight) if source_weight else None, "precision": precision}
    if (epochs or steps or "epochs" in base or "steps" in base) and "min_steps" not in base:
        options["min_steps"] = 0  # a length given (option or --config): exactly that many epochs or steps
    cfg = chosen.train_config(**{**base, **{k: v for k, v in options.items() if v is not None}})
    if cfg.precision not in PRECISIONS:
        raise UsageError(f"precision: expected one of {', '.join(PRECISIONS)}; got {cfg.precision!r}")
    threads_line = use_threads(threads).describe()
    model_cfg = load(init) if init else chosen.model_config(model)
    shards = any(is_shard_dir(d) for d in sources)
    if shards and len(sources) > 1:
        raise UsageError("a shard directory trains alone: give it as the only data source")
    table = None if shards else load_datasets(sources)  # bad data is reported before anything starts
    if table is not None:
        source_weights(table, cfg.source_weights)  # unknown source names, before anything starts
    if is_main():
        what = f"fine-tuning {init}" if init else f"model {model_cfg.name}" + (
            f" {chosen.model_overrides}" if chosen.model_overrides and not model else "")
        typer.echo(f"recipe {chosen.name}: {what}; statistics "
                   + ("refitted" if cfg.refit_statistics or not init else "kept from the model"))
        typer.echo(f"CPU: {threads_line}")
    if table is None:  # packed shards are streamed
        _, _, summary = fit_shards(sources[0], model_cfg, cfg, out, resume=resume)
    else:
        _, _, summary = fit(table, model_cfg, cfg, out, resume=resume)
    if is_main():
        typer.echo(json.dumps(summary["best_metrics"], indent=2))
        typer.echo(f"best model: {out / 'best'}")
    cleanup()


def parse_weights(items: list[str]) -> dict[str, float]:
    """``["NAME=FACTOR", ...]`` -> {NAME: FACTOR} (names and factors are checked by ``source_weights``)."""
    weights = {}
    for item in items:
        name, _, factor = item.partition("=")
        try:
            weights[name.strip()] = float(factor)
        except ValueError:
            raise UsageError(f"--source-weight {item!r}: expected NAME=FACTOR, e.g. lexicon=0.5") from None
    return weights


def quickstart_cmd(
    out: Path = typer.Option(Path("signclip-quickstart"), "--out", "-o"),
    epochs: Optional[int] = typer.Option(None, help="training epochs over the lexicon's training split (default: "
                                                    "the quickstart recipe's)"),
    seed: Optional[int] = typer.Option(None, help="split and initialisation seed (default: the recipe's)"),
) -> None:
    """Train the quickstart model on the embedded fingerspelling lexicon, evaluate on its test split,
    and write a report (metrics beside chance and a raw-keypoint baseline, figures, training curve)."""
    import torch

    from signclip.data.manifests import load_lexicon, load_manifest
    from signclip.eval.report import write_html_report, write_markdown_report
    from signclip.eval.suite import run_suite, training_classes
    from signclip.training import fit

    start = time.time()
    typer.echo(f"CPU: {use_threads(None).describe()}")
    recipe = get_recipe("quickstart")
    cfg = recipe.train_config(epochs=epochs, seed=seed)
    model, splits, summary = fit(load_lexicon(), recipe.model_config(), cfg, out, resume=False)
    result = run_suite(model, load_manifest(out / "splits.csv"), out, split="test", log_csv=out / "log.csv",
                       progress=True, title="signclip quickstart report",
                       trained_classes=training_classes(out / "splits.csv"))
    n = {name: len(split.arrays) for name, split in splits.items()}
    result.facts.update({
        "data": f"fingerspelling lexicon (spoken-to-signed 0.4.0): {n['train']} train / {n['validation']} "
                f"validation / {n['test']} test poses; every test (language, letter) pair is unseen in training",
        "training": f"{recipe.model}, best of {summary['steps']} steps on validation {cfg.best_metric}, "
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
    seed: Optional[int] = typer.Option(None, help="split seed for rows without a split (default: as `signclip "
                                                  "train`)"),
    val_fraction: Optional[float] = typer.Option(None, help="validation share of rows without a split (default: "
                                                            "as `signclip train`)"),
    test_fraction: Optional[float] = typer.Option(None, help="test share of rows without a split (default: as "
                                                             "`signclip train`)"),
) -> None:
    """Preprocess a dataset once into parquet shards (+ training feature statistics) for streaming training."""
    from signclip.data.manifests import load_dataset
    from signclip.data.shards import pack_shards
    from signclip.models.signclip import SignCLIP

    m = SignCLIP.create(get_model_config(model))
    given = {"seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction}
    cfg = TrainConfig(**{k: v for k, v in given.items() if v is not None})
    meta = pack_shards(load_dataset(data), out, m, cfg, rows_per_shard, rows_per_group)
    typer.echo(f"wrote {meta['rows']} poses ({meta['splits']}) in {len(meta['shards'])} shard(s) to {out}"
               + (f"; skipped {meta['skipped']} unusable" if meta.get("skipped") else ""))
