"""A task model's metrics on a split (:mod:`signclip.tasks.metrics`), its predictions, and ``report.md``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from signclip.data.arrays import SplitData
from signclip.data.manifests import optional, optional_column
from signclip.eval.markdown import table
from signclip.files import write_text
from signclip.tasks.config import TaskConfig
from signclip.tasks.metrics import classification_metrics, translation_metrics, word_error_rate
from signclip.tasks.model import TaskModel

METRIC_NOTES = {
    "islr": "per-instance / per-class top-k accuracy (%): the true class among the k most probable; per class = "
            "the mean of each class's accuracy (scikit-learn). Poses of classes the model was not trained on are "
            "left out (unknown_class).",
    "cslr": "word error rate (%) of the beam-searched gloss sequences (jiwer): substitutions + deletions + "
            "insertions over the reference glosses; by_language: the same per sign language.",
    "slt": "BLEU-1/2/4 (sacrebleu, corpus-level, 13a tokenisation, case-sensitive) and ROUGE-L F1 (rouge-score, "
           "lower-cased) of the beam-searched sentences, in percent.",
}


def targets_of(model: TaskModel | TaskConfig, df: pd.DataFrame) -> list[str | None]:
    """Each row's target for a task (its class, gloss sequence or sentence; None where missing or blank)."""
    cfg = model if isinstance(model, TaskConfig) else model.cfg
    if cfg.target not in df:
        raise ValueError(f"data: no {cfg.target!r} column, which the {cfg.task} task needs")
    return [optional(t) if optional(t) and str(t).strip() else None for t in df[cfg.target]]


def evaluate_task(model: TaskModel, data: SplitData, batch_size: int = 32) -> tuple[dict[str, float], pd.DataFrame]:
    """The task's metrics on ``data`` (rows without a target are left out) and one prediction row per pose:
    ``path``, ``signed_language``, ``reference``, ``prediction`` (ISLR: the top class and its ``score``)."""
    targets = targets_of(model, data.df)
    keep = [i for i, t in enumerate(targets) if t is not None and (model.cfg.task != "islr" or model.known(t))]
    if not keep:
        raise ValueError(f"data: no row with a {model.cfg.target} the model can be evaluated on")
    preds = model.predict_arrays([data.arrays[i] for i in keep], batch_size)
    refs = [targets[i] for i in keep]
    languages = [optional_column(data.df, "signed_language")[i] for i in keep]
    rows = pd.DataFrame({"path": [data.df["path"].iloc[i] for i in keep], "signed_language": languages,
                         "reference": refs})
    if model.cfg.task == "islr":
        probs = np.stack(preds)
        metrics = classification_metrics(probs, np.array([model.index[t] for t in refs]))
        metrics["unknown_class"] = float(sum(t is not None and not model.known(t) for t in targets))
        rows["prediction"] = [model.vocab[i] for i in probs.argmax(1)]
        rows["score"] = probs.max(1)
    elif model.cfg.task == "cslr":
        rows["prediction"] = [" ".join(p) for p in preds]
        metrics = word_error_rate(refs, rows["prediction"].tolist())
        if rows["signed_language"].nunique() > 1:
            for lang, part in rows.groupby("signed_language"):
                metrics[f"by_language/{lang}/wer"] = word_error_rate(part["reference"].tolist(),
                                                                     part["prediction"].tolist())["wer"]
    else:
        rows["prediction"] = preds
        metrics = translation_metrics(refs, preds)
    metrics["n"] = float(len(keep))
    return metrics, rows


def write_task_report(model: TaskModel, metrics: dict[str, float], predictions: pd.DataFrame, out: str | Path,
                      title: str, facts: dict[str, str]) -> Path:
    """``OUT/report.md`` (setup, metrics, the first predictions), ``OUT/predictions.csv``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    predictions.to_csv(out / "predictions.csv", index=False)
    shown = predictions.head(20)
    parts = [f"# {title}", "", "## Setup", "", *(f"- **{k}**: {v}" for k, v in facts.items()), "",
             f"## {model.cfg.task.upper()} metrics", "", METRIC_NOTES[model.cfg.task], "",
             table(["metric", "value"], [[k, f"{v:.2f}"] for k, v in metrics.items()]), "",
             "## Predictions (first 20; all in predictions.csv)", "",
             table(["reference", "prediction"], [[r, p] for r, p in zip(shown["reference"], shown["prediction"])])]
    return write_text(out / "report.md", "\n".join(parts) + "\n")
