"""Metric tables as markdown: the evaluation report (``report.md``) and the Hub model card share them."""
from __future__ import annotations

from collections.abc import Iterator, Sequence

# metric section of metrics.json -> (title, what it measures)
SECTIONS = {
    "retrieval": ("Retrieval", "pose→text: each pose ranks the unique prompts (R@k, median rank); text→pose: each "
                               "unique prompt ranks the poses (P@k, median rank of the first hit)."),
    "zero_shot_recognition": ("Zero-shot isolated sign recognition",
                              "each pose ranks the prompts of every class name in its own languages."),
    "language_identification": ("Sign-language identification",
                                "each pose ranks the text-free prompts <spoken> <signed> of every sign language the "
                                "model knows."),
    "few_shot": ("Few-shot kNN", "k examples per class drawn from the support set, StandardScaler + kNN with "
                                 "k = round(sqrt(N)); mean and std over random draws."),
    "linear_probe": ("Linear probe", "logistic regression (C=1) on standardised frozen features of the whole "
                                     "support set."),
}


def format_value(metric: str, v: object) -> str:
    """A metric value as shown in a table: ranks and k with one decimal, rates with three."""
    if v is None or (isinstance(v, float) and v != v):
        return ""
    if isinstance(v, float):
        return f"{v:.1f}" if ("MedianR" in metric or metric.endswith(" k")) else f"{v:.3f}"
    return str(v)


def table(header: Sequence[object], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|---" * len(header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows])


def metric_names(columns: dict[str, dict[str, float]]) -> list[str]:
    """The metrics of a section's systems, in first-seen order."""
    return list(dict.fromkeys(m for col in columns.values() for m in col))


def metric_table(columns: dict[str, dict[str, float]]) -> str:
    """One row per metric, one column per system (the model, its baselines, chance)."""
    names = list(columns)
    rows = [[m, *(format_value(m, columns[n].get(m)) for n in names)] for m in metric_names(columns)]
    return table(["metric", *names], rows)


def metric_sections(metrics: dict[str, dict[str, dict[str, float]]]) -> Iterator[tuple[str, str, dict]]:
    """(title, note, columns) of each known section of ``metrics`` (section -> system -> metric -> value)."""
    for key, columns in metrics.items():
        base, _, label = key.partition("/")
        if base in SECTIONS:
            name, note = SECTIONS[base]
            yield name + (f" — label: {label}" if label else ""), note, columns
