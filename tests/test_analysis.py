"""Iconicity ranking against a naive computation, and the plots (real PNG files)."""
from __future__ import annotations

import numpy as np
import pytest

from signclip.eval import analysis


def test_concept_spread_matches_naive():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(5, 8))
    naive = 0.0
    for d in range(8):
        col = emb[:, d]
        naive += np.sqrt(sum((v - col.mean()) ** 2 for v in col) / len(col))
    assert analysis.concept_spread(emb) == pytest.approx(naive)


def test_iconicity_ranking_hand_made():
    # "house": the same embedding in 3 languages (spread 0, most iconic); "five": far apart; "cat": only 2
    # languages (filtered); "tree": two poses in ase averaged before the spread is taken.
    e = np.eye(4)
    emb = np.stack([e[0], e[0], e[0], e[1], e[2], e[3], e[0], e[1],
                    e[0], e[0] * 0 + 0.5, e[0] + 0.1, e[0] - 0.1])
    concepts = ["house"] * 3 + ["five"] * 3 + ["cat"] * 2 + ["tree"] * 4
    langs = ["ase", "gsg", "fsl"] * 2 + ["ase", "gsg"] + ["ase", "gsg", "fsl", "fsl"]
    rank = analysis.iconicity_ranking(emb, concepts, langs, min_languages=3)
    assert rank["concept"].tolist() == ["house", "tree", "five"]
    assert rank["rank"].tolist() == [1, 2, 3] and rank["n_languages"].tolist() == [3, 3, 3]
    assert rank["spread"][0] == 0.0
    tree = np.stack([e[0], e[0] * 0 + 0.5, e[0]])  # ase, gsg, mean of the two fsl poses
    assert rank["spread"][1] == pytest.approx(analysis.concept_spread(tree))
    assert rank["spread"][2] == pytest.approx(analysis.concept_spread(np.stack([e[1], e[2], e[3]])))
    assert len(analysis.iconicity_ranking(emb, concepts, langs, min_languages=2)) == 4


def test_similarity_matrix_matches_naive():
    rng = np.random.default_rng(1)
    pose, text = rng.normal(size=(6, 3)), rng.normal(size=(2, 3))
    labels = ["b", "a", "b", "a", "c", "b"]
    sim, rows = analysis.similarity_matrix(pose, labels, text)
    assert rows == ["a", "b", "c"]
    for i, lab in enumerate(rows):
        members = [pose[j] for j in range(6) if labels[j] == lab]
        for m in range(2):
            assert sim[i, m] == pytest.approx(np.mean([p @ text[m] for p in members]))


def _is_png(path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000


@pytest.mark.slow  # t-SNE
def test_plots_write_pngs(tmp_path):
    rng = np.random.default_rng(2)
    emb = np.concatenate([rng.normal(loc=c, size=(10, 16)) for c in (0, 4, 8)])  # 3 clusters
    labels = ["x"] * 10 + ["y"] * 10 + ["z"] * 10
    pts = analysis.project_2d(emb, "tsne")
    assert pts.shape == (30, 2)
    # t-SNE keeps the clusters: each point's nearest neighbour has its label
    d = ((pts[:, None] - pts[None]) ** 2).sum(-1) + np.eye(30) * 1e9
    assert (np.array(labels)[d.argmin(1)] == np.array(labels)).mean() > 0.9
    paths = [
        analysis.plot_embedding_2d(pts, labels, tmp_path / "tsne.png", "t", markers=["o"] * 25 + ["x"] * 5),
        analysis.plot_heatmap(rng.random((3, 4)), list("abc"), list("defg"), tmp_path / "h.png", "h"),
        analysis.plot_confusion(np.array([[3, 1], [0, 2]]), ["a", "b"], tmp_path / "c.png", "c"),
        analysis.plot_iconicity(analysis.iconicity_ranking(emb, [str(i % 10) for i in range(30)], labels),
                                tmp_path / "i.png"),
    ]
    assert all(_is_png(p) for p in paths)
