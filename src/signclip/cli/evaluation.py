"""``signclip eval``: the paper's retrieval metrics, or with ``--report`` the whole evaluation suite."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from signclip.cli.hub import MODEL_HELP, load_model, model_dir
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
    probe, sign-language identification, iconicity, plots) beside chance and raw-keypoint baselines."""
    from signclip.data.arrays import SplitData, load_arrays, none_usable, table_prompts
    from signclip.data.manifests import load_dataset
    from signclip.data.splits import ensure_split
    from signclip.eval.retrieval import evaluate_split

    local = model_dir(model)
    m = load_model(local)
    df = load_dataset(data)
    if split != "all":
        df = ensure_split(df, group=split_by)  # as training splits by default (TrainConfig's seed and fractions)
        if not (df["split"] == split).any():
            counts = ", ".join(f"{k} {v}" for k, v in df["split"].value_counts().items())
            raise UsageError(f"{data}: no rows in split {split!r} (it has {counts}); choose one with --split, "
                             "or 'all'")
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
