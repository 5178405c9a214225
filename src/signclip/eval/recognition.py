"""Recognition on frozen embeddings, as in the paper (SignCLIP §6.1-6.2, Table 5).

* prompt ranking (the paper's zero-shot, or fine-tuned when the model was trained on the classes): each
  pose ranks the prompts of a list of class names (``<spoken> <signed> class`` with the pose's own
  languages); a confusion matrix;
* few-shot: k examples per class drawn from the support set, ``StandardScaler`` + k-nearest
  neighbours with k = round(sqrt(N support)), over several random draws (mean ± std); the classes are
  ranked by their share of the neighbours' votes;
* linear probe: ``LogisticRegression(C=1)`` on the standardised embeddings of the whole support set;
  the classes are ranked by their predicted probability;
* sign-language identification: each pose ranks language-only prompts (``<en> <ase>``); top-1/top-5
  and a confusion matrix.

Every setting reports the paper's columns (:func:`recognition_metrics`): acc@1 (= R@1), R@5, R@10 and
the median rank of the correct class among the candidate classes, from one ranking
(:func:`signclip.eval.retrieval.pose_to_text`: ties broken by class order, a stable sort). The few-shot
and probe functions take any features, so the raw-keypoint baseline goes through exactly the same code.
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
from signclip.eval.retrieval import chance_ranking, pose_to_text
from signclip.models.signclip import SignCLIP

RANK_KS = (1, 5, 10)  # the paper's recognition columns: acc@1 (= R@1), R@5, R@10 (and the median rank)


@dataclass
class RankingResult:
    """Top-k accuracies of a ranking task, with its confusion matrix (rows true, columns predicted), the
    (N, C) scores and the (N,) true class indices (-1: not a candidate)."""

    metrics: dict[str, float]
    classes: list[str]
    confusion: np.ndarray  # (C, C) counts
    predictions: list[str] = field(default_factory=list)
    scores: np.ndarray | None = None
    labels: np.ndarray | None = None


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """scores (N, C), labels (N,) class indices (-1 = not a candidate, never correct) -> {"acc@k": ...}.

    Ties are broken by candidate order (a stable sort), as in every signclip ranking. Not scikit-learn's
    ``top_k_accuracy_score``: it breaks ties towards the later class and rejects 2-D scores of 2 classes."""
    ranked = pose_to_text(scores, labels, ks)
    return {f"acc@{k}": ranked[f"R@{k}"] for k in ks}


def _paper_columns(ranked: dict[str, float]) -> dict[str, float]:
    """{"R@1", "R@5", "R@10", "MedianR"} -> {"acc@1", "R@5", "R@10", "MedianR"}."""
    return {("acc@1" if k == "R@1" else k): v for k, v in ranked.items()}


def recognition_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The paper's recognition columns from (N, C) class scores and (N,) true class indices: acc@1 (= R@1),
    R@5, R@10 and MedianR, the median rank of the correct class (C + 1 when it is not a candidate)."""
    return _paper_columns(pose_to_text(scores, labels, RANK_KS))


def chance_recognition(n_classes: int) -> dict[str, float]:
    """:func:`recognition_metrics` of a random ranking of ``n_classes`` classes."""
    return _paper_columns(chance_ranking(n_classes, RANK_KS))


def ranking_result(scores: np.ndarray, labels: np.ndarray, classes: list[str], ks: Sequence[int],
                   prefix: str = "") -> RankingResult:
    pred = scores.argmax(1) if len(scores) else np.zeros(0, dtype=int)
    metrics = {f"{prefix}{k}": v for k, v in topk_accuracy(scores, labels, ks).items()}
    if prefix:  # "top-acc@1" -> "top-1"
        metrics = {f"{prefix}{k}": metrics[f"{prefix}acc@{k}"] for k in ks}
    known = labels >= 0  # rows whose true class is not a candidate have no row in the matrix
    confusion = (confusion_matrix(labels[known], pred[known], labels=range(len(classes))) if known.any()
                 else np.zeros((len(classes), len(classes)), dtype=np.int64))
    return RankingResult(metrics, classes, confusion, [classes[i] for i in pred], scores, labels)


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


def encode_labels(train_y: Sequence, test_y: Sequence) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The candidate classes (sorted labels of both sets) and each label's index among them."""
    classes = sorted(set(map(str, train_y)) | set(map(str, test_y)))
    index = {c: i for i, c in enumerate(classes)}
    return classes, np.array([index[str(y)] for y in train_y]), np.array([index[str(y)] for y in test_y])


