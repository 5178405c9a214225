"""Downstream tasks: composed continuous data, the task heads, decoding, metrics, task models (save / load /
recognize), `signclip finetune` and `signclip eval` of a task model."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import signclip
from signclip.cli import app
from signclip.config import get_model_config
from signclip.data.arrays import load_arrays
from signclip.data.compose import compose_dataset, compose_pose, join_clips, ordering_sentences, spelled_words
from signclip.data.manifests import load_manifest
from signclip.models.pose_encoder import PoseEncoder
from signclip.pose.io import read_pose
from signclip.tasks.config import get_task_config
from signclip.tasks.decoding import ctc_beam_search, ctc_greedy
from signclip.tasks.heads import encode_frames
from signclip.tasks.metrics import classification_metrics, translation_metrics, word_error_rate
from signclip.tasks.model import TaskModel
from signclip.tasks.vocab import build_vocab, detokenize, words

ENCODER = dict(pose_layers=1, pose_width=64, embed_dim=64, pose_heads=4)
LANGUAGES = ["ase", "gsg"]


@pytest.fixture(scope="module")
def composed(tmp_path_factory, lexicon):
    """Fingerspelled words of two sign languages composed from the lexicon's letters (train and test words)."""
    clips = lexicon[lexicon["signed_language"].isin(LANGUAGES)]
    out = tmp_path_factory.mktemp("composed")
    manifest = compose_dataset(clips, spelled_words(clips, 12, max_letters=4, seed=1), out, progress=False)
    return out, manifest


@pytest.fixture(scope="module")
def composed_arrays(composed):
    out, _ = composed
    arrays, df, _ = load_arrays(load_manifest(out / "manifest.csv"), get_model_config("tiny").pose, progress=False)
    return arrays, df


def task_model(task: str, df: pd.DataFrame, arrays) -> TaskModel:
    cfg = get_task_config(task)
    column = "glosses" if task == "cslr" else "text"
    torch.manual_seed(0)
    return TaskModel.create(cfg, build_vocab(task, df[column]), get_model_config("tiny", **ENCODER)) \
        .fit_statistics(arrays)


# ---- composing ----------------------------------------------------------------------------------------
def test_join_clips_interpolates_transitions_and_keeps_missing_points():
    a = np.zeros((3, 2, 3), np.float32)
    b = np.full((2, 2, 3), 4.0, np.float32)
    b[0, 1] = np.nan  # the second point is missing where b starts
    joined, spans = join_clips([a, b], 3)
    assert joined.shape == (3 + 3 + 2, 2, 3) and spans == [(0, 3), (6, 8)]
    np.testing.assert_allclose(joined[3:6, 0, 0], [1.0, 2.0, 3.0])  # linear from 0 to 4
    assert np.isnan(joined[3:6, 1]).all() and np.isfinite(joined[:3]).all()


def test_compose_pose_resamples_to_one_frame_rate(lexicon):
    rows = lexicon[lexicon["signed_language"] == "ase"].head(2)
    poses = [read_pose(p) for p in rows["path"]]
    pose, spans = compose_pose(poses, transition_ms=200, fps=25)
    lengths = [round(len(p.body.data) * 25 / float(p.body.fps)) for p in poses]
    assert pose.body.data.shape[0] == sum(lengths) + 5 and float(pose.body.fps) == 25
    assert spans == [(0, lengths[0]), (lengths[0] + 5, lengths[0] + 5 + lengths[1])]


def test_compose_dataset_writes_poses_and_a_manifest(composed, lexicon):
    out, manifest = composed
    read_back = load_manifest(out / "manifest.csv")
    assert len(read_back) == 24 and set(read_back["signed_language"]) == set(LANGUAGES)
    assert read_back["glosses"].str.split().str.len().between(3, 4).all()
    train = set(read_back.loc[read_back["split"] == "train", "glosses"])
    assert train and not train & set(read_back.loc[read_back["split"] == "test", "glosses"])  # unseen test words
    row = read_back.iloc[0]
    letters = row["glosses"].split()
    assert len(row["clips"].split(";")) == len(letters) == len(row["spans"].split())
    sources = lexicon.set_index("path").loc[row["clips"].split(";")]
    assert sources["text"].tolist() == letters and set(sources["signed_language"]) == {row["signed_language"]}
    pose = read_pose(row["path"])
    assert pose.body.data.shape[0] == int(row["spans"].split()[-1].split("-")[1])


