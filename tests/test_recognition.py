"""Recognition metrics against naive implementations, and zero-shot / language ID on real lexicon poses."""
from __future__ import annotations

import numpy as np
import pytest

from signclip.eval import recognition as rec


def naive_topk(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    hits = 0
    for s, y in zip(scores, labels):
        order = sorted(range(len(s)), key=lambda j: (-s[j], j))  # stable: earlier candidate wins ties
        hits += y in order[:k]
    return hits / len(labels)


def test_topk_accuracy_matches_naive():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(50, 7)).astype(float)  # many ties
    labels = rng.integers(0, 7, size=50)
    got = rec.topk_accuracy(scores, labels, ks=(1, 2, 5))
    for k in (1, 2, 5):
        assert got[f"acc@{k}"] == pytest.approx(naive_topk(scores, labels, k))
    # hand-made: pose 0 correct at rank 1, pose 1 at rank 3, pose 2 never a candidate
    s = np.array([[0.9, 0.1, 0.0], [0.5, 0.7, 0.1], [0.2, 0.3, 0.4]])
    assert rec.topk_accuracy(s, np.array([0, 2, -1]), ks=(1, 3)) == {"acc@1": 1 / 3, "acc@3": 2 / 3}


def confusion_matrix(true, pred, n_classes):
    """The confusion matrix of a ranking whose best candidate is ``pred``."""
    scores = np.eye(n_classes)[pred]  # (N, C)
    return rec.ranking_result(scores, true, [str(c) for c in range(n_classes)], (1,)).confusion


def test_confusion_matrix_matches_naive():
    rng = np.random.default_rng(1)
    true, pred = rng.integers(0, 5, 40), rng.integers(0, 5, 40)
    cm = confusion_matrix(true, pred, 5)
    naive = np.zeros((5, 5), int)
    for t, p in zip(true, pred):
        naive[t, p] += 1
    np.testing.assert_array_equal(cm, naive)
    assert confusion_matrix(np.array([-1, 1]), np.array([0, 0]), 2).tolist() == [[0, 0], [1, 0]]


def naive_knn(train_x, train_y, test_x, k):
    mu, sd = train_x.mean(0), train_x.std(0)
    sd[sd == 0] = 1
    a, b = (train_x - mu) / sd, (test_x - mu) / sd
    out = []
    for q in b:
        near = np.argsort(((a - q) ** 2).sum(1), kind="stable")[:k]
        out.append(np.bincount(train_y[near], minlength=train_y.max() + 1).argmax())  # ties: smallest label
    return np.array(out)


def test_knn_matches_naive_and_uses_sqrt_n():
    rng = np.random.default_rng(2)
    train_x, test_x = rng.normal(size=(30, 4)), rng.normal(size=(20, 4))
    train_y, test_y = rng.integers(0, 3, 30), rng.integers(0, 3, 20)
    k = round(np.sqrt(30))  # 5
    expected = float((naive_knn(train_x, train_y, test_x, k) == test_y).mean())
    assert rec.knn_accuracy(train_x, train_y, test_x, test_y) == pytest.approx(expected)


def test_sample_shots_and_few_shot_draws():
    labels = np.array([0] * 12 + [1] * 3 + [2] * 10)
    idx = rec.sample_shots(labels, 10, np.random.default_rng(0))
    assert np.bincount(labels[idx]).tolist() == [10, 3, 10]
    # two well separated clusters: every draw is perfect
    rng = np.random.default_rng(3)
    centers = np.array([[5.0, 0.0], [-5.0, 0.0]])
    train_y = np.array(["a", "b"] * 20)
    train_x = centers[(train_y == "b").astype(int)] + rng.normal(scale=0.3, size=(40, 2))
    test_y = np.array(["b", "a"] * 5)
    test_x = centers[(test_y == "b").astype(int)] + rng.normal(scale=0.3, size=(10, 2))
    out = rec.few_shot_knn(train_x, train_y, test_x, test_y, shots=4, draws=3)
    assert out["mean"] == 1.0 and out["std"] == 0.0 and out["support"] == 8 and out["k"] == 3
    assert rec.linear_probe(train_x, train_y, test_x, test_y) == 1.0
    assert rec.linear_probe(train_x, train_y, test_x, test_y[::-1][:10]) == 0.0  # labels swapped


@pytest.fixture(scope="module")
def lexicon_sample(lexicon):
    """24 lexicon poses: letters A, B, C in 8 sign languages."""
    return lexicon[lexicon["text"].isin(["A", "B", "C"])].head(24).reset_index(drop=True)


@pytest.fixture(scope="module")
def sample_embeddings(tiny_model, lexicon_sample):
    return tiny_model, tiny_model.encode_pose(lexicon_sample["path"].tolist())


def test_zero_shot_recognition_on_lexicon(sample_embeddings, lexicon_sample):
    model, emb = sample_embeddings
    res = rec.zero_shot_recognition(model, emb, lexicon_sample, classes=["A", "B", "C", "D"])
    # naive: each pose against its own prompts, one text at a time
    correct1 = correct2 = 0
    cache: dict[str, np.ndarray] = {}
    for e, row in zip(emb, lexicon_sample.itertuples()):
        if row.signed_language not in cache:
            cache[row.signed_language] = np.stack([model.encode_text(c, row.spoken_language, row.signed_language)
                                                   for c in "ABCD"])
        t = cache[row.signed_language]
        order = np.argsort(-(t @ e), kind="stable")
        correct1 += "ABCD"[order[0]] == row.text
        correct2 += row.text in ["ABCD"[j] for j in order[:2]]
    got = rec.zero_shot_recognition(model, emb, lexicon_sample, classes=list("ABCD"), ks=(1, 2))
    assert got.metrics["acc@1"] == pytest.approx(correct1 / len(emb), abs=1e-9)
    assert got.metrics["acc@2"] == pytest.approx(correct2 / len(emb), abs=1e-9)
    assert res.confusion.shape == (4, 4) and res.confusion.sum() == len(emb) and res.confusion[3].sum() == 0
    assert res.metrics["acc@5"] == 1.0  # 4 classes


def test_language_identification_on_lexicon(sample_embeddings, lexicon_sample):
    model, emb = sample_embeddings
    spoken = rec.spoken_for_signed(lexicon_sample)
    assert spoken["gsg"] == "de" and spoken["ase"] == "en"
    langs = sorted(lexicon_sample["signed_language"].unique())
    res = rec.language_identification(model, emb, lexicon_sample["signed_language"].tolist(), langs, spoken)
    prompts = model.encode_text([""] * len(langs), [spoken[g] for g in langs], langs)  # "<de> <gsg>" ...
    assert model.prompts([""], "de", "gsg") == ["<de> <gsg>"]
    pred = np.array(langs)[(emb @ prompts.T).argmax(1)]
    assert res.metrics["top-1"] == pytest.approx(float((pred == lexicon_sample["signed_language"]).mean()))
    assert res.predictions == pred.tolist()
    assert res.metrics["top-5"] >= res.metrics["top-1"] and res.confusion.sum() == len(emb)
