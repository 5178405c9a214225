"""Reports of an evaluation (:class:`~signclip.eval.suite.EvalResult`): ``report.md`` (markdown, figures as
PNG files beside it), ``report.html`` (one self-contained file, figures inlined) and ``metrics.json``."""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import pandas as pd

from signclip.eval.suite import EvalResult

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
FIGURES = {
    "tsne_pose_text": "t-SNE of pose and text embeddings", "umap_pose_text": "UMAP of pose and text embeddings",
    "similarity": "Similarity heat-map", "confusion_zero_shot": "Zero-shot recognition confusion matrix",
    "confusion_language_id": "Sign-language identification confusion matrix", "iconicity": "Iconicity ranking",
    "training_curve": "Training curve",
}
ICONICITY_NOTE = ("concepts signed in several sign languages, ranked by the spread of their pose embeddings across "
                  "languages (sum of per-dimension std; smallest = most similar across languages).")
STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee}
.note{color:#555;font-size:.9em}"""


def format_value(metric: str, v: object) -> str:
    """A metric value as shown in a table: ranks and k with one decimal, rates with three."""
    if v is None or (isinstance(v, float) and v != v):
        return ""
    if isinstance(v, float):
        return f"{v:.1f}" if ("MedianR" in metric or metric.endswith(" k")) else f"{v:.3f}"
    return str(v)


def _sections(result: EvalResult):
    """(heading, note, columns: system -> metric -> value) of each metric section, in order."""
    for key, columns in result.metrics.items():
        base, _, label = key.partition("/")
        if base in SECTIONS:
            name, note = SECTIONS[base]
            yield name + (f" — label: {label}" if label else ""), note, columns


def _rows(columns: dict[str, dict[str, float]]) -> list[str]:
    """Metric names in first-seen order over the systems."""
    return list(dict.fromkeys(m for col in columns.values() for m in col))


# ---- markdown ------------------------------------------------------------------------------------------
def metric_table(columns: dict[str, dict[str, float]]) -> str:
    """Markdown table: one row per metric, one column per system."""
    names = list(columns)
    lines = ["| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| {m} | " + " | ".join(format_value(m, columns[n].get(m)) for n in names) + " |"
              for m in _rows(columns)]
    return "\n".join(lines)


def write_markdown_report(result: EvalResult, out_dir: str | Path, title: str | None = None) -> Path:
    """``OUT/report.md`` with the facts, every metric section and the figures (PNG files in ``OUT``)."""
    out = Path(out_dir)
    title = title or result.facts.get("title", "signclip evaluation")
    parts = [f"# {title}", "", "## Setup", ""]
    parts += [f"- **{k}**: {v}" for k, v in result.facts.items() if k != "title"]
    for name, note, columns in _sections(result):
        parts += ["", f"## {name}", "", note, "", metric_table(columns)]
    if "iconicity" in result.tables:
        parts += ["", "## Iconicity", "", ICONICITY_NOTE + " The 20 most similar:", "",
                  dataframe_markdown(result.tables["iconicity"].head(20))]
    for key, path in result.figures.items():
        parts += ["", f"## {FIGURES.get(key, key)}", "", f"![{FIGURES.get(key, key)}]({Path(path).name})"]
    path = out / "report.md"
    path.write_text("\n".join(parts) + "\n")
    return path


def dataframe_markdown(df: pd.DataFrame) -> str:
    """A markdown table of a DataFrame (floats with three decimals)."""
    cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in df.itertuples(index=False)]
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|---" * len(df.columns) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


# ---- HTML ----------------------------------------------------------------------------------------------
def metric_table_html(columns: dict[str, dict[str, float]]) -> str:
    """HTML table: one row per metric, one column per system (rows in first-seen order)."""
    names = list(columns)
    head = "<tr><th>metric</th>" + "".join(f"<th>{html.escape(n)}</th>" for n in names) + "</tr>"
    rows = ["<tr><td>" + html.escape(m) + "</td>" + "".join(
        f"<td>{html.escape(format_value(m, columns[n].get(m)))}</td>" for n in names) + "</tr>"
        for m in _rows(columns)]
    return "<table class=\"metrics\">" + head + "".join(rows) + "</table>"


def dataframe_html(df: pd.DataFrame, max_rows: int = 40) -> str:
    """A table of (at most) the first and last rows of a DataFrame."""
    shown = df if len(df) <= max_rows else pd.concat([df.head(max_rows // 2), df.tail(max_rows // 2)])
    return shown.to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0, classes="table")


def image_html(path: Path, alt: str) -> str:
    """An <img> with the PNG inlined as a base64 data URI."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def write_html_report(result: EvalResult, out_dir: str | Path, title: str | None = None) -> Path:
    """Write ``OUT/report.html`` (self-contained) and ``OUT/metrics.json``; return the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    title = title or result.facts.get("title", "signclip evaluation")
    parts = [f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1><h2>Setup</h2><ul>"]
    parts += [f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>"
              for k, v in result.facts.items() if k != "title"]
    parts.append("</ul>")
    for name, note, columns in _sections(result):
        parts += [f"<h2>{html.escape(name)}</h2>", f"<p class=\"note\">{html.escape(note)}</p>",
                  metric_table_html(columns)]
    if "iconicity" in result.tables:
        parts += ["<h2>Iconicity</h2>", f"<p class=\"note\">{html.escape(ICONICITY_NOTE)}</p>",
                  dataframe_html(result.tables["iconicity"])]
    if result.figures:
        parts.append("<h2>Figures</h2>")
        for key, path in result.figures.items():
            cap = FIGURES.get(key, key)
            parts += [f"<h3>{html.escape(cap)}</h3>", image_html(path, cap)]
    parts.append("</body></html>")
    path = out / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    write_metrics_json(result, out / "metrics.json")
    return path


def write_metrics_json(result: EvalResult, path: str | Path) -> Path:
    """``metrics.json``: metrics by section and system, facts, and the iconicity ranking."""
    payload = {"metrics": result.metrics, "facts": result.facts,
               "tables": {k: v.to_dict(orient="records") for k, v in result.tables.items()}}
    Path(path).write_text(json.dumps(payload, indent=2, default=float))
    return Path(path)
