"""The ``signclip`` command line: train, eval, embed, quickstart."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import typer

from signclip.config import TrainConfig, get_model_config, list_model_configs

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Contrastive pose–text models for sign language (CLIP for sign language).")


def _train_config(config: Optional[Path], **overrides) -> TrainConfig:
    base = json.loads(config.read_text()) if config else {}
    base.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(base)


@app.command("models")
def models_cmd() -> None:
    """List the named model configs."""
    for name in list_model_configs():
        typer.echo(f"{name}: {json.dumps(get_model_config(name).to_dict())}")


@app.command()
def train(
    data: str = typer.Argument("lexicon", help="'lexicon' (embedded), a manifest CSV, or a folder with manifest.csv"),
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
    """Train (or resume training) a model; the best model is saved to OUT/best."""
    from signclip.data.datasets import load_dataset, split_dataset
    from signclip.train import fit

    cfg = _train_config(config, epochs=epochs, batch_size=batch_size, lr=lr, grad_accum=grad_accum, seed=seed,
                        device=device, save_every=save_every, eval_every=eval_every)
    from signclip.data.shards import is_shard_dir  # issue 5: packed shards are streamed (also under torchrun)
    if is_shard_dir(data):
        from signclip.cli_scale import train_shards
        return train_shards(data, model, cfg, out, resume)
    df = load_dataset(data)
    if split_by:
        df = split_dataset(df, cfg.val_fraction, cfg.test_fraction, cfg.seed, group=split_by)
    _, _, summary = fit(df, get_model_config(model), cfg, out, resume=resume)
    typer.echo(json.dumps(summary["best_metrics"], indent=2))
    typer.echo(f"best model: {out / 'best'}")


@app.command("eval")
def eval_cmd(
    model: Path = typer.Argument(..., help="saved model directory"),
    data: str = typer.Argument(..., help="manifest CSV (e.g. RUN/splits.csv), folder, 'lexicon', Kaggle ASL Signs "
                                         "train.csv, or ACTION/SEQUENCE/FRAME.npy folders"),
    split: str = typer.Option("test", help="split to evaluate; 'all' for every row"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="write metrics JSON here"),
    report: Optional[Path] = typer.Option(None, "--report", help="run the full evaluation suite and write "
                                          "REPORT/report.html (self-contained), REPORT/metrics.json and PNG figures"),
    split_by: Optional[str] = typer.Option(None, "--split-by", help="rows without a split are split keeping each "
                                           "value of this column in one split, e.g. 'signer' (leave signers out)"),
    shots: int = typer.Option(10, help="examples per class for the few-shot kNN (with --report)"),
    draws: int = typer.Option(5, help="random few-shot draws (with --report)"),
) -> None:
    """Retrieval metrics of a saved model; with --report the whole suite (zero-/few-shot recognition, linear
    probe, sign-language identification, iconicity, plots) beside chance and raw-keypoint baselines."""
    from signclip.data.datasets import load_arrays, load_dataset, split_dataset
    from signclip.models.signclip import load
    from signclip.train import SplitData, evaluate_split, make_prompts_for

    m = load(model)
    df = load_dataset(data)
    if split != "all" and not df["split"].isin(["train", "validation", "test"]).all():
        df = split_dataset(df, group=split_by)  # the training defaults (seed 42, 10% validation, 20% test)
    if report is not None:
        from signclip.eval.html_report import write_html_report
        from signclip.eval.suite import run_suite

        log_csv = Path(model).parent / "log.csv"
        result = run_suite(m, df, report, split=split, shots=shots, draws=draws, progress=True,
                           log_csv=log_csv if log_csv.exists() else None, title=f"signclip evaluation of {model}")
        path = write_html_report(result, report)
        metrics = result.metrics
        text = json.dumps(metrics, indent=2)
        if out:
            out.write_text(text)
        typer.echo(text)
        typer.echo(f"report: {path}")
        return
    if split != "all":
        df = df[df["split"] == split]
    arrays, kept, _ = load_arrays(df, m.cfg.pose)
    metrics = evaluate_split(m, SplitData(kept, arrays, make_prompts_for(m, kept)))
    text = json.dumps(metrics, indent=2)
    if out:
        out.write_text(text)
    typer.echo(text)


@app.command()
def embed(
    model: Path = typer.Argument(..., help="saved model directory"),
    inputs: list[str] = typer.Argument(None, help=".pose files, videos, or folders of them"),
    texts: Optional[list[str]] = typer.Option(None, "--text", "-t", help="text to embed (repeatable)"),
    manifest: Optional[str] = typer.Option(None, help="embed the poses of a manifest CSV / folder / 'lexicon'"),
    spoken_language: Optional[str] = typer.Option(None, "--spoken-language", "-s"),
    signed_language: Optional[str] = typer.Option(None, "--signed-language", "-l"),
    out: Path = typer.Option(..., "--out", "-o", help=".npy (embeddings only) or .parquet (with metadata)"),
    batch_size: int = 32,
) -> None:
    """Embed poses or texts into OUT (.npy, or .parquet with one row per item and its metadata)."""
    from signclip.models.signclip import load

    if inputs and len(inputs) == 1 and Path(inputs[0], "signclip_shards.json").is_file():  # issue 5: shards
        from signclip.cli_scale import embed_shards_cmd
        return embed_shards_cmd(model, inputs[0], out, batch_size)
    m = load(model)
    if texts:
        emb = m.encode_text(texts, spoken_language, signed_language, batch_size=batch_size, progress=True)
        meta = pd.DataFrame({"text": texts, "prompt": m.prompts(texts, spoken_language, signed_language)})
    else:
        if manifest:
            from signclip.data.datasets import load_dataset
            meta = load_dataset(manifest)
            paths = meta["path"].tolist()
        else:
            paths = [str(p) for i in inputs or [] for p in (pose_files(Path(i)) if Path(i).is_dir() else [Path(i)])]
            meta = pd.DataFrame({"path": paths})
        if not paths:
            raise typer.BadParameter("nothing to embed: give .pose files, folders, --manifest or --text")
        emb = m.encode_pose(paths, batch_size=batch_size, progress=True)
    write_embeddings(emb, meta, out)
    typer.echo(f"wrote {len(emb)} embeddings of dimension {emb.shape[1]} to {out}")


def pose_files(folder: Path) -> list[Path]:
    """The .pose files and videos under a folder, sorted."""
    from signclip.video import is_video_path

    return sorted(p for p in folder.rglob("*") if p.suffix == ".pose" or is_video_path(p))


def write_embeddings(emb: np.ndarray, meta: pd.DataFrame, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        np.save(out, emb)
    elif out.suffix == ".parquet":
        meta = meta.reset_index(drop=True).copy()
        meta["embedding"] = list(emb.astype(np.float32))
        meta.to_parquet(out, index=False)
    else:
        raise typer.BadParameter(f"{out}: use a .npy or .parquet file")


@app.command()
def quickstart(
    out: Path = typer.Option(Path("signclip-quickstart"), "--out", "-o"),
    epochs: int = typer.Option(60, help="training epochs over the lexicon's training split"),
    seed: int = 42,
) -> None:
    """Train the quickstart model on the embedded fingerspelling lexicon, evaluate on its test split,
    and write a report (metrics beside chance and a raw-keypoint baseline, training curve)."""
    import torch

    from signclip.data.datasets import load_lexicon
    from signclip.eval.baselines import keypoint_baseline_metrics
    from signclip.eval.recognition import language_identification, spoken_for_signed
    from signclip.eval.retrieval import chance_metrics, unique_texts
    from signclip.report import write_report
    from signclip.train import evaluate_split, fit

    start = time.time()
    cfg = TrainConfig.from_dict({**QUICKSTART_TRAIN, "epochs": epochs, "seed": seed})
    model, splits, summary = fit(load_lexicon(), get_model_config(QUICKSTART_MODEL), cfg, out, resume=False)
    test, train_split = splits["test"], splits["train"]
    metrics = evaluate_split(model, test)
    langid = language_identification(model, model._encode_arrays(test.arrays, 64, True, False),
                                     test.df["signed_language"].tolist(), spoken=spoken_for_signed(train_split.df))
    metrics.update({f"language_id/{k}": v for k, v in langid.metrics.items()})
    baseline = keypoint_baseline_metrics(train_split.arrays, train_split.df, test.arrays, test.df, test.prompts)
    chance = chance_metrics(unique_texts(test.prompts)[1])
    n_lang = len(model.cfg.signed_languages)
    chance.update({"language_id/top-1": 1 / n_lang, "language_id/top-5": min(1.0, 5 / n_lang)})
    columns = {f"signclip {QUICKSTART_MODEL}": metrics, "raw-keypoint baseline": baseline, "chance": chance}
    (out / "metrics.json").write_text(json.dumps(columns, indent=2))
    facts = {
        "data": f"fingerspelling lexicon (spoken-to-signed 0.4.0): {len(train_split.arrays)} train / "
                f"{len(splits['validation'].arrays)} validation / {len(test.arrays)} test poses, "
                f"{test.df['signed_language'].nunique()} sign languages in test; "
                "every test (language, letter) pair is unseen in training",
        "model": f"{QUICKSTART_MODEL} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters), "
                 f"best of {summary['steps']} steps on validation {cfg.best_metric}",
        "language_id": "each test pose ranks the text-free prompts `<spoken> <signed>` of the "
                       f"{n_lang} sign languages",
        "time": f"{time.time() - start:.0f} s on {torch.get_num_threads()} CPU threads",
    }
    report = write_report(out, "signclip quickstart report", columns, facts, out / "log.csv")
    typer.echo(Path(report).read_text())
    typer.echo(f"report: {report}")


# The quickstart: the model and training settings that won on the lexicon (benchmarks/RESULTS.md).
QUICKSTART_MODEL = "tiny-partwise"
QUICKSTART_TRAIN = dict(batch_size=32, lr=1e-3, text_lr=5e-5, warmup_steps=50, language_prompt_p=0.2,
                        ema_decay=0.995, augment={"flip_p": 0.0, "affine_sigma": 0.05},  # paper: 0.2, 0.2
                        val_fraction=0.1, test_fraction=0.2,
                        save_every=140)  # a checkpoint every 10 epochs of 14 steps


from signclip.video import pose_cmd  # noqa: E402  (issue 7: video -> .pose)

app.command("pose")(pose_cmd)

from signclip.cli_serve import register as _register_serve  # noqa: E402  (issue 8: index, search, serve, export)

_register_serve(app)

from signclip.cli_scale import register as _register_scale  # noqa: E402  (issue 5: shards, torchrun)

_register_scale(app)


if __name__ == "__main__":
    app()