def test_composed_test_sentences_come_only_from_clips_marked_test(tmp_path, lexicon):
    clips = lexicon[lexicon["signed_language"].isin(["ase", "bzs"])].copy()
    clips["signer"] = clips["signed_language"]  # two "signers" with the same letters A..Z
    clips["split"] = np.where(clips["signer"] == "bzs", "test", None)
    sentences = pd.DataFrame({"glosses": ["A B", "C D", "E F", "G H"], "text": ["ab", "cd", "ef", "gh"],
                              "split": ["train", "test", "train", "test"]})
    manifest = compose_dataset(clips, sentences, tmp_path / "c", progress=False)
    assert manifest["signer"].tolist() == ["ase", "bzs", "ase", "bzs"]
    with pytest.raises(ValueError, match="no clip group"):
        compose_dataset(clips, pd.DataFrame({"glosses": ["A NOT-A-LETTER"], "text": ["x"]}), tmp_path / "d")


def test_ordering_sentences_use_traduttores_words():
    df = ordering_sentences(200, seed=0)
    traduttore = {"CAN", "COFFEE", "GET", "HELLO", "I", "LARGE", "MEDIUM", "MUFFIN", "NO", "PLEASE", "SMALL", "TEA",
                  "THANK-YOU", "WATER"}
    assert {g for s in df["glosses"] for g in s.split()} <= traduttore
    assert df["text"].str[0].str.isupper().all() and df["glosses"].nunique() > 50


def test_glosses_column_is_kept_by_the_manifest_loader(tmp_path):
    pd.DataFrame({"path": ["a.pose"], "text": ["Hello, a tea."], "glosses": ["HELLO TEA"]}).to_csv(
        tmp_path / "m.csv", index=False)
    df = load_manifest(tmp_path / "m.csv")
    assert list(df.columns[:3]) == ["path", "text", "glosses"] and df.loc[0, "glosses"] == "HELLO TEA"
    pd.DataFrame({"path": ["a.pose"], "text": ["x"]}).to_csv(tmp_path / "n.csv", index=False)
    assert load_manifest(tmp_path / "n.csv")["glosses"].isna().all()


# ---- heads, decoding, metrics ----------------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["islr", "cslr", "slt"])
def test_each_head_gives_a_finite_loss_with_gradients(task, composed_arrays):
    arrays, df = composed_arrays
    model = task_model(task, df, arrays).train()
    x, mask = signclip.batching.pad_poses(arrays[:4])
    targets = df["glosses" if task == "cslr" else "text"].tolist()[:4]
    loss = model(x, mask, targets)
    assert loss.ndim == 0 and math.isfinite(loss.item())
    loss.backward()
    assert model.pose.frame_mlp[0].weight.grad is not None and all(
        p.grad is not None for n, p in model.head.named_parameters() if "embed" not in n)


def test_ctc_head_shortens_by_four_and_counts_real_frames(composed_arrays):
    arrays, df = composed_arrays
    model = task_model("cslr", df, arrays).eval()
    x, mask = signclip.batching.pad_poses(arrays[:3])
    log_probs, lengths = model.head.log_probs(model.pose, x, mask)
    expected = [math.ceil(math.ceil(len(a) / 2) / 2) for a in arrays[:3]]
    assert lengths.tolist() == expected and log_probs.shape == (3, max(expected), len(model.vocab))
    single, _ = model.head.log_probs(model.pose, x[1:2, : len(arrays[1])], mask[1:2, : len(arrays[1])])
    torch.testing.assert_close(single[0], log_probs[1, : expected[1]], atol=1e-4, rtol=1e-4)  # padding-free


class HalvingTower(PoseEncoder):
    """A tower that keeps every second frame (as a sequence-shortening option would) and says so."""

    def frame_features(self, x, mask):
        return super().frame_features(x, mask)[:, ::2]

    def frame_mask(self, mask):
        return mask[:, ::2]


def test_heads_take_a_shortening_tower_through_its_frame_mask():
    tower = HalvingTower(6, 16, 1, 2, 2.0, 0.0, 32, 16)
    mask = torch.tensor([[True] * 10 + [False] * 6, [True] * 16])
    h, frames = encode_frames(tower, torch.randn(2, 16, 6), mask)
    assert h.shape == (2, 8, 16) and frames.sum(1).tolist() == [5, 8]
    del HalvingTower.frame_mask  # without it: the same share of the output frames
    h, frames = encode_frames(tower, torch.randn(2, 16, 6), mask)
    assert frames.sum(1).tolist() == [5, 8]


