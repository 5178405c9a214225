"""The quickstart/training report: a markdown metric table beside baselines, and a training curve."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def plot_training_curves(log_csv: str | Path, out_png: str | Path, metric: str = "val/pose_to_text/R@1") -> Path:
    """Training loss per step and the validation metric, on two axes."""
    log = pd.read_csv(log_csv)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(log["step"], log["loss"], color="tab:blue", alpha=0.25, linewidth=0.8)
    window = max(1, len(log) // 50)
    ax.plot(log["step"], log["loss"].rolling(window, min_periods=1).mean(), color="tab:blue",
            label=f"training loss (mean of {window} steps)")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("contrastive loss", color="tab:blue")
    if metric in log.columns:
        val = log.dropna(subset=[metric])
        ax2 = ax.twinx()
        ax2.plot(val["step"], val[metric], "o-", color="tab:orange", label=metric)
        ax2.set_ylabel(metric, color="tab:orange")
        ax2.set_ylim(0, 1)
    ax.set_title("Training curve")
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return Path(out_png)


def metric_table(columns: dict[str, dict[str, float]]) -> str:
    """Markdown table: one row per metric, one column per system."""
    names = list(columns)
    metrics = list(next(iter(columns.values())))
    lines = ["| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for m in metrics:
        cells = []
        for n in names:
            v = columns[n].get(m)
            cells.append("" if v is None else (f"{v:.1f}" if "MedianR" in m else f"{v:.3f}"))
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(out_dir: str | Path, title: str, columns: dict[str, dict[str, float]], facts: dict[str, object],
                 log_csv: str | Path | None = None) -> Path:
    """Write ``report.md`` (and ``training_curve.png`` when a training log is given)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts = [f"# {title}", "", "## Setup", ""]
    parts += [f"- **{k}**: {v}" for k, v in facts.items()]
    parts += ["", "## Retrieval on the test split", "",
              "pose→text: each pose ranks the unique test texts (R@k, median rank); "
              "text→pose: each unique text ranks the test poses (P@k, median rank of the first hit).", "",
              metric_table(columns), ""]
    if log_csv is not None and Path(log_csv).exists():
        plot_training_curves(log_csv, out / "training_curve.png")
        parts += ["## Training", "", "![training curve](training_curve.png)", ""]
    path = out / "report.md"
    path.write_text("\n".join(parts))
    return path
