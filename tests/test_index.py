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


WRITER = """
import sys, time, numpy as np
from signclip.serve.index import SearchIndex
path, dim = sys.argv[1], int(sys.argv[2])
index = SearchIndex.load(path)
rng = np.random.default_rng(0)
while True:  # add and save until killed
    x = rng.normal(size=(20_000, dim)).astype(np.float32)
    index.add("pose", x / np.linalg.norm(x, axis=1, keepdims=True))
    index.save(path)
    print(index.sizes()["pose"], flush=True)
"""


def test_a_writer_killed_mid_write_loses_nothing(tmp_path, pose_embeddings):
    """`index add` killed with SIGKILL at any moment: the index loads, whole, at a version it had."""
    import signal
    import subprocess
    import sys
    import time

    dim = pose_embeddings.shape[1]
    index = SearchIndex(dim)
    index.add("pose", pose_embeddings)
    index.save(tmp_path)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(dim)], stdout=subprocess.PIPE,
                              text=True)
    saved = [48]
    try:
        for delay in (0.0, 0.013, 0.029, 0.041, 0.007):  # kill at staggered moments after a completed save
            saved.append(int(writer.stdout.readline()))
            time.sleep(delay)
            writer.send_signal(signal.SIGSTOP)  # freeze it mid-way, check, then kill for good at the end
            loaded = SearchIndex.load(tmp_path)
            assert loaded.sizes()["pose"] in saved + [saved[-1] + 20_000]
            writer.send_signal(signal.SIGCONT)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    loaded = SearchIndex.load(tmp_path)  # after the kill
    n = loaded.sizes()["pose"]
    assert n in saved + [saved[-1] + 20_000] and len(loaded.parts["pose"].metadata) == n
    assert loaded.search(pose_embeddings[:1], "pose", k=1)[0]["id"].iloc[0] == 0


def test_files_of_different_writes_are_refused(tmp_path, pose_embeddings):
    from signclip.errors import DamagedFileError

    a, b = SearchIndex(pose_embeddings.shape[1]), SearchIndex(pose_embeddings.shape[1])
    a.add("pose", pose_embeddings[:10], pd.DataFrame({"n": range(10)}))
    b.add("pose", pose_embeddings[:20], pd.DataFrame({"n": range(20)}))
    a.save(tmp_path / "a")
    b.save(tmp_path / "b")
    (tmp_path / "a" / "pose.1.parquet").write_bytes((tmp_path / "b" / "pose.1.parquet").read_bytes())
    with pytest.raises(DamagedFileError, match="does not add up"):
        SearchIndex.load(tmp_path / "a")
    (tmp_path / "b" / "pose.1.faiss").write_bytes(b"")  # truncated to nothing
    with pytest.raises(DamagedFileError, match="not a readable faiss index"):
        SearchIndex.load(tmp_path / "b")


def test_the_index_knows_its_model(tmp_path, model_dir, lexicon):
    """Another model's embeddings are refused, by dimension and by weights, with a clear message."""
    import signclip
    from signclip.models.signclip import load

    model = load(model_dir)
    index = SearchIndex.for_model(model, model_path=str(model_dir))
    index.add("text", model.encode_text(["A", "B"]))
    index.save(tmp_path / "idx")
    loaded = SearchIndex.load(tmp_path / "idx")
    loaded.check_model(model)  # the same model: fine
    other = signclip.create_model("tiny", embed_dim=128)
    with pytest.raises(ValueError, match="256-d embeddings .* 128-d"):
        loaded.check_model(other)
    same_size = untrained_model_dir(tmp_path / "other", lexicon.sample(60, random_state=5))
    with pytest.raises(ValueError, match="weights"):
        loaded.check_model(load(same_size))
    runner = CliRunner()
    r = runner.invoke(app, ["search", str(tmp_path / "idx"), "--text", "A", "--model", same_size])
    assert r.exit_code == 2 and r.output.startswith("error: the index was built with")
    r = runner.invoke(app, ["search", str(tmp_path / "idx"), "--text", "A", "-k", "0"])
    assert r.exit_code == 2 and "-k" in r.output


def test_manifest_columns_named_like_result_columns(tmp_path, model_dir, lexicon):
    """A manifest column `id`, `score` or `rank` once made every later search fail."""
    rows = lexicon.iloc[:6].assign(id=range(100, 106), score=1.0, rank="x")
    rows.to_csv(tmp_path / "m.csv", index=False)
    runner = CliRunner()
    r = runner.invoke(app, ["index", "build", model_dir, str(tmp_path / "idx"), "--data", str(tmp_path / "m.csv")])
    assert r.exit_code == 0, r.output
    assert any(line.startswith("warning: ") and "renamed to ['meta_rank', 'meta_score', 'meta_id']" in line
               for line in r.output.splitlines()), r.output
    r = runner.invoke(app, ["search", str(tmp_path / "idx"), "--text", "A", "--json", "-k", "3"])
    assert r.exit_code == 0, r.output
    top = json.loads(r.output)[0]
    assert top["rank"] == 1 and top["meta_id"] in range(100, 106) and top["meta_rank"] == "x"