def test_ctc_beam_search_sums_the_paths_of_a_prefix():
    # greedy takes blank, blank (empty output, p 0.36); the label "1" has p 1 - 0.36 - ... = 0.64 over its paths
    probs = np.array([[0.6, 0.4], [0.6, 0.4]])
    assert ctc_greedy(np.log(probs)) == []
    assert ctc_beam_search(np.log(probs), beam_size=4) == [1]
    lp = np.log(np.array([[0.1, 0.8, 0.1], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]]))
    assert ctc_beam_search(lp, 5) == ctc_greedy(lp) == [1, 1, 2]  # a blank separates the repeat


def test_metrics_against_known_values():
    assert word_error_rate(["A B C D", "E F"], ["A X C", "E F G"]) == pytest.approx(
        {"wer": 50.0, "sub": 100 / 6, "del": 100 / 6, "ins": 100 / 6})
    scores = np.array([[.7, .2, .1], [.1, .8, .1], [.5, .3, .2], [.2, .3, .5]])
    m = classification_metrics(scores, np.array([0, 1, 1, 2]), ks=(1, 2))
    assert m["per_instance/top1"] == 75 and m["per_class/top1"] == pytest.approx(100 * (1 + 0.5 + 1) / 3)
    assert m["per_instance/top2"] == 100
    perfect = translation_metrics(["the cat sat on the mat ."], ["the cat sat on the mat ."])
    assert perfect == pytest.approx({"bleu1": 100, "bleu2": 100, "bleu4": 100, "rougeL": 100})
    t = translation_metrics(["the cat sat on the mat"], ["the cat sat on a mat"])
    assert t["bleu1"] == pytest.approx(100 * 5 / 6) and t["rougeL"] == pytest.approx(100 * 5 / 6)
    assert t["bleu2"] == pytest.approx(100 * math.sqrt(5 / 6 * 3 / 5))  # cumulative: geometric mean of p1, p2
    zh = translation_metrics(["我 想 喝 茶"], ["我 想 喝 水"])  # non-Latin words count for ROUGE too
    assert zh["rougeL"] == pytest.approx(75)


def test_words_and_detokenize_round_trip():
    assert words("Hello, I'll get a tea.") == ["Hello", ",", "I'll", "get", "a", "tea", "."]
    assert detokenize(words("Hello, I'll get a tea?")) == "Hello, I'll get a tea?"


# ---- task models ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["islr", "cslr", "slt"])
def test_save_load_recognize_round_trip(task, composed, composed_arrays, tmp_path):
    arrays, df = composed_arrays
    model = task_model(task, df, arrays).eval()
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.safetensors", "task.json"]
    loaded = signclip.load(tmp_path / "m")
    assert isinstance(loaded, TaskModel) and loaded.vocab == model.vocab
    path = df["path"].iloc[0]
    out = loaded.recognize(path)
    if task == "islr":
        expected = model.recognize(path)
        assert [c for c, _ in out] == [c for c, _ in expected]
        assert [p for _, p in out] == pytest.approx([p for _, p in expected], abs=1e-5)
        assert [[c for c, _ in o] for o in loaded.recognize([path, path])] == [[c for c, _ in out]] * 2
    else:
        assert out == model.recognize(path) and loaded.recognize([path, path]) == [out, out]
    if task == "islr":
        assert len(out) == 5 and out[0][1] >= out[1][1] and out[0][0] in model.vocab
        assert sum(p for _, p in loaded.recognize(path, top_k=len(model.vocab))) == pytest.approx(1, abs=1e-4)
    elif task == "cslr":
        assert isinstance(out, list) and set(out) <= set(model.vocab[1:])
    else:
        assert isinstance(out, str)
    with pytest.raises(FileNotFoundError, match="task model"):
        signclip.SignCLIP.load(tmp_path / "m")


def test_a_task_model_starts_from_a_signclip_pose_tower(tiny_model, composed_arrays):
    arrays, df = composed_arrays
    model = TaskModel.create(get_task_config("cslr"), build_vocab("cslr", df["glosses"]), tiny_model)
    for name, value in tiny_model.pose.state_dict().items():
        assert torch.equal(model.pose.state_dict()[name], value)


