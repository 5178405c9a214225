"""Recognition on frozen embeddings, as in the paper (SignCLIP §6.1-6.2).

* zero-shot isolated sign recognition: each pose ranks the prompts of a list of class names
  (``<spoken> <signed> class`` with the pose's own languages); accuracy@1/@5 and a confusion matrix;
* few-shot: k examples per class drawn from the support set, ``StandardScaler`` + k-nearest
  neighbours with k = round(sqrt(N support)), over several random draws (mean ± std);
* linear probe: ``LogisticRegression(C=1)`` on the standardised embeddings of the whole support set;
* sign-language identification: each pose ranks language-only prompts (``<en> <ase>``); top-1/top-5
  and a confusion matrix.

The few-shot and probe functions take any features, so the raw-keypoint baseline goes through
exactly the same code.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from signclip.data.manifests import optional_column
from signclip.models.signclip import SignCLIP


@dataclass
class RankingResult:
    """Top-k accuracies of a ranking task, with its confusion matrix (rows true, columns predicted)."""

    metrics: dict[str, float]
    classes: list[str]
    confusion: np.ndarray  # (C, C) counts
    predictions: list[str] = field(default_factory=list)


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """scores (N, C), labels (N,) class indices (-1 = not a candidate, never correct) -> {"acc@k": ...}.

    Ties are broken by candidate order (a stable sort), as in every signclip ranking. Not scikit-learn's
    ``top_k_accuracy_score``: it breaks ties towards the later class and rejects 2-D scores of 2 classes."""
    order = np.argsort(-scores, axis=1, kind="stable")  # (N, C) best first
    hit = order == labels[:, None]  # (N, C)
    return {f"acc@{k}": float(hit[:, :k].any(1).mean()) if len(labels) else 0.0 for k in ks}


def ranking_result(scores: np.ndarray, labels: np.ndarray, classes: list[str], ks: Sequence[int],
                    prefix: str = "") -> RankingResult:
    pred = scores.argmax(1) if len(scores) else np.zeros(0, dtype=int)
    metrics = {f"{prefix}{k}": v for k, v in topk_accuracy(scores, labels, ks).items()}
    if prefix:  # "top-acc@1" -> "top-1"
        metrics = {f"{prefix}{k}": metrics[f"{prefix}acc@{k}"] for k in ks}
    known = labels >= 0  # rows whose true class is not a candidate have no row in the matrix
    confusion = (confusion_matrix(labels[known], pred[known], labels=range(len(classes))) if known.any()
                 else np.zeros((len(classes), len(classes)), dtype=np.int64))
    return RankingResult(metrics, classes, confusion, [classes[i] for i in pred])


def zero_shot_scores(model: SignCLIP, pose_emb: np.ndarray, classes: Sequence[str],
                     spoken: Sequence[str | None], signed: Sequence[str | None], batch_size: int = 64) -> np.ndarray:
    """(N, C) cosine similarities of each pose (N, E) to the class prompts in that pose's languages."""
    scores = np.zeros((len(pose_emb), len(classes)), dtype=np.float32)
    pairs: dict[tuple[str | None, str | None], list[int]] = {}
    for i, key in enumerate(zip(spoken, signed)):
        pairs.setdefault(key, []).append(i)
    for (sp, sg), idx in pairs.items():
        text_emb = model.encode_text(list(classes), sp, sg, batch_size=batch_size, progress=False)  # (C, E)
        scores[idx] = pose_emb[idx] @ text_emb.T
    return scores


def zero_shot_recognition(model: SignCLIP, pose_emb: np.ndarray, df: pd.DataFrame,
                          classes: Sequence[str] | None = None, ks: Sequence[int] = (1, 5)) -> RankingResult:
    """Zero-shot isolated sign recognition of the poses of ``df`` (columns text, spoken_language,
    signed_language) against ``classes`` (default: the unique texts of ``df``)."""
    classes = sorted(df["text"].astype(str).unique()) if classes is None else [str(c) for c in classes]
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index.get(t, -1) for t in df["text"].astype(str)])
    scores = zero_shot_scores(model, pose_emb, classes, optional_column(df, "spoken_language"),
                              optional_column(df, "signed_language"))
    return ranking_result(scores, labels, classes, ks, prefix="")


