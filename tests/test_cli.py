"""The `signclip` CLI end to end on a tiny manifest: train, eval, embed (.npy and .parquet)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from signclip.cli import app

from serve_utils import untrained_model_dir

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, small_manifest):
    """`signclip train` for 1 epoch on a 24-pose manifest with a 1-layer tiny model."""
    tmp = tmp_path_factory.mktemp("cli")
    shutil.copy(small_manifest / "manifest.csv", tmp / "manifest.csv")
    cfg = {"name": "tiny-test", "pose_layers": 1, "freeze_text": True,
           "pose": {"layout": "reduce_holistic", "max_frames": 64}}
    (tmp / "model.json").write_text(json.dumps(cfg))
    run = tmp / "run"
    result = invoke("train", tmp / "manifest.csv", "--out", run, "--model", tmp / "model.json",
                    "--epochs", 1, "--batch-size", 8)
    assert "best model" in result.output
    assert "regime: few-shot (median 1 training clips per text, <= 10): 1 epochs; no mirror flips" in result.output
    assert json.loads((run / "train_config.json").read_text())["augment"]["flip_p"] == 0.0
    return tmp, run


def test_models_command():
    assert "tiny" in invoke("models").output


def test_train_writes_a_run(cli_run):
    _, run = cli_run
    assert (run / "best" / "model.safetensors").exists()
    assert (run / "checkpoints" / "last" / "trainer_state.pt").exists()
    assert len(pd.read_csv(run / "log.csv")) == 2  # 16 training poses / batch 8
    assert json.loads((run / "best" / "config.json").read_text())["pose_layers"] == 1


def test_eval(cli_run):
    tmp, run = cli_run
    out = tmp / "metrics.json"
    invoke("eval", run / "best", run / "splits.csv", "--split", "test", "--out", out)
    metrics = json.loads(out.read_text())
    assert {"pose_to_text/R@1", "pose_to_text/MedianR", "text_to_pose/P@5"} <= set(metrics)
    assert metrics == pytest.approx(direct_metrics(run / "best", run / "splits.csv"))


def direct_metrics(model_dir, splits_csv, split="test") -> dict:
    """The retrieval metrics of a split computed in Python, without the CLI."""
    import signclip
    from signclip.data.arrays import load_split, table_prompts
    from signclip.data.manifests import load_manifest
    from signclip.eval.retrieval import evaluate_split

    model, df = signclip.load(model_dir), load_manifest(splits_csv)
    data = load_split(df[df["split"] == split], model.cfg.pose, progress=False)
    data.prompts = table_prompts(model, data.df)
    return evaluate_split(model, data)


def test_embed_poses_npy_and_parquet(cli_run):
    tmp, run = cli_run
    paths = pd.read_csv(tmp / "manifest.csv")["path"].tolist()
    # fp32: under bf16 (auto on CPUs with bf16 instructions) batches of 3 and of 24 differ by up to ~5e-4
    invoke("embed", run / "best", *paths[:3], "--out", tmp / "poses.npy", "--precision", "fp32")
    emb = np.load(tmp / "poses.npy")
    assert emb.shape == (3, 256)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    invoke("embed", run / "best", "--manifest", tmp / "manifest.csv", "--out", tmp / "poses.parquet",
           "--precision", "fp32")
    df = pd.read_parquet(tmp / "poses.parquet")
    assert len(df) == 24 and {"path", "text", "signed_language", "embedding"} <= set(df.columns)
    np.testing.assert_allclose(np.stack(df["embedding"])[:3], emb, atol=1e-5)  # the same first 3 poses


def test_embed_texts_parquet(cli_run):
    tmp, run = cli_run
    invoke("embed", run / "best", "--text", "A", "--text", "B", "-s", "en", "-l", "ase", "--out", tmp / "t.parquet")
    df = pd.read_parquet(tmp / "t.parquet")
    assert df["prompt"].tolist() == ["<en> <ase> A", "<en> <ase> B"]
    assert np.stack(df["embedding"]).shape == (2, 256)


def test_embed_bad_suffix_and_nothing(cli_run):
    tmp, run = cli_run
    assert runner.invoke(app, ["embed", str(run / "best"), "--text", "A", "--out", str(tmp / "x.txt")]).exit_code != 0
    assert runner.invoke(app, ["embed", str(run / "best"), "--out", str(tmp / "x.npy")]).exit_code != 0


def one_line_error(*args, status=2):
    """Run a command that must fail: its output is one `error: ...` line, no traceback."""
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == status, result.output + repr(result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_user_errors_are_one_line(cli_run, tmp_path, lexicon_paths):
    tmp, run = cli_run
    assert "no-such.csv: no such manifest" in one_line_error("train", tmp_path / "no-such.csv", "-o", tmp_path / "r")
    pd.DataFrame({"path": lexicon_paths[:2]}).to_csv(tmp_path / "notext.csv", index=False)
    assert "lacks column(s) ['text']" in one_line_error("train", tmp_path / "notext.csv", "-o", tmp_path / "r")
    assert "not a saved signclip model" in one_line_error("embed", tmp_path / "nope", "--text", "A", "-o",
                                                          tmp_path / "e.npy")
    assert "unknown language code 'xx'" in one_line_error("embed", run / "best", "--text", "A", "-s", "xx", "-o",
                                                          tmp_path / "e.npy")
    (tmp_path / "bad.pose").write_bytes(b"corrupt")
    assert "nothing embedded" in one_line_error("embed", run / "best", tmp_path / "bad.pose", "-o", tmp_path / "e.npy")
    assert "unknown TrainConfig field" in one_line_error("train", tmp / "manifest.csv", "-o", tmp_path / "r",
                                                         "--config", write_json(tmp_path / "c.json", {"nope": 1}))
    debug = runner.invoke(app, ["--debug", "embed", str(tmp_path / "nope"), "--text", "A", "-o",
                                str(tmp_path / "e.npy")])
    assert isinstance(debug.exception, FileNotFoundError)  # the traceback is there with --debug


@pytest.fixture(scope="module")
def ready_model(tmp_path_factory, lexicon):
    """A saved tiny model, untrained (for commands that must fail before they use it)."""
    return untrained_model_dir(tmp_path_factory.mktemp("ready") / "model", lexicon)


def failing(*args, status=2):
    """Run a command that must fail: its last line is ``error: ...``, the others are progress bars or one-line
    ``warning: ...`` (never Python's warning format with a source line, never a traceback)."""
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == status, result.output + repr(result.exception)
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Warning:" not in result.output, result.output
    assert "Traceback" not in result.output and not any(line.startswith("  ") for line in lines), result.output
    return result.output, lines[-1]


def test_error_messages_name_the_cause(ready_model, tmp_path, lexicon):
    """These said "texts: empty list", "give --data" (it was given), printed a UserWarning with a source line, or
    announced "serving ..." before failing."""
    rows = lexicon.head(10)[["path", "text", "spoken_language", "signed_language"]]
    gone = rows.assign(path=[f"gone{i}.pose" for i in range(10)])
    gone.to_csv(tmp_path / "gone.csv", index=False)
    rows.assign(split="train").to_csv(tmp_path / "train_only.csv", index=False)
    output, error = failing("eval", ready_model, tmp_path / "gone.csv")
    assert "split 'test'): none of its 2 pose(s) is usable, e.g." in error and "no such pose file" in error
    assert "warning: skipped 2 unusable pose(s)" in output
    _, error = failing("eval", ready_model, tmp_path / "train_only.csv")
    assert "train_only.csv: no rows in split 'test' (it has train 9, validation 1)" in error
    _, error = failing("index", "build", ready_model, tmp_path / "index", "--data", tmp_path / "gone.csv")
    assert "gone.csv: none of its 10 pose(s) is usable, e.g." in error and "gone" in error
    output, error = failing("train", tmp_path / "gone.csv", "-o", tmp_path / "run", "--epochs", 1)
    assert "need at least 2 training poses" in error and "warning: skipped 7 unusable pose(s)" in output
    assert one_line_error("serve", tmp_path / "no-such-model").endswith("not a saved signclip model (no config.json)")


def write_json(path, value):
    path.write_text(json.dumps(value))
    return path


def test_embed_skips_unusable_poses_and_lists_them(cli_run, tmp_path, lexicon_paths):
    _, run = cli_run
    (tmp_path / "bad.pose").write_bytes(b"corrupt")
    out = tmp_path / "e.parquet"
    result = invoke("embed", run / "best", lexicon_paths[0], tmp_path / "bad.pose", lexicon_paths[1], "-o", out)
    assert "skipped 1 of 3" in result.output and "bad.pose: not a readable .pose file" in result.output
    assert pd.read_parquet(out)["path"].tolist() == [lexicon_paths[0], lexicon_paths[1]]


def test_relative_manifest_paths_work_from_any_directory(cli_run, tmp_path, monkeypatch):
    """A manifest given by a relative path once put cwd-relative paths into RUN/splits.csv: resume and eval
    from another directory then failed."""
    tmp, _ = cli_run
    data = tmp_path / "project" / "data"
    data.mkdir(parents=True)
    rows = pd.read_csv(tmp / "manifest.csv")
    for i, path in enumerate(rows["path"]):
        (data / f"{i}.pose").write_bytes(open(path, "rb").read())
    rows.assign(path=[f"{i}.pose" for i in range(len(rows))]).to_csv(data / "manifest.csv", index=False)
    monkeypatch.chdir(tmp_path / "project")
    invoke("train", "data/manifest.csv", "-o", "run", "--model", tmp / "model.json", "--epochs", 1,
           "--batch-size", 8)
    monkeypatch.chdir(tmp_path)
    invoke("eval", "project/run/best", "project/run/splits.csv", "-o", tmp_path / "metrics.json")
    run = tmp_path / "project" / "run"  # the same poses as evaluated from the project's folder
    assert json.loads((tmp_path / "metrics.json").read_text()) == pytest.approx(
        direct_metrics(run / "best", run / "splits.csv"))
    invoke("train", "project/data/manifest.csv", "-o", "project/run", "--model", tmp / "model.json", "--epochs", 2,
           "--batch-size", 8)  # resumes from another directory
    assert pd.read_csv(tmp_path / "project" / "run" / "log.csv")["step"].tolist() == [1, 2, 3, 4]


def test_config_file_values_are_used(cli_run, tmp_path):
    """--config's steps and batch size once gave way to the command-line options left unset (None)."""
    tmp, _ = cli_run
    config = write_json(tmp_path / "c.json", {"steps": 2, "batch_size": 4})
    invoke("train", tmp / "manifest.csv", "-o", tmp_path / "r", "--model", tmp / "model.json", "--config", config)
    cfg = json.loads((tmp_path / "r" / "train_config.json").read_text())
    assert cfg["steps"] == 2 and cfg["batch_size"] == 4 and cfg["min_steps"] == 0
    assert pd.read_csv(tmp_path / "r" / "log.csv")["step"].max() == 2


def test_options_the_recipe_or_the_config_own_default_to_none():
    """`quickstart` passed epochs=60 and seed=42 over recipes/quickstart.json (editing the recipe changed
    nothing); `shards` repeated TrainConfig's split fractions and seed. Unset, they come from there."""
    import typer.main

    commands = typer.main.get_command(app).commands
    for name, owned in (("quickstart", {"epochs", "seed"}), ("shards", {"seed", "val_fraction", "test_fraction"})):
        defaults = {p.name: p.default for p in commands[name].params}
        assert {k: defaults[k] for k in owned} == dict.fromkeys(owned), name
