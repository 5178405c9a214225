"""Recognition metrics (acc@1, R@k, median rank of zero-shot, kNN and probe rankings) against naive
implementations, and zero-shot / language ID on real lexicon poses."""
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


def naive_ranks(scores, labels):
    """1-based rank of each row's true class (ties: the earlier class first; -1: after every class)."""
    ranks = []
    for s, y in zip(scores, labels):
        order = sorted(range(len(s)), key=lambda j: (-s[j], j))
        ranks.append(order.index(y) + 1 if y >= 0 else len(s) + 1)
    return np.array(ranks)


def naive_columns(scores, labels):
    """The paper's recognition columns, the slow way."""
    ranks = naive_ranks(scores, labels)
    return {"acc@1": float(np.mean(ranks <= 1)), "R@5": float(np.mean(ranks <= 5)),
            "R@10": float(np.mean(ranks <= 10)), "MedianR": float(np.median(ranks))}


def test_recognition_metrics_match_naive():
    rng = np.random.default_rng(4)
    scores = rng.integers(0, 3, size=(60, 12)).astype(float)  # many ties
    labels = rng.integers(-1, 12, size=60)  # -1: the true class is not a candidate
    got = rec.recognition_metrics(scores, labels)
    assert list(got) == ["acc@1", "R@5", "R@10", "MedianR"]
    assert got == pytest.approx(naive_columns(scores, labels))
    assert rec.recognition_metrics(scores, labels)["acc@1"] == rec.topk_accuracy(scores, labels, (1,))["acc@1"]
    # pose 0 right at rank 1, pose 1 at rank 3, pose 2's class is not a candidate (rank 4 of 3)
    s = np.array([[0.9, 0.1, 0.0], [0.5, 0.7, 0.1], [0.2, 0.3, 0.4]])
    assert rec.recognition_metrics(s, np.array([0, 2, -1])) == {"acc@1": 1 / 3, "R@5": 2 / 3, "R@10": 2 / 3,
                                                                "MedianR": 3.0}
    assert rec.chance_recognition(4) == {"acc@1": 0.25, "R@5": 1.0, "R@10": 1.0, "MedianR": 2.5}


def naive_knn_votes(train_x, train_y, test_x, k, n_classes):
    """Each class's share of the k nearest (standardised, Euclidean) support examples."""
    mu, sd = train_x.mean(0), train_x.std(0)
    sd[sd == 0] = 1
    a, b = (train_x - mu) / sd, (test_x - mu) / sd
    votes = np.zeros((len(test_x), n_classes))
    for i, q in enumerate(b):
        for j in np.argsort(((a - q) ** 2).sum(1), kind="stable")[:k]:
            votes[i, train_y[j]] += 1 / k
    return votes


def test_knn_scores_match_naive_and_use_sqrt_n():
    rng = np.random.default_rng(2)
    train_x, test_x = rng.normal(size=(30, 4)), rng.normal(size=(20, 4))
    train_y, test_y = rng.integers(0, 3, 30), rng.integers(0, 4, 20)  # class 3: never in the support set
    k = round(np.sqrt(30))  # 5
    votes = naive_knn_votes(train_x, train_y, test_x, k, 4)
    got = rec.knn_scores(train_x, train_y, test_x, 4)
    np.testing.assert_allclose(got, votes)
    # the best class is scikit-learn's prediction: the most votes, ties to the earlier class
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(train_x)
    pred = KNeighborsClassifier(n_neighbors=k).fit(sc.transform(train_x), train_y).predict(sc.transform(test_x))
    np.testing.assert_array_equal(got.argmax(1), pred)
    # few_shot_knn with every support example drawn (shots >= class sizes): one ranking by the votes
    out = rec.few_shot_knn(train_x, [f"c{y}" for y in train_y], test_x, [f"c{y}" for y in test_y], shots=30, draws=2)
    assert out == pytest.approx({**naive_columns(votes, test_y), "acc@1 std": 0.0, "kNN k": k})


def test_linear_probe_ranking_matches_naive():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(5)
    centers = rng.normal(scale=2.0, size=(12, 6))
    train_y = np.repeat(np.arange(11), 4)  # class 11: evaluated only
    train_x = centers[train_y] + rng.normal(size=(44, 6))
    test_y = rng.integers(0, 12, 40)
    test_x = centers[test_y] + rng.normal(size=(40, 6))
    sc = StandardScaler().fit(train_x)
    proba = LogisticRegression(C=1.0).fit(sc.transform(train_x), train_y).predict_proba(sc.transform(test_x))
    naive = np.concatenate([proba, np.zeros((40, 1))], axis=1)  # the absent class has probability 0
    names = [f"{y:02d}" for y in range(12)]  # sorted like the classes
    got = rec.linear_probe(train_x, [names[y] for y in train_y], test_x, [names[y] for y in test_y])
    assert got == pytest.approx(naive_columns(naive, test_y))
    assert got["R@10"] < 1.0 and got["MedianR"] >= 1.0  # 12 classes: R@10 is not trivially 1
    # one class in the support set: it is always first
    one = rec.probe_scores(train_x[:4], np.zeros(4, int), test_x, 3)
    assert one[:, 0].tolist() == [1.0] * 40 and not one[:, 1:].any()


def test_shots_note():
    train_y = ["a"] * 12 + ["b"] * 3 + ["c"] * 7
    assert rec.shots_note(train_y, ["a", "b", "c"], 10) == \
        "10-shot asked; 2 classes have fewer than 10 support examples (min 3)"
    assert rec.shots_note(train_y, ["a", "b", "c", "d"], 5) == \
        "5-shot asked; 2 classes have fewer than 5 support examples (min 0)"  # d: evaluated, no support
    assert rec.shots_note(train_y, ["a"], 10) is None
    assert rec.shots_note(train_y, ["a", "c"], 10) == \
        "10-shot asked; 1 class has fewer than 10 support examples (min 7)"


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
    assert out["acc@1"] == 1.0 and out["acc@1 std"] == 0.0 and out["MedianR"] == 1.0
    assert out["kNN k"] == 3  # round(sqrt(2 classes x 4 shots))
    assert rec.linear_probe(train_x, train_y, test_x, test_y)["acc@1"] == 1.0
    swapped = rec.linear_probe(train_x, train_y, test_x, test_y[::-1][:10])  # labels swapped
    assert swapped["acc@1"] == 0.0 and swapped["MedianR"] == 2.0


@pytest.fixture(scope="module")
def lexicon_sample(lexicon):
    """24 lexicon poses: letters A, B, C in 8 sign languages."""
    return lexicon[lexicon["text"].isin(["A", "B", "C"])].head(24).reset_index(drop=True)


@pytest.fixture(scope="module")
def sample_embeddings(tiny_model, lexicon_sample):
    return tiny_model, tiny_model.encode_pose(lexicon_sample["path"].tolist())


@pytest.mark.slow  # the naive reference embeds one prompt at a time
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
