"""Embedding indexes (faiss + parquet) and the `signclip index build|add` / `signclip search` commands."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from signclip.cli import app
from signclip.serve.index import SearchIndex
from signclip.serve.schemas import records

from serve_utils import untrained_model_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, lexicon):
    return untrained_model_dir(tmp_path_factory.mktemp("index_model"), lexicon)


@pytest.fixture(scope="module")
def pose_embeddings(tiny_model, lexicon_paths):
    return tiny_model.encode_pose(lexicon_paths)  # (48, E)


@pytest.mark.parametrize("kind", ["flat", "flat16", "hnsw", "ivf"])
def test_incremental_add_save_load_and_self_search(tmp_path, kind, pose_embeddings, lexicon, lexicon_paths):
    meta = lexicon.set_index("path").loc[lexicon_paths].reset_index()[["path", "text", "signed_language"]]
    index = SearchIndex(pose_embeddings.shape[1], kind, model="m")
    index.add("pose", pose_embeddings[:30], meta.iloc[:30])
    index.add("pose", pose_embeddings[30:], meta.iloc[30:])  # incremental
    assert index.sizes() == {"pose": 48}
    index.save(tmp_path)
    loaded = SearchIndex.load(tmp_path)
    assert loaded.kind == kind and loaded.model == "m" and loaded.sizes() == {"pose": 48}
    results = loaded.search(pose_embeddings[[0, 35]], "pose", k=5)
    for q, table in zip([0, 35], results):
        assert table["path"].iloc[0] == lexicon_paths[q] and table["score"].iloc[0] == pytest.approx(1, abs=1e-4)
        assert table["rank"].tolist() == [1, 2, 3, 4, 5] and table["score"].is_monotonic_decreasing
    exact = pose_embeddings @ pose_embeddings[0]
    if kind in ("flat", "flat16"):  # flat16 re-ranks with the fp32 vectors: the same exact scores
        np.testing.assert_allclose(results[0]["score"], np.sort(exact)[::-1][:5], atol=1e-5)
    row = records(results[0])[0]
    assert set(row) == {"rank", "score", "id", "path", "text", "signed_language"} and isinstance(row["score"], float)


def test_errors(tmp_path, pose_embeddings):
    index = SearchIndex(pose_embeddings.shape[1])
    with pytest.raises(KeyError, match="no text embeddings"):
        index.search(pose_embeddings[:1], "text")
    with pytest.raises(ValueError, match="metadata"):
        index.add("pose", pose_embeddings[:3], pd.DataFrame({"a": [1]}))
    with pytest.raises(ValueError, match="unknown index kind"):
        SearchIndex(8, "lsh")
    with pytest.raises(FileNotFoundError, match="not a signclip index"):
        SearchIndex.load(tmp_path)


def test_cli_build_add_search(tmp_path, model_dir, lexicon):
    rows = lexicon[lexicon["text"].isin(["A", "B"])].head(12)
    rows[["path", "text", "spoken_language", "signed_language"]].to_csv(tmp_path / "a.csv", index=False)
    more = lexicon[lexicon["text"].isin(["C"])].head(4)
    more[["path", "text", "spoken_language", "signed_language"]].to_csv(tmp_path / "b.csv", index=False)
    out = tmp_path / "idx"
    runner = CliRunner()
    r = runner.invoke(app, ["index", "build", model_dir, str(out), "--data", str(tmp_path / "a.csv"),
                            "--texts-from-data"])
    assert r.exit_code == 0, r.output
    n_texts = rows[["text", "signed_language"]].drop_duplicates().shape[0]
    assert SearchIndex.load(out).sizes() == {"pose": 12, "text": n_texts}
    r = runner.invoke(app, ["index", "add", str(out), "--data", str(tmp_path / "b.csv"), "--text", "house",
                            "-s", "en", "-l", "ase"])
    assert r.exit_code == 0, r.output
    sizes = SearchIndex.load(out).sizes()
    assert sizes["pose"] == 16
    r = runner.invoke(app, ["search", str(out), "--text", "C", "-k", "3", "--json"])
    assert r.exit_code == 0, r.output
    hits = json.loads(r.output)
    assert len(hits) == 3 and hits[0]["rank"] == 1 and "path" in hits[0]
    r = runner.invoke(app, ["search", str(out), "--pose", more["path"].iloc[0], "-k", "2"])
    assert r.exit_code == 0, r.output
    assert "score" in r.output and "prompt" in r.output  # pose -> texts table
    r = runner.invoke(app, ["search", str(out), "--pose", more["path"].iloc[0], "--target", "pose", "--json",
                            "-k", "1"])
    assert json.loads(r.output)[0]["path"] == more["path"].iloc[0]
    r = runner.invoke(app, ["index", "build", model_dir, str(out), "--data", str(tmp_path / "a.csv")])
    assert r.exit_code != 0  # refuses to overwrite
