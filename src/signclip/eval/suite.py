"""The whole evaluation of a model on one split of a dataset, with baselines side by side.

:func:`run_suite` embeds the poses of the evaluated split (and of the training split, the support set
for few-shot and linear probes) once, then computes

* retrieval (pose→text R@k, text→pose P@k) — model, raw-keypoint baseline, chance;
* zero-shot isolated sign recognition acc@1/@5 — model, chance;
* sign-language identification top-1/top-5 — model, chance;
* few-shot kNN (mean ± std over draws) and linear probe, for each label column (the text and, with
  several sign languages, the sign language) — model embeddings, raw-keypoint features, chance;
* iconicity ranking, t-SNE (and UMAP) plots, a similarity heat-map, confusion matrices, training curve.

Figures are written as PNG files into ``out_dir``; :mod:`signclip.eval.html_report` turns the result
into one self-contained HTML file plus ``metrics.json``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from signclip.data.datasets import load_arrays
from signclip.eval import analysis, recognition
from signclip.eval.baselines import keypoint_baseline_metrics, keypoint_features
from signclip.eval.retrieval import chance_metrics, retrieval_metrics, unique_texts
from signclip.models.signclip import SignCLIP
from signclip.train import make_prompts_for

MODEL, KEYPOINTS, CHANCE = "signclip", "raw-keypoint baseline", "chance"


@dataclass
class EvalResult:
    """Metrics (JSON-able: section -> system -> metric -> value), tables, figure paths and facts."""

    metrics: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)
    facts: dict[str, str] = field(default_factory=dict)


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


def _label_columns(ev: pd.DataFrame, sup: pd.DataFrame | None) -> list[str]:
    cols = ["text"]
    if ev["signed_language"].notna().any() and ev["signed_language"].nunique() > 1:
        cols.append("signed_language")
    return cols


def _colour_labels(ev: pd.DataFrame, max_classes: int = 20) -> tuple[str, list[str]]:
    """Colour plots by sign language when there are several, else by the (most frequent) classes."""
    if ev["signed_language"].notna().any() and ev["signed_language"].nunique() > 1:
        return "signed_language", ev["signed_language"].astype(str).tolist()
    top = set(ev["text"].value_counts().index[:max_classes])
    return "text", [t if t in top else "other" for t in ev["text"].astype(str)]


def run_suite(model: SignCLIP, data: pd.DataFrame, out_dir: str | Path, split: str = "test", shots: int = 10,
              draws: int = 5, seed: int = 0, log_csv: str | Path | None = None, progress: bool = False,
              plots: bool = True, title: str = "signclip evaluation",
              ) -> EvalResult:
    """Evaluate ``model`` on ``data[data.split == split]`` (``split="all"``: every row); write figures to
    ``out_dir``. ``data`` is a dataset table (e.g. RUN/splits.csv); rows of the ``train`` split are the
    support set of the few-shot kNN, the linear probe and the raw-keypoint baseline."""
    start = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res = EvalResult()
    stages: dict[str, float] = {}
    tick = time.time()

    def lap(name: str) -> None:
        nonlocal tick
        stages[name] = time.time() - tick
        tick = time.time()

    ev_df, sup_df, split_desc = _support_and_eval(data, split)
    ev_arrays, ev_df, _ = load_arrays(ev_df, model.cfg.pose, progress=progress)
    if not ev_arrays:
        raise ValueError(f"split {split!r}: no usable pose")
    ev_emb = model._encode_arrays(ev_arrays, 64, True, progress)  # (N, E)
    sup_arrays, sup_emb = [], None
    if sup_df is not None:
        sup_arrays, sup_df, _ = load_arrays(sup_df, model.cfg.pose, progress=progress)
        sup_emb = model._encode_arrays(sup_arrays, 64, True, progress) if sup_arrays else None  # (S, E)
        if sup_emb is None:
            sup_df = None
    lap("preprocess + embed poses")
    n_lang = ev_df["signed_language"].nunique()
    res.facts.update({
        "evaluated": f"{split_desc}; {len(ev_df)} poses, {ev_df['text'].nunique()} classes, "
                     f"{n_lang} sign language(s)" + (f"; {len(sup_df)} support poses" if sup_df is not None else ""),
        "model": f"{model.cfg.name}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, "
                 f"layout {model.cfg.pose.layout}, {len(model.cfg.signed_languages)} sign languages known",
    })

    # retrieval ------------------------------------------------------------------------------------
    prompts = make_prompts_for(model, ev_df)
    texts, index = unique_texts(prompts)
    text_emb = model.encode_text(texts, progress=False)  # (M, E)
    sec = {MODEL: retrieval_metrics(ev_emb, text_emb, index)}
    if sup_df is not None:
        sec[KEYPOINTS] = keypoint_baseline_metrics(sup_arrays, sup_df, ev_arrays, ev_df, prompts)
    sec[CHANCE] = chance_metrics(index)
    res.metrics["retrieval"] = sec
    lap("retrieval")

    # zero-shot recognition --------------------------------------------------------------------------
    zs = recognition.zero_shot_recognition(model, ev_emb, ev_df)
    c = len(zs.classes)
    res.metrics["zero_shot_recognition"] = {MODEL: zs.metrics, CHANCE: {"acc@1": min(1, 1 / c), "acc@5": min(1, 5 / c)}}

    # sign-language identification ---------------------------------------------------------------------
    lid = None
    known = [g for g in model.cfg.signed_languages]
    if ev_df["signed_language"].notna().all() and known:
        spoken = recognition.spoken_for_signed(pd.concat([d for d in (sup_df, ev_df) if d is not None]))
        lid = recognition.language_identification(model, ev_emb, ev_df["signed_language"].astype(str).tolist(),
                                                  known, spoken)
        n = len(known)
        res.metrics["language_identification"] = {MODEL: lid.metrics,
                                                  CHANCE: {"top-1": min(1, 1 / n), "top-5": min(1, 5 / n)}}

    lap("zero-shot + language id")

    # few-shot kNN and linear probe, with the raw-keypoint baseline through the same code --------------
    if sup_df is not None:
        ev_kp, sup_kp = keypoint_features(ev_arrays), keypoint_features(sup_arrays)  # (N, F), (S, F)
        for col in _label_columns(ev_df, sup_df):
            ytr, yte = sup_df[col].astype(str).to_numpy(), ev_df[col].astype(str).to_numpy()
            chance = 1 / max(1, len(set(ytr) | set(yte)))
            fs = {name: recognition.few_shot_knn(x_tr, ytr, x_te, yte, shots, draws, seed)
                  for name, x_tr, x_te in ((MODEL, sup_emb, ev_emb), (KEYPOINTS, sup_kp, ev_kp))}
            res.metrics[f"few_shot/{col}"] = {**{k: {f"{shots}-shot acc (mean)": v["mean"],
                                                       f"{shots}-shot acc (std)": v["std"], "kNN k": v["k"]}
                                                   for k, v in fs.items()},
                                                CHANCE: {f"{shots}-shot acc (mean)": chance}}
            res.metrics[f"linear_probe/{col}"] = {
                MODEL: {"accuracy": recognition.linear_probe(sup_emb, ytr, ev_emb, yte)},
                KEYPOINTS: {"accuracy": recognition.linear_probe(sup_kp, ytr, ev_kp, yte)},
                CHANCE: {"accuracy": chance}}
            unseen = float(np.mean(~np.isin(yte, ytr)))
            if unseen:
                res.facts[f"labels '{col}'"] = f"{unseen:.0%} of evaluated poses have a label absent from the support set"

    lap("few-shot + probe")

    # iconicity over every embedded pose -----------------------------------------------------------------
    all_df = pd.concat([d for d in (ev_df, sup_df) if d is not None], ignore_index=True)
    all_emb = np.concatenate([e for e in (ev_emb, sup_emb) if e is not None])
    if all_df["signed_language"].nunique() > 1:
        ranking = analysis.iconicity_ranking(all_emb, all_df["text"].astype(str), all_df["signed_language"].astype(str))
        res.tables["iconicity"] = ranking
        res.metrics["iconicity"] = {MODEL: {"concepts ranked": float(len(ranking))}}

    if plots:
        _plots(model, res, out, ev_df, ev_emb, text_emb, texts, zs, lid, log_csv, seed)
    lap("iconicity + plots")
    res.facts["time"] = (f"{time.time() - start:.0f} s on {torch.get_num_threads()} CPU thread(s) ("
                         + ", ".join(f"{k} {v:.0f} s" for k, v in stages.items()) + ")")
    res.facts["title"] = title
    return res


def _plots(model: SignCLIP, res: EvalResult, out: Path, ev_df: pd.DataFrame, ev_emb: np.ndarray,
           text_emb: np.ndarray, texts: list[str], zs: recognition.RankingResult,
           lid: recognition.RankingResult | None, log_csv: str | Path | None, seed: int) -> None:
    colour_by, labels = _colour_labels(ev_df)
    # text prompts coloured like their poses: the label of the first pose with that prompt
    _, index = unique_texts(make_prompts_for(model, ev_df))
    text_labels = [labels[int(np.flatnonzero(index == j)[0])] for j in range(len(texts))]
    both = np.concatenate([ev_emb, text_emb])  # (N + M, E)
    methods = ["tsne"] + (["umap"] if analysis.umap_available() else [])
    for method in methods:
        pts = analysis.project_2d(both, method, seed)
        res.figures[f"{method}_pose_text"] = analysis.plot_embedding_2d(
            pts, labels + text_labels, out / f"{method}_pose_text.png",
            f"{method.upper()} of pose (o) and text (x) embeddings by {colour_by}",
            markers=["o"] * len(ev_emb) + ["x"] * len(text_emb))
    # similarity heat-map: mean similarity of each group's poses to each group's prompts
    if colour_by == "signed_language" and lid is not None:
        langs = sorted(set(labels))
        spoken = recognition.spoken_for_signed(ev_df)
        lang_emb = model.encode_text([""] * len(langs), [spoken.get(g) for g in langs], langs, progress=False)
        sim, rows = analysis.similarity_matrix(ev_emb, labels, lang_emb)
        cols = langs
        title = "mean similarity: poses by sign language × language prompts"
    else:
        classes = sorted(set(labels) - {"other"})
        first = {c: ev_df.index[ev_df["text"].astype(str) == c][0] for c in classes}
        cls_emb = model.encode_text(classes, [_na(ev_df.at[first[c], "spoken_language"]) for c in classes],
                                    [_na(ev_df.at[first[c], "signed_language"]) for c in classes], progress=False)
        keep = [i for i, v in enumerate(labels) if v != "other"]
        sim, rows = analysis.similarity_matrix(ev_emb[keep], [labels[i] for i in keep], cls_emb)
        cols = classes
        title = "mean similarity: poses by class × class prompts"
    res.figures["similarity"] = analysis.plot_heatmap(sim, rows, cols, out / "similarity.png", title,
                                                      xlabel="prompt", ylabel="poses")
    res.figures["confusion_zero_shot"] = analysis.plot_confusion(
        zs.confusion, zs.classes, out / "confusion_zero_shot.png", "zero-shot recognition (row-normalised)")
    if lid is not None:
        used = [i for i, g in enumerate(lid.classes) if lid.confusion[i].sum() or lid.confusion[:, i].sum()]
        res.figures["confusion_language_id"] = analysis.plot_confusion(
            lid.confusion[np.ix_(used, used)], [lid.classes[i] for i in used], out / "confusion_language_id.png",
            "sign-language identification (row-normalised)")
    if "iconicity" in res.tables and len(res.tables["iconicity"]):
        res.figures["iconicity"] = analysis.plot_iconicity(res.tables["iconicity"], out / "iconicity.png")
    if log_csv is not None and Path(log_csv).exists():
        from signclip.report import plot_training_curves

        res.figures["training_curve"] = plot_training_curves(log_csv, out / "training_curve.png")


def _na(v) -> str | None:
    return None if pd.isna(v) else str(v)

