"""The whole evaluation of a model on one split of a dataset, with baselines side by side.

:func:`run_suite` embeds the poses of the evaluated split (and of the training split, the support set
for few-shot and linear probes) once, then computes

* retrieval (pose→text R@k, text→pose P@k) — model, raw-keypoint baseline, chance;
* isolated sign recognition as the paper's Table 5, one row per setting: the model's prompt ranking
  (zero-shot, or fine-tuned when the model was trained on every evaluated class), few-shot kNN (mean ± std
  over draws) and linear probe on the model's embeddings and on raw-keypoint features, chance; columns
  acc@1 (= R@1), R@5, R@10, median rank of the correct class;
* with several sign languages in the evaluated data: sign-language identification top-1/top-5 (model,
  chance) and the same kNN / probe table with the sign language as the label;
* iconicity ranking, t-SNE (and UMAP) plots, a similarity heat-map, confusion matrices, training curve.

Figures are written as PNG files into ``out_dir``; :mod:`signclip.eval.report` turns the result into
``report.md``, a self-contained ``report.html`` and ``metrics.json``.
"""
from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from signclip.data.arrays import load_arrays, none_usable, table_prompts
from signclip.data.manifests import optional
from signclip.eval import analysis, recognition
from signclip.eval.baselines import keypoint_baseline_metrics, keypoint_features
from signclip.eval.retrieval import chance_metrics, retrieval_metrics, unique_texts
from signclip.models.signclip import SignCLIP

MODEL, KEYPOINTS, CHANCE = "signclip", "raw-keypoint baseline", "chance"
# the row of the model's own prompt ranking in the recognition table, by the classes it was trained on
ZERO_SHOT, FINE_TUNED, PROMPT_RANKING = "zero-shot", "fine-tuned", "prompt ranking"


@dataclass
class EvalResult:
    """Metrics (JSON-able: section -> system -> metric -> value), tables, figure paths, facts, and notes on
    a metric section (section -> lines, e.g. a few-shot setting with fewer examples than asked)."""

    metrics: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)
    facts: dict[str, str] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Embedded:
    """The usable poses of some rows: the rows kept, their preprocessed arrays and (N, E) embeddings."""

    df: pd.DataFrame
    arrays: list[np.ndarray]
    emb: np.ndarray


def embed_rows(model: SignCLIP, df: pd.DataFrame, progress: bool, required: str | None = None) -> Embedded | None:
    """Preprocess and embed the rows of ``df``. None when no pose is usable, or with ``required`` (what the rows
    are, e.g. "split 'test'") an error naming the first reason."""
    arrays, kept, errors = load_arrays(df, model.cfg.pose, progress=progress)
    if not arrays:
        if required:
            raise none_usable(required, len(df), errors)
        return None
    return Embedded(kept, arrays, model.encode_arrays(arrays, 64, progress=progress))


def _support_and_eval(df: pd.DataFrame, split: str) -> tuple[pd.DataFrame, pd.DataFrame | None, str]:
    """The evaluated rows, the support rows (the training split) and a description of both."""
    if split == "all" or "split" not in df.columns or not df["split"].notna().any():
        return df.reset_index(drop=True), None, "all rows (no training split: no few-shot, probe or keypoint baseline)"
    ev = df[df["split"] == split].reset_index(drop=True)
    if ev.empty:
        raise ValueError(f"split {split!r}: no rows; the data has splits {sorted(df['split'].dropna().unique())}")
    sup = df[df["split"] == "train"].reset_index(drop=True) if split != "train" else None
    if sup is not None and sup.empty:
        sup = None
    return ev, sup, f"{split} split; support set for few-shot/probe/baseline: " + (
        "train split" if sup is not None else "none")


def _several_languages(df: pd.DataFrame) -> bool:
    return bool(df["signed_language"].notna().any() and df["signed_language"].nunique() > 1)


def prompt_ranking_label(evaluated: Collection[str], trained: Collection[str] | None) -> tuple[str, str]:
    """The name of the model's prompt-ranking row ("fine-tuned" when the model was trained on every evaluated
    class, "zero-shot" on none, else "prompt ranking") and why."""
    classes = set(map(str, evaluated))
    if trained is None:
        return PROMPT_RANKING, "the model's training classes are unknown (no splits.csv of its run)"
    seen = len(classes & set(map(str, trained)))
    label = FINE_TUNED if seen == len(classes) else ZERO_SHOT if seen == 0 else PROMPT_RANKING
    return label, f"{seen} of the {len(classes)} evaluated classes were seen in training"


