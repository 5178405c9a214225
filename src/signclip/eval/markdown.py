"""Metric tables as markdown: the evaluation report (``report.md``) and the Hub model card share them."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

RECOGNITION_NOTE = (
    "one row per setting, as the paper's Table 5: each evaluated pose ranks the candidate classes (the labels of "
    "the support and evaluated sets). signclip's own prompt ranking (each class name as a prompt in the pose's "
    "languages) is named \"fine-tuned\" when the model was trained on every evaluated class, \"zero-shot\" when on "
    "none, else \"prompt ranking\". k-shot kNN: k examples per class drawn from the support set, StandardScaler + "
    "kNN with k = round(sqrt(N)) neighbours, the classes ranked by their share of the neighbours' votes; means over "
    "random draws (acc@1 std: over draws). Linear probe: logistic regression (C=1) on standardised frozen features "
    "of the whole support set, the classes ranked by predicted probability. The raw-keypoint baseline goes through "
    "the same kNN and probe. Ties are broken by class order. acc@1 = R@1; R@k: the correct class among the top k; "
    "MedianR: median rank of the correct class (after every candidate when it is none of them).")
# metric section of metrics.json (the whole key, else the part before "/") -> (title, what it measures)
SECTIONS = {
    "retrieval": ("Retrieval", "pose→text: each pose ranks the unique prompts (R@k, median rank); text→pose: each "
                               "unique prompt ranks the poses (P@k, median rank of the first hit)."),
    "recognition/text": ("Isolated sign recognition", RECOGNITION_NOTE),
    "recognition/signed_language": ("Sign-language recognition on frozen features",
                                    "the table of isolated sign recognition with the sign language as the label "
                                    "(no prompt ranking: see sign-language identification)."),
    "recognition": ("Recognition", RECOGNITION_NOTE),
    "language_identification": ("Sign-language identification",
                                "each pose ranks the text-free prompts <spoken> <signed> of every sign language the "
                                "model knows."),
    # sections of metrics.json files written before the recognition table (still read by the model card)
    "zero_shot_recognition": ("Zero-shot isolated sign recognition",
                              "each pose ranks the prompts of every class name in its own languages."),
    "few_shot": ("Few-shot kNN", "k examples per class drawn from the support set, StandardScaler + kNN with "
                                 "k = round(sqrt(N)); mean and std over random draws."),
    "linear_probe": ("Linear probe", "logistic regression (C=1) on standardised frozen features of the whole "
                                     "support set."),
}
BY_SYSTEM = {"recognition"}  # sections shown one row per system (setting), one column per metric
HEADERS = {"acc@1": "acc@1 (= R@1)"}  # column titles of metrics in BY_SYSTEM tables


class Section(NamedTuple):
    """A metric section of metrics.json as shown: key, title, note and columns (system -> metric -> value);
    ``by_system``: one row per system (else one row per metric)."""

    key: str
    title: str
    note: str
    columns: dict[str, dict[str, float]]
    by_system: bool


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


def metric_cells(columns: dict[str, dict[str, float]], by_system: bool = False) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a section's table, values formatted: one row per metric and one column per system
    (the model, its baselines, chance), or with ``by_system`` one row per system and one column per metric."""
    names, metrics = list(columns), metric_names(columns)
    if by_system:
        return (["setting", *(HEADERS.get(m, m) for m in metrics)],
                [[n, *(format_value(m, columns[n].get(m)) for m in metrics)] for n in names])
    return ["metric", *names], [[m, *(format_value(m, columns[n].get(m)) for n in names)] for m in metrics]


def metric_table(columns: dict[str, dict[str, float]], by_system: bool = False) -> str:
    """The markdown table of :func:`metric_cells`."""
    return table(*metric_cells(columns, by_system))


def metric_sections(metrics: dict[str, dict[str, dict[str, float]]]) -> Iterator[Section]:
    """Each known section of ``metrics`` (section -> system -> metric -> value), in order."""
    for key, columns in metrics.items():
        base, _, label = key.partition("/")
        if key in SECTIONS:
            name, note = SECTIONS[key]
        elif base in SECTIONS:
            name, note = SECTIONS[base]
            name += f" — label: {label}" if label else ""
        else:
            continue
        yield Section(key, name, note, columns, base in BY_SYSTEM)