def spoken_for_signed(df: pd.DataFrame) -> dict[str, str | None]:
    """Each signed language's most frequent spoken language in ``df`` (None when there is none)."""
    out: dict[str, str | None] = {}
    for sg, rows in df.groupby(df["signed_language"].astype(str)):
        sp = rows["spoken_language"].dropna().astype(str)
        out[str(sg)] = sp.value_counts().index[0] if len(sp) else None
    return out


def language_identification(model: SignCLIP, pose_emb: np.ndarray, true_signed: Sequence[str],
                            languages: Sequence[str] | None = None,
                            spoken: Mapping[str, str | None] | str | None = None,
                            ks: Sequence[int] = (1, 5)) -> RankingResult:
    """Rank the text-free prompts ``<spoken> <signed>`` of ``languages`` (default: the model's signed
    languages) for each pose (N, E). ``spoken`` gives the spoken language of each signed one (a
    mapping, e.g. from :func:`spoken_for_signed`, or one code for all)."""
    languages = list(languages if languages is not None else model.cfg.signed_languages)
    if isinstance(spoken, Mapping):
        sp = [spoken.get(g) for g in languages]
    else:
        sp = [spoken] * len(languages)
    text_emb = model.encode_text([""] * len(languages), sp, languages, progress=False)  # (L, E)
    index = {g: i for i, g in enumerate(languages)}
    labels = np.array([index.get(str(g), -1) for g in true_signed])
    return ranking_result(pose_emb @ text_emb.T, labels, languages, ks, prefix="top-")


def _encode_labels(train_y: Sequence, test_y: Sequence) -> tuple[np.ndarray, np.ndarray]:
    classes = {c: i for i, c in enumerate(sorted(set(map(str, train_y)) | set(map(str, test_y))))}
    return np.array([classes[str(y)] for y in train_y]), np.array([classes[str(y)] for y in test_y])


def sample_shots(labels: np.ndarray, shots: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of up to ``shots`` examples of each class (all of a class with fewer)."""
    picked = [rng.permutation(np.flatnonzero(labels == c))[:shots] for c in np.unique(labels)]
    return np.sort(np.concatenate(picked))


def knn_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float:
    """StandardScaler (fit on the support set) + kNN with k = round(sqrt(N support)) -> accuracy."""
    scaler = StandardScaler().fit(train_x)
    k = max(1, min(len(train_x), round(np.sqrt(len(train_x)))))
    with warnings.catch_warnings():  # few examples per class: sklearn warns "could be regression"
        warnings.simplefilter("ignore", UserWarning)
        knn = KNeighborsClassifier(n_neighbors=k).fit(scaler.transform(train_x), train_y)
    return float((knn.predict(scaler.transform(test_x)) == test_y).mean())


def few_shot_knn(train_x: np.ndarray, train_y: Sequence, test_x: np.ndarray, test_y: Sequence, shots: int = 10,
                 draws: int = 5, seed: int = 0) -> dict[str, float]:
    """k-shot kNN over ``draws`` random draws of the support set: train_x (N, F), test_x (M, F)."""
    ytr, yte = _encode_labels(train_y, test_y)
    rng = np.random.default_rng(seed)
    accs, support = [], 0
    for _ in range(draws):
        idx = sample_shots(ytr, shots, rng)
        accs.append(knn_accuracy(train_x[idx], ytr[idx], test_x, yte))
        support = len(idx)
    return {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "draws": draws, "shots": shots,
            "support": support, "k": max(1, round(np.sqrt(support)))}


def linear_probe(train_x: np.ndarray, train_y: Sequence, test_x: np.ndarray, test_y: Sequence, C: float = 1.0,
                 max_iter: int = 100) -> float:
    """Accuracy of a logistic regression (C=1, scikit-learn's default 100 L-BFGS iterations, as the paper)
    on standardised frozen features."""
    ytr, yte = _encode_labels(train_y, test_y)
    if len(np.unique(ytr)) < 2:
        return float((yte == ytr[0]).mean())
    scaler = StandardScaler().fit(train_x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        clf = LogisticRegression(C=C, max_iter=max_iter).fit(scaler.transform(train_x), ytr)
    return float((clf.predict(scaler.transform(test_x)) == yte).mean())