def training_classes(splits_csv: str | Path) -> list[str] | None:
    """The texts of the ``train`` split of a training run's ``splits.csv`` (None when there is no such file):
    the classes a model of that run was trained on, for :func:`run_suite`'s ``trained_classes``."""
    path = Path(splits_csv)
    if not path.is_file():
        return None
    df = pd.read_csv(path, usecols=lambda c: c in ("text", "split"), dtype=str)
    if not {"text", "split"} <= set(df.columns):
        return None
    return sorted(df.loc[df["split"] == "train", "text"].dropna().unique())


def _class_labels(ev: pd.DataFrame, max_classes: int = 20) -> list[str]:
    """Each pose's text, "other" beyond the ``max_classes`` most frequent ones."""
    top = set(ev["text"].value_counts().index[:max_classes])
    return [t if t in top else "other" for t in ev["text"].astype(str)]


def _colour_labels(ev: pd.DataFrame) -> tuple[str, list[str]]:
    """Colour plots by sign language when there are several, else by the (most frequent) classes."""
    if _several_languages(ev):
        return "signed_language", ev["signed_language"].astype(str).tolist()
    return "text", _class_labels(ev)


def _labels(col: str, ev: Embedded, sup: Embedded | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The support and evaluated labels of ``col`` and the candidate classes of recognition (both sets')."""
    ytr = sup.df[col].astype(str).to_numpy() if sup is not None else np.array([], dtype=str)
    yte = ev.df[col].astype(str).to_numpy()
    return ytr, yte, recognition.encode_labels(ytr, yte)[0]


class Suite:
    """One evaluation: the steps of :func:`run_suite`, each adding to ``self.result``."""

    def __init__(self, model: SignCLIP, out: Path, shots: int, draws: int, seed: int):
        self.model, self.out, self.shots, self.draws, self.seed = model, out, shots, draws, seed
        self.result = EvalResult()
        self.zero_shot: recognition.RankingResult | None = None
        self.prompt_label = PROMPT_RANKING
        self.language_id: recognition.RankingResult | None = None
        self.keypoints: tuple[np.ndarray, np.ndarray] | None = None  # raw-keypoint features of support, evaluated

    def retrieval(self, ev: Embedded, sup: Embedded | None) -> None:
        prompts = table_prompts(self.model, ev.df)
        texts, index = unique_texts(prompts)
        self.texts, self.text_emb = texts, self.model.encode_text(texts, progress=False)  # (M, E)
        sec = {MODEL: retrieval_metrics(ev.emb, self.text_emb, index)}
        if sup is not None:
            sec[KEYPOINTS] = keypoint_baseline_metrics(sup.arrays, sup.df, ev.arrays, ev.df, prompts)
        sec[CHANCE] = chance_metrics(index)
        self.result.metrics["retrieval"] = sec

    def recognition(self, ev: Embedded, sup: Embedded | None, trained: Collection[str] | None) -> None:
        """Isolated sign recognition (the paper's Table 5) and, with several sign languages evaluated, the
        sign language: identification by prompts and the same kNN / probe table on the language label."""
        _, yte, classes = _labels("text", ev, sup)
        label, why = prompt_ranking_label(yte, trained)
        zs = self.zero_shot = recognition.zero_shot_recognition(self.model, ev.emb, ev.df, classes)
        self.prompt_label = label
        self.result.facts["recognition"] = (f"{len(classes)} candidate classes; signclip's prompt ranking is "
                                            f"'{label}': {why}")
        rows = {f"{MODEL} {label}": recognition.recognition_metrics(zs.scores, zs.labels)}
        self.result.metrics["recognition/text"] = self.frozen_features(rows, "text", ev, sup)
        if not _several_languages(ev.df):
            return  # one sign language (or none known): nothing to identify
        known = list(self.model.cfg.signed_languages)
        if ev.df["signed_language"].notna().all() and known:
            spoken = recognition.spoken_for_signed(pd.concat([e.df for e in (sup, ev) if e is not None]))
            self.language_id = recognition.language_identification(
                self.model, ev.emb, ev.df["signed_language"].astype(str).tolist(), known, spoken)
            n = len(known)
            self.result.metrics["language_identification"] = {
                MODEL: self.language_id.metrics, CHANCE: {"top-1": min(1, 1 / n), "top-5": min(1, 5 / n)}}
        if sup is not None:
            self.result.metrics["recognition/signed_language"] = self.frozen_features({}, "signed_language", ev, sup)

    def frozen_features(self, rows: dict[str, dict[str, float]], col: str, ev: Embedded,
                        sup: Embedded | None) -> dict[str, dict[str, float]]:
        """``rows`` + few-shot kNN and linear probe on ``col``, on the model's embeddings and on raw keypoints
        (with a support set), + chance: one row per setting, the candidates are the labels of both sets."""
        ytr, yte, classes = _labels(col, ev, sup)
        if sup is not None:
            if self.keypoints is None:
                self.keypoints = keypoint_features(sup.arrays), keypoint_features(ev.arrays)  # (S, F), (N, F)
            for name, x_tr, x_te in ((MODEL, sup.emb, ev.emb), (KEYPOINTS, *self.keypoints)):
                rows[f"{name} {self.shots}-shot kNN"] = recognition.few_shot_knn(x_tr, ytr, x_te, yte, self.shots,
                                                                                 self.draws, self.seed)
                rows[f"{name} linear probe"] = recognition.linear_probe(x_tr, ytr, x_te, yte)
            short = recognition.shots_note(ytr, classes, self.shots)
            if short:
                self.result.notes.setdefault(f"recognition/{col}", []).append(short)
            unseen = float(np.mean(~np.isin(yte, ytr)))
            if unseen:
                self.result.facts[f"labels '{col}'"] = (f"{unseen:.0%} of evaluated poses have a label absent from "
                                                        "the support set")
        rows[CHANCE] = recognition.chance_recognition(len(classes))
        return rows

    def iconicity(self, ev: Embedded, sup: Embedded | None) -> None:
        """The cross-lingual iconicity ranking over every embedded pose."""
        both = [e for e in (ev, sup) if e is not None]
        df = pd.concat([e.df for e in both], ignore_index=True)
        if df["signed_language"].nunique() > 1:
            ranking = analysis.iconicity_ranking(np.concatenate([e.emb for e in both]), df["text"].astype(str),
                                                 df["signed_language"].astype(str))
            self.result.tables["iconicity"] = ranking
            self.result.metrics["iconicity"] = {MODEL: {"concepts ranked": float(len(ranking))}}

    def plots(self, ev: Embedded, log_csv: str | Path | None) -> None:
        """t-SNE / UMAP, similarity heat-map, confusion matrices, iconicity bars, training curve."""
        figures, out = self.result.figures, self.out
        colour_by, labels = _colour_labels(ev.df)
        # text prompts coloured like their poses: the label of the first pose with that prompt
        _, index = unique_texts(table_prompts(self.model, ev.df))
        text_labels = [labels[int(np.flatnonzero(index == j)[0])] for j in range(len(self.texts))]
        both = np.concatenate([ev.emb, self.text_emb])  # (N + M, E)
        for method in ["tsne"] + (["umap"] if analysis.umap_available() else []):
            figures[f"{method}_pose_text"] = analysis.plot_embedding_2d(
                analysis.project_2d(both, method, self.seed), labels + text_labels, out / f"{method}_pose_text.png",
                f"{method.upper()} of pose (o) and text (x) embeddings by {colour_by}",
                markers=["o"] * len(ev.emb) + ["x"] * len(self.text_emb))
        figures["similarity"] = self.similarity_heatmap(ev, colour_by == "signed_language")
        zs = self.zero_shot
        figures["confusion_zero_shot"] = analysis.plot_confusion(
            zs.confusion, zs.classes, out / "confusion_zero_shot.png",
            f"recognition by prompt ranking ({self.prompt_label}; row-normalised)")
        if self.language_id is not None:
            lid = self.language_id
            used = [i for i in range(len(lid.classes)) if lid.confusion[i].sum() or lid.confusion[:, i].sum()]
            figures["confusion_language_id"] = analysis.plot_confusion(
                lid.confusion[np.ix_(used, used)], [lid.classes[i] for i in used], out / "confusion_language_id.png",
                "sign-language identification (row-normalised)")
        if len(self.result.tables.get("iconicity", ())):
            figures["iconicity"] = analysis.plot_iconicity(self.result.tables["iconicity"], out / "iconicity.png")
        if log_csv is not None and Path(log_csv).exists():
            figures["training_curve"] = analysis.plot_training_curves(log_csv, out / "training_curve.png")

    def similarity_heatmap(self, ev: Embedded, by_language: bool) -> Path:
        """Mean similarity of each group's poses to each group's prompts: sign languages (when there are
        several and the model identifies them) or classes."""
        if by_language and self.language_id is not None:
            labels = ev.df["signed_language"].astype(str).tolist()
            cols = sorted(set(labels))
            spoken = recognition.spoken_for_signed(ev.df)
            text_emb = self.model.encode_text([""] * len(cols), [spoken.get(g) for g in cols], cols, progress=False)
            sim, rows = analysis.similarity_matrix(ev.emb, labels, text_emb)
            title = "mean similarity: poses by sign language × language prompts"
        else:
            labels = _class_labels(ev.df)
            cols = sorted(set(labels) - {"other"})
            first = {c: ev.df.index[ev.df["text"].astype(str) == c][0] for c in cols}
            text_emb = self.model.encode_text(cols, [optional(ev.df.at[first[c], "spoken_language"]) for c in cols],
                                              [optional(ev.df.at[first[c], "signed_language"]) for c in cols],
                                              progress=False)
            keep = [i for i, v in enumerate(labels) if v != "other"]
            sim, rows = analysis.similarity_matrix(ev.emb[keep], [labels[i] for i in keep], text_emb)
            title = "mean similarity: poses by class × class prompts"
        return analysis.plot_heatmap(sim, rows, cols, self.out / "similarity.png", title, xlabel="prompt",
                                     ylabel="poses")


def run_suite(model: SignCLIP, data: pd.DataFrame, out_dir: str | Path, split: str = "test", shots: int = 10,
              draws: int = 5, seed: int = 0, log_csv: str | Path | None = None, progress: bool = False,
              plots: bool = True, title: str = "signclip evaluation",
              trained_classes: Collection[str] | None = None) -> EvalResult:
    """Evaluate ``model`` on ``data[data.split == split]`` (``split="all"``: every row); write figures to
    ``out_dir``. ``data`` is a dataset table (e.g. RUN/splits.csv); rows of the ``train`` split are the
    support set of the few-shot kNN, the linear probe and the raw-keypoint baseline. ``trained_classes``:
    the texts the model was trained on (its run's training split), which name its prompt-ranking row
    "zero-shot" or "fine-tuned" (None: unknown, "prompt ranking")."""
    start = tick = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    suite = Suite(model, out, shots, draws, seed)
    stages: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal tick
        stages[name], tick = time.time() - tick, time.time()

    ev_df, sup_df, split_desc = _support_and_eval(data, split)
    ev = embed_rows(model, ev_df, progress, required=f"split {split!r}")
    sup = embed_rows(model, sup_df, progress) if sup_df is not None else None
    lap("preprocess + embed poses")
    suite.result.facts.update({
        "evaluated": f"{split_desc}; {len(ev.df)} poses, {ev.df['text'].nunique()} classes, "
                     f"{ev.df['signed_language'].nunique()} sign language(s)"
                     + (f"; {len(sup.df)} support poses" if sup is not None else ""),
        "model": f"{model.cfg.name}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, "
                 f"layout {model.cfg.pose.layout}, {len(model.cfg.signed_languages)} sign languages known",
    })
    suite.retrieval(ev, sup)
    lap("retrieval")
    suite.recognition(ev, sup, trained_classes)
    lap("recognition + language id")
    suite.iconicity(ev, sup)
    if plots:
        suite.plots(ev, log_csv)
    lap("iconicity + plots")
    suite.result.facts["time"] = (f"{time.time() - start:.0f} s on {torch.get_num_threads()} CPU thread(s) ("
                                  + ", ".join(f"{k} {v:.0f} s" for k, v in stages.items()) + ")")
    suite.result.facts["title"] = title
    return suite.result