# ---- the command line ----------------------------------------------------------------------------------
def test_finetune_refuses_an_unknown_task_and_data_without_glosses(tmp_path, lexicon):
    runner = CliRunner()
    bad = runner.invoke(app, ["finetune", "translate", "lexicon", "-o", str(tmp_path / "r")])
    assert bad.exit_code == 2 and bad.output.strip().splitlines()[-1].startswith("error: task: unknown 'translate'")
    lexicon.drop(columns=["glosses"]).head(20).to_csv(tmp_path / "m.csv", index=False)
    bad = runner.invoke(app, ["finetune", "cslr", str(tmp_path / "m.csv"), "-o", str(tmp_path / "r")])
    assert bad.exit_code == 2 and len(bad.output.strip().splitlines()) == 1
    assert "no 'glosses' column" in bad.output and str(tmp_path / "m.csv") in bad.output
    assert not (tmp_path / "r").exists()


def test_finetune_names_the_extra_it_needs_before_it_trains(tmp_path):
    code = f"""
import sys
sys.modules["sacrebleu"] = None  # not installed: importing it raises ModuleNotFoundError
from typer.testing import CliRunner
from signclip.cli import app
r = CliRunner().invoke(app, ["finetune", "islr", "lexicon", "-o", {str(tmp_path / "run")!r}])
print(r.exit_code, r.output)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.stdout.startswith('2 error: this command needs the tasks extra: pip install "signclip[tasks]"'), r.stdout
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow  # trains
@pytest.mark.parametrize("task", ["islr", "cslr", "slt"])
def test_finetune_trains_resumes_and_evaluates_a_task_model(task, composed, lexicon, tmp_path):
    data, _ = composed
    if task == "islr":  # isolated letters of two languages, split at random: test letters are seen in training
        data = tmp_path / "letters"
        data.mkdir()
        lexicon[lexicon["signed_language"].isin(LANGUAGES)].to_csv(data / "manifest.csv", index=False)
    cfg = get_task_config(task, batch_size=4, eval_every=3, ema_decay=0.9)
    (tmp_path / "task.json").write_text(json.dumps(cfg.to_dict()))
    runner = CliRunner()
    args = ["finetune", task, str(data), "-o", str(tmp_path / "run"), "--config", str(tmp_path / "task.json"),
            "--model", str(tmp_path / "enc.json"), "--steps", "3", "--threads", "1"]
    (tmp_path / "enc.json").write_text(json.dumps(get_model_config("tiny", **ENCODER).to_dict()))
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert (tmp_path / "run" / "best" / "task.json").is_file() and (tmp_path / "run" / "checkpoints" / "last").is_dir()
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and any(k.startswith("val/") for k in log[-1])
    # resume: three more steps continue the log
    result = runner.invoke(app, args[:-4] + ["--steps", "6", "--threads", "1"])
    assert result.exit_code == 0, result.output
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]

    result = runner.invoke(app, ["eval", str(tmp_path / "run" / "best"), str(data / "manifest.csv"), "--report",
                                 str(tmp_path / "report")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())[task]
    expected = {"islr": "per_instance/top1", "cslr": "wer", "slt": "bleu4"}[task]
    test = pd.read_csv(tmp_path / "run" / "splits.csv").query("split == 'test'")
    assert expected in metrics and 0 < metrics["n"] <= len(test)
    assert (tmp_path / "report" / "report.md").read_text().startswith(f"# signclip {task} evaluation")
    assert len(pd.read_csv(tmp_path / "report" / "predictions.csv")) == metrics["n"]
    if task == "cslr":
        assert {"by_language/ase/wer", "by_language/gsg/wer"} <= set(metrics)


@pytest.mark.slow  # trains
def test_finetune_from_a_trained_signclip_model(trained_model_dir, composed, tmp_path):
    data, _ = composed
    result = CliRunner().invoke(app, ["finetune", "cslr", str(data), "-o", str(tmp_path / "run"), "--init",
                                      str(trained_model_dir), "--steps", "2", "--batch-size", "4"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    init, tuned = signclip.load(trained_model_dir), signclip.load(tmp_path / "run" / "best")
    assert torch.equal(tuned.pose.feature_mean, init.pose.feature_mean)  # statistics kept
    assert tuned.encoder_cfg.pose == init.cfg.pose
    result = CliRunner().invoke(app, ["finetune", "cslr", str(data), "-o", str(tmp_path / "run2"), "--init",
                                      str(trained_model_dir), "--steps", "1", "--refit-stats"])
    assert result.exit_code == 0, result.output
    assert not torch.equal(signclip.load(tmp_path / "run2" / "best").pose.feature_mean, init.pose.feature_mean)