def sample_shots(labels: np.ndarray, shots: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of up to ``shots`` examples of each class (all of a class with fewer)."""
    picked = [rng.permutation(np.flatnonzero(labels == c))[:shots] for c in np.unique(labels)]
    return np.sort(np.concatenate(picked))


def shots_note(train_y: Sequence, classes: Sequence[str], shots: int) -> str | None:
    """"10-shot asked; 7 classes have fewer than 10 support examples (min 3)" when some candidate class
    (classes absent from the support set count with 0) has fewer than ``shots`` examples; else None."""
    counts = pd.Series([str(y) for y in train_y]).value_counts().reindex([str(c) for c in classes], fill_value=0)
    short = counts[counts < shots]
    if short.empty:
        return None
    many = f"{len(short)} classes have" if len(short) > 1 else "1 class has"
    return f"{shots}-shot asked; {many} fewer than {shots} support examples (min {int(short.min())})"


def knn_k(support: int) -> int:
    """The paper's k of the kNN: round(sqrt(N support))."""
    return max(1, min(support, round(np.sqrt(support))))


def knn_scores(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, n_classes: int) -> np.ndarray:
    """StandardScaler (fit on the support set) + kNN with k = round(sqrt(N support)): (M, C) each class's
    share of the votes of a test pose's k neighbours. ``train_y`` are class indices < ``n_classes``; a class
    without votes scores 0. Its best class (ties: the earlier class) is scikit-learn's prediction."""
    scaler = StandardScaler().fit(train_x)
    with warnings.catch_warnings():  # few examples per class: sklearn warns "could be regression"
        warnings.simplefilter("ignore", UserWarning)
        knn = KNeighborsClassifier(n_neighbors=knn_k(len(train_x))).fit(scaler.transform(train_x), train_y)
    scores = np.zeros((len(test_x), n_classes))
    scores[:, knn.classes_] = knn.predict_proba(scaler.transform(test_x))  # (M, classes of the support set)
    return scores


def few_shot_knn(train_x: np.ndarray, train_y: Sequence, test_x: np.ndarray, test_y: Sequence, shots: int = 10,
                 draws: int = 5, seed: int = 0) -> dict[str, float]:
    """k-shot kNN over ``draws`` random draws of the support set: train_x (N, F), test_x (M, F).

    Each draw ranks the candidate classes (the labels of both sets) by :func:`knn_scores`; the metrics of
    :func:`recognition_metrics` are the means over draws, with the std of acc@1 and the kNN's k."""
    classes, ytr, yte = encode_labels(train_y, test_y)
    rng = np.random.default_rng(seed)
    runs, k = [], 1
    for _ in range(draws):
        idx = sample_shots(ytr, shots, rng)
        runs.append(recognition_metrics(knn_scores(train_x[idx], ytr[idx], test_x, len(classes)), yte))
        k = knn_k(len(idx))
    out = {m: float(np.mean([r[m] for r in runs])) for m in runs[0]}
    return {**out, "acc@1 std": float(np.std([r["acc@1"] for r in runs])), "kNN k": k}


def probe_scores(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, n_classes: int, C: float = 1.0,
                 max_iter: int = 100) -> np.ndarray:
    """(M, C) class probabilities of a logistic regression (C=1, scikit-learn's default 100 L-BFGS iterations,
    as the paper) on standardised features; classes absent from the support set score 0."""
    scores = np.zeros((len(test_x), n_classes))
    present = np.unique(train_y)
    if len(present) < 2:
        scores[:, present] = 1.0
        return scores
    scaler = StandardScaler().fit(train_x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        clf = LogisticRegression(C=C, max_iter=max_iter).fit(scaler.transform(train_x), train_y)
    scores[:, clf.classes_] = clf.predict_proba(scaler.transform(test_x))
    return scores


def linear_probe(train_x: np.ndarray, train_y: Sequence, test_x: np.ndarray, test_y: Sequence, C: float = 1.0,
                 max_iter: int = 100) -> dict[str, float]:
    """Linear probe on frozen features: :func:`probe_scores` trained on the whole support set ranks the
    candidate classes (the labels of both sets) -> :func:`recognition_metrics`."""
    classes, ytr, yte = encode_labels(train_y, test_y)
    return recognition_metrics(probe_scores(train_x, ytr, test_x, len(classes), C, max_iter), yte)
