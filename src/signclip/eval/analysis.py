"""Latent-space analysis and figures: cross-lingual iconicity ranking, t-SNE / UMAP, heat-maps, confusion
matrices, and the training curve.

Iconicity (paper §6.3): for every concept signed in several sign languages, the *spread* of its pose
embeddings across those languages is the sum over embedding dimensions of their standard deviation;
a small spread means the languages sign it alike (iconic). Concepts are ranked by increasing spread.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def concept_spread(emb: np.ndarray) -> float:
    """Sum over dimensions of the (population) std of the rows of emb (L languages, E)."""
    return float(np.std(emb, axis=0).sum())


def iconicity_ranking(emb: np.ndarray, concepts: Sequence[str], languages: Sequence[str],
                      min_languages: int = 3) -> pd.DataFrame:
    """Rank concepts present in at least ``min_languages`` sign languages by their cross-lingual spread.

    emb (N, E) pose embeddings with each pose's concept and sign language. Several poses of one
    (concept, language) are averaged first so every language counts once. Returns columns rank,
    concept, n_languages, spread (ascending: most iconic first)."""
    df = pd.DataFrame({"concept": list(map(str, concepts)), "language": list(map(str, languages))})
    rows = []
    for concept, group in df.groupby("concept", sort=True):
        by_lang = [emb[rows.index.to_numpy()].mean(0) for _, rows in group.groupby("language")]  # L x (E,)
        if len(by_lang) >= min_languages:
            rows.append({"concept": concept, "n_languages": len(by_lang), "spread": concept_spread(np.stack(by_lang))})
    out = pd.DataFrame(rows, columns=["concept", "n_languages", "spread"])
    out = out.sort_values(["spread", "concept"], kind="stable").reset_index(drop=True)
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out


def plot_iconicity(ranking: pd.DataFrame, out_png: str | Path, top: int = 30) -> Path:
    """Horizontal bars of the spread of the ``top`` most and least iconic concepts."""
    shown = ranking if len(ranking) <= top else pd.concat([ranking.head(top // 2), ranking.tail(top - top // 2)])
    fig, ax = plt.subplots(figsize=(6, 0.25 * len(shown) + 1.2))
    labels = [f"{r.concept} ({r.n_languages})" for r in shown.itertuples()]
    ax.barh(range(len(shown)), shown["spread"], color="tab:purple")
    ax.set_yticks(range(len(shown)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("spread across sign languages (sum of per-dimension std)")
    ax.set_title("Iconicity: most similar across languages at the top")
    if len(shown):
        lo = float(shown["spread"].min())
        ax.set_xlim(lo * 0.95, float(shown["spread"].max()) * 1.02)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return Path(out_png)


def project_2d(emb: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """(N, E) -> (N, 2) with t-SNE (perplexity ≤ 15, as the paper's figure) or UMAP (needs umap-learn)."""
    if len(emb) < 3:
        return np.zeros((len(emb), 2), dtype=np.float32)
    if method == "umap":
        import umap  # optional dependency

        return umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(15, len(emb) - 1)).fit_transform(emb)
    from sklearn.manifold import TSNE

    perplexity = float(min(15, (len(emb) - 1) / 3))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(emb)


def umap_available() -> bool:
    try:
        import umap  # noqa: F401
    except ImportError:
        return False
    return True


def plot_embedding_2d(points: np.ndarray, labels: Sequence[str], out_png: str | Path, title: str,
                      markers: Sequence[str] | None = None, max_legend: int = 25) -> Path:
    """Scatter (N, 2) points coloured by label; ``markers`` optionally splits e.g. poses ("o") and texts ("x")."""
    labels = [str(v) for v in labels]
    uniq = sorted(set(labels))
    cmap = plt.get_cmap("tab20" if len(uniq) > 10 else "tab10")
    colors = {u: cmap(i % cmap.N) for i, u in enumerate(uniq)}
    markers = list(markers) if markers is not None else ["o"] * len(labels)
    fig, ax = plt.subplots(figsize=(7, 6))
    for m in sorted(set(markers)):
        for u in uniq:
            idx = [i for i, (lab, mk) in enumerate(zip(labels, markers)) if lab == u and mk == m]
            if idx:
                ax.scatter(points[idx, 0], points[idx, 1], s=18 if m == "o" else 40, marker=m, color=colors[u],
                           label=u if m == sorted(set(markers))[0] and len(uniq) <= max_legend else None,
                           alpha=0.8, linewidths=1)
    if len(uniq) <= max_legend:
        ax.legend(fontsize=6, ncol=2, loc="best", markerscale=0.8)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return Path(out_png)


def plot_heatmap(matrix: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str], out_png: str | Path,
                 title: str, xlabel: str = "", ylabel: str = "", cmap: str = "viridis", annotate: bool = False) -> Path:
    """A labelled heat-map of an (R, C) matrix (similarities or a confusion matrix)."""
    r, c = matrix.shape
    size = min(12.0, max(4.0, 0.3 * max(r, c) + 2))
    fig, ax = plt.subplots(figsize=(size, size * max(r, 1) / max(c, 1) * 0.9 + 0.8))
    im = ax.imshow(matrix, cmap=cmap, aspect="auto")
    fs = 7 if max(r, c) <= 40 else 4
    if max(r, c) <= 80:
        ax.set_xticks(range(c), [str(v) for v in col_labels], rotation=90, fontsize=fs)
        ax.set_yticks(range(r), [str(v) for v in row_labels], fontsize=fs)
    if annotate and max(r, c) <= 25:
        for i in range(r):
            for j in range(c):
                if matrix[i, j]:
                    ax.text(j, i, f"{matrix[i, j]:g}", ha="center", va="center", fontsize=5, color="w")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return Path(out_png)


def plot_confusion(cm: np.ndarray, classes: Sequence[str], out_png: str | Path, title: str) -> Path:
    """Row-normalised confusion matrix (row = true class)."""
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    return plot_heatmap(norm, classes, classes, out_png, title, xlabel="predicted", ylabel="true", cmap="Blues")


def similarity_matrix(pose_emb: np.ndarray, pose_labels: Sequence[str], text_emb: np.ndarray,
                      ) -> tuple[np.ndarray, list[str]]:
    """Mean cosine similarity of each label's poses (rows) to each text (columns): (L, M) and row labels."""
    labels = [str(v) for v in pose_labels]
    uniq = sorted(set(labels))
    lab = np.array(labels)
    sim = pose_emb @ text_emb.T  # (N, M)
    return np.stack([sim[lab == u].mean(0) for u in uniq]), uniq


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
