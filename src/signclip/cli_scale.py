"""CLI for scale-out (issue 5): ``signclip shards``; ``signclip train SHARDS/`` and ``signclip embed MODEL SHARDS/``
stream packed shards, also under ``torchrun --nproc_per_node=N -m signclip.cli ...``.

Registered on the main app by :func:`register` (one line in :mod:`signclip.cli`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from signclip.config import TrainConfig, get_model_config


def shards_cmd(
    data: str = typer.Argument(..., help="'lexicon', a manifest CSV, a folder with manifest.csv, or an adapter's data"),
    out: Path = typer.Option(..., "--out", "-o", help="shard directory to write"),
    model: str = typer.Option("tiny", "--model", "-m", help="named model config or JSON file (its pose preprocessing)"),
    rows_per_shard: int = typer.Option(4096, help="rows per parquet file"),
    rows_per_group: int = typer.Option(256, help="rows per row group (the unit dealt to ranks and workers)"),
    seed: int = typer.Option(42, help="split seed for rows without a split (as `signclip train`)"),
    val_fraction: float = 0.1, test_fraction: float = 0.2,
) -> None:
    """Preprocess a dataset once into parquet shards (+ training feature statistics) for streaming training."""
    from signclip.data.datasets import load_dataset
    from signclip.data.shards import pack_shards
    from signclip.models.signclip import SignCLIP

    m = SignCLIP.create(get_model_config(model))
    cfg = TrainConfig(seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    meta = pack_shards(load_dataset(data), out, m, cfg, rows_per_shard, rows_per_group)
    typer.echo(f"wrote {meta['rows']} poses ({meta['splits']}) in {len(meta['shards'])} shard(s) to {out}"
               + (f"; skipped {meta['skipped']} unusable" if meta.get("skipped") else ""))


def train_shards(data: str, model: str, cfg: TrainConfig, out: Path, resume: bool) -> None:
    """``signclip train SHARDS/``: stream packed shards (rank 0 prints)."""
    from signclip.data.shards import fit_shards
    from signclip.distributed import cleanup, is_main

    _, _, summary = fit_shards(data, get_model_config(model), cfg, out, resume=resume)
    if is_main():
        typer.echo(json.dumps(summary["best_metrics"], indent=2))
        typer.echo(f"best model: {out / 'best'}")
    cleanup()


def embed_shards_cmd(model: Path, shards: str, out: Path, batch_size: int, split: Optional[str] = None) -> None:
    """``signclip embed MODEL SHARDS/ -o OUT``: every rank embeds its row groups, rank 0 merges in input order."""
    from signclip.data.shards import embed_shards
    from signclip.distributed import cleanup

    path = embed_shards(model, shards, out, split=split, batch_size=batch_size)
    if path is not None:
        typer.echo(f"wrote embeddings of {shards} to {path}")
    cleanup()


def register(app: typer.Typer) -> None:
    app.command("shards")(shards_cmd)


__all__ = ["register", "shards_cmd", "train_shards", "embed_shards_cmd"]
