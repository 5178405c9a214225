"""Reports of an evaluation (:class:`~signclip.eval.suite.EvalResult`): ``report.md`` (markdown, figures as
PNG files beside it), ``report.html`` (one self-contained file, figures inlined) and ``metrics.json``."""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import pandas as pd

from signclip.eval.markdown import metric_cells, metric_sections, metric_table, table
from signclip.eval.suite import EvalResult

FIGURES = {
    "tsne_pose_text": "t-SNE of pose and text embeddings", "umap_pose_text": "UMAP of pose and text embeddings",
    "similarity": "Similarity heat-map", "confusion_zero_shot": "Recognition confusion matrix (prompt ranking)",
    "confusion_language_id": "Sign-language identification confusion matrix", "iconicity": "Iconicity ranking",
    "training_curve": "Training curve",
}
ICONICITY_NOTE = ("concepts signed in several sign languages, ranked by the spread of their pose embeddings across "
                  "languages (sum of per-dimension std; smallest = most similar across languages).")
STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee}
.note{color:#555;font-size:.9em}.warning{color:#8a4b00}"""


# ---- markdown ------------------------------------------------------------------------------------------
def write_markdown_report(result: EvalResult, out_dir: str | Path, title: str | None = None) -> Path:
    """``OUT/report.md`` with the facts, every metric section and the figures (PNG files in ``OUT``)."""
    out = Path(out_dir)
    title = title or result.facts.get("title", "signclip evaluation")
    parts = [f"# {title}", "", "## Setup", ""]
    parts += [f"- **{k}**: {v}" for k, v in result.facts.items() if k != "title"]
    for sec in metric_sections(result.metrics):
        parts += ["", f"## {sec.title}", "", sec.note, *(f"\n**Note**: {n}." for n in result.notes.get(sec.key, ())),
                  "", metric_table(sec.columns, sec.by_system)]
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
    rows = [[f"{v:.3f}" if isinstance(v, float) else v for v in row] for row in df.itertuples(index=False)]
    return table(list(df.columns), rows)


# ---- HTML ----------------------------------------------------------------------------------------------
def metric_table_html(columns: dict[str, dict[str, float]], by_system: bool = False) -> str:
    """HTML table of :func:`signclip.eval.markdown.metric_cells`: one row per metric (or per system)."""
    header, rows = metric_cells(columns, by_system)
    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
    body = ["<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in rows]
    return "<table class=\"metrics\">" + head + "".join(body) + "</table>"


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
    for sec in metric_sections(result.metrics):
        parts += [f"<h2>{html.escape(sec.title)}</h2>", f"<p class=\"note\">{html.escape(sec.note)}</p>",
                  *(f"<p class=\"warning\"><b>Note</b>: {html.escape(n)}.</p>" for n in result.notes.get(sec.key, ())),
                  metric_table_html(sec.columns, sec.by_system)]
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
    """``metrics.json``: metrics by section and system, facts, notes by section, and the iconicity ranking."""
    payload = {"metrics": result.metrics, "facts": result.facts, "notes": result.notes,
               "tables": {k: v.to_dict(orient="records") for k, v in result.tables.items()}}
    Path(path).write_text(json.dumps(payload, indent=2, default=float))
    return Path(path)
