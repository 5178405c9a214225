"""``signclip eval``: the paper's retrieval metrics, or with ``--report`` the whole evaluation suite."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from signclip.cli.hub import MODEL_HELP, model_dir
from signclip.errors import UsageError


def eval_cmd(
    model: str = typer.Argument(..., help=MODEL_HELP),
    data: str = typer.Argument(..., help="manifest CSV (e.g. RUN/splits.csv), folder, 'lexicon', Kaggle ASL Signs "
                                         "train.csv, or ACTION/SEQUENCE/FRAME.npy folders"),
    split: str = typer.Option("test", help="split to evaluate; 'all' for every row"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="write metrics JSON here"),
    report: Optional[Path] = typer.Option(None, "--report", help="run the full evaluation suite and write "
                                          "REPORT/report.html (self-contained), REPORT/report.md, "
                                          "REPORT/metrics.json and PNG figures"),
    split_by: Optional[str] = typer.Option(None, "--split-by", help="rows without a split are split keeping each "
                                           "value of this column in one split, e.g. 'signer' (leave signers out)"),
    shots: int = typer.Option(10, help="examples per class for the few-shot kNN (with --report)"),
    draws: int = typer.Option(5, help="random few-shot draws (with --report)"),
) -> None:
    """Retrieval metrics of a saved model; with --report the whole suite (zero-/few-shot recognition, linear
    probe, sign-language identification, iconicity, plots) beside chance and raw-keypoint baselines. A task
    model (`signclip finetune`) gets its task's metrics: ISLR top-1/top-5 per instance and per class, CSLR word
    error rate, SLT BLEU-1/2/4 and ROUGE-L (with --report: report.md and predictions.csv)."""
    from signclip.data.arrays import SplitData, load_arrays, none_usable, table_prompts
    from signclip.data.manifests import load_dataset
    from signclip.data.splits import ensure_split
    from signclip.eval.retrieval import evaluate_split
    from signclip.tasks.model import load

    local = model_dir(model)
    m = load(local)  # a SignCLIP, or a task model
    df = load_dataset(data)
    if split != "all":
        df = ensure_split(df, group=split_by)  # as training splits by default (TrainConfig's seed and fractions)
        if not (df["split"] == split).any():
            counts = ", ".join(f"{k} {v}" for k, v in df["split"].value_counts().items())
            raise UsageError(f"{data}: no rows in split {split!r} (it has {counts}); choose one with --split, "
                             "or 'all'")
    if not hasattr(m, "encode_text"):  # a task model
        return eval_task_cmd(m, model, df, data, split, out, report)
    if report is not None:
        from signclip.eval.report import write_html_report, write_markdown_report
        from signclip.eval.suite import run_suite, training_classes

        run = Path(local).parent  # RUN/best: the training log and split beside the model
        log_csv = run / "log.csv"
        result = run_suite(m, df, report, split=split, shots=shots, draws=draws, progress=True,
                           log_csv=log_csv if log_csv.exists() else None, title=f"signclip evaluation of {model}",
                           trained_classes=training_classes(run / "splits.csv"))
        path = write_html_report(result, report)
        write_markdown_report(result, report)
        metrics = result.metrics
    else:
        rows = df if split == "all" else df[df["split"] == split]
        arrays, kept, errors = load_arrays(rows, m.cfg.pose)  # warns of the rows it skips
        if not arrays:
            raise none_usable(f"{data} (split {split!r})", len(rows), errors)
        metrics, path = evaluate_split(m, SplitData(kept, arrays, table_prompts(m, kept))), None
    text = json.dumps(metrics, indent=2)
    if out:
        out.write_text(text)
    typer.echo(text)
    if path is not None:
        typer.echo(f"report: {path}")


def eval_task_cmd(m, model: str, df, data: str, split: str, out: Optional[Path], report: Optional[Path]) -> None:
    """``signclip eval`` of a task model: its task's metrics (metrics.json, report.md, predictions.csv)."""
    from signclip.data.arrays import load_split
    from signclip.tasks.evaluate import evaluate_task, write_task_report

    rows = df if split == "all" else df[df["split"] == split]
    metrics, predictions = evaluate_task(m, load_split(rows, m.encoder_cfg.pose))
    text = json.dumps({m.cfg.task: metrics}, indent=2)
    if out:
        out.write_text(text)
    if report is not None:
        (report / "metrics.json").parent.mkdir(parents=True, exist_ok=True)
        (report / "metrics.json").write_text(text)
        path = write_task_report(m, metrics, predictions, report, f"signclip {m.cfg.task} evaluation of {model}",
                                 {"data": f"{data}, split {split}: {int(metrics['n'])} poses",
                                  "model": f"{m.cfg.task} head ({m.cfg.name}) on a {m.encoder_cfg.name} pose encoder"})
    typer.echo(text)
    if report is not None:
        typer.echo(f"report: {path}")
