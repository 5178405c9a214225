"""``signclip finetune`` (downstream tasks on a pose encoder) and ``signclip compose`` (continuous sequences
from isolated clips)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from signclip.cli.hub import THREADS_HELP
from signclip.cpu import use_threads
from signclip.errors import UsageError

TASK_HELP = "islr (isolated recognition), cslr (continuous recognition, CTC) or slt (gloss-free translation)"


def finetune_cmd(
    task: str = typer.Argument(..., help=TASK_HELP),
    data: str = typer.Argument(..., help="manifest CSV or folder with manifest.csv (cslr needs a 'glosses' column)"),
    out: Path = typer.Option(Path("runs/task"), "--out", "-o", help="run directory"),
    init: Optional[str] = typer.Option(None, "--init", help="the pose encoder to start from: a saved model "
                                       "directory (also a converted reference model or a task model), or "
                                       "hf-hub:ORG/NAME; none: a fresh encoder of --model"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="without --init: named model config or JSON "
                                        "file of the fresh encoder (default: the default recipe's)"),
    config: Optional[str] = typer.Option(None, "--config", help="task config: a name (`signclip models` lists "
                                         "them; default: the task's own) or a JSON file"),
    epochs: Optional[int] = None,
    steps: Optional[int] = typer.Option(None, help="optimiser steps in all (instead of epochs)"),
    batch_size: Optional[int] = None, lr: Optional[float] = None, seed: Optional[int] = None,
    device: Optional[str] = None, eval_every: Optional[int] = None, save_every: Optional[int] = None,
    split_by: Optional[str] = typer.Option(None, "--split-by", help="keep each value of this column in one split"),
    refit_stats: bool = typer.Option(False, "--refit-stats", help="with --init: fit the feature statistics to "
                                                                  "this data instead of keeping the model's"),
    threads: Optional[int] = typer.Option(None, help=THREADS_HELP),
    resume: bool = typer.Option(True, help="continue from OUT/checkpoints/last when present"),
) -> None:
    """Fine-tune a pose encoder on a downstream task with Zhou et al.'s head, loss and Table III settings
    (the named task config); the best task model is saved to OUT/best (`signclip.load` it and call
    `recognize(poses)`; `signclip eval OUT/best DATA` measures it). Also under torchrun."""
    from signclip.data.manifests import load_dataset
    from signclip.tasks.config import TASKS, get_task_config
    from signclip.tasks.finetune import check_targets, finetune
    from signclip.training.distributed import cleanup, is_main

    if task not in TASKS:
        raise UsageError(f"task: unknown {task!r}; expected one of {', '.join(TASKS)}")
    if init and model:
        raise UsageError("give --init (a trained encoder) or --model (a fresh one), not both")
    cfg = get_task_config(config or task, epochs=epochs, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                          device=device, eval_every=eval_every, save_every=save_every, split_by=split_by,
                          **({"min_steps": 0} if epochs or steps else {}))
    if cfg.task != task:
        raise UsageError(f"--config {config}: a {cfg.task} config, not {task}")
    cfg.refit_statistics = cfg.refit_statistics or refit_stats
    threads_line = use_threads(threads).describe()
    table = load_dataset(data)
    check_targets(table, cfg, str(data))  # before any model is loaded
    _, _, summary = finetune(table, cfg, out, init=init, model=model, resume=resume)
    if is_main():
        typer.echo(json.dumps(summary["best_metrics"], indent=2))
        typer.echo(f"best model: {out / 'best'} (CPU: {threads_line})")
    cleanup()


def compose_cmd(
    clips: str = typer.Argument(..., help="isolated clips: 'lexicon' (embedded), a manifest CSV or a folder with "
                                          "manifest.csv (each clip's gloss: its 'glosses' cell, else its text)"),
    out: Path = typer.Option(..., "--out", "-o", help="folder to write (poses/ and manifest.csv)"),
    sentences: str = typer.Option(..., "--sentences", help="a CSV with columns glosses, text (optionally "
                                  "signer, signed_language, spoken_language, split), one sequence per row; or "
                                  "'orders' (ordering sentences over traduttore's 14 words) or 'spelling' "
                                  "(random fingerspelled words per sign language of the clips)"),
    count: int = typer.Option(1000, help="with orders: sentences; with spelling: words per sign language"),
    test_fraction: float = typer.Option(0.2, help="with orders / spelling: share of sentences marked test (orders: "
                                        "composed from the clips marked test, e.g. a held-out signer's)"),
    transition_ms: float = typer.Option(200.0, help="interpolated transition between two clips"),
    fps: Optional[float] = typer.Option(None, help="frame rate of the sequences (default: the clips' most common)"),
    seed: int = 0,
) -> None:
    """Compose continuous sequences from isolated clips of one signer, joined by short interpolated
    transitions, each with its gloss sequence and sentence (development data for cslr / slt: no real
    co-articulation, so figures on it are an upper bound)."""
    import pandas as pd

    from signclip.data.compose import compose_dataset, ordering_sentences, spelled_words
    from signclip.data.manifests import load_dataset

    table = load_dataset(clips)
    if sentences == "orders":
        n_test = round(count * test_fraction)
        plan = pd.concat([ordering_sentences(count - n_test, seed, "train"),
                          ordering_sentences(n_test, seed + 1, "test")], ignore_index=True)
    elif sentences == "spelling":
        plan = spelled_words(table, count, test_fraction=test_fraction, seed=seed)
    elif Path(sentences).is_file():
        plan = pd.read_csv(sentences, dtype=str)
    else:
        raise UsageError(f"--sentences: {sentences!r} is not a CSV file, 'orders' or 'spelling'")
    manifest = compose_dataset(table, plan, out, transition_ms=transition_ms, fps=fps, seed=seed)
    splits = manifest["split"].fillna("unsplit").value_counts().to_dict()
    typer.echo(f"wrote {len(manifest)} composed sequences ({splits}) to {out / 'manifest.csv'}")
