"""Hugging Face Hub distribution, offline: ``hf-hub:`` ids loaded from a real cache layout (library and CLI),
the one-line error for an id that is not cached while offline, the model card, and ``push_to_hub`` against
huggingface_hub's API with its network calls replaced (signclip's own code runs unmocked)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import numpy as np
import pandas as pd
import pytest
import yaml
from huggingface_hub import constants
from typer.testing import CliRunner

import signclip
from signclip.cli import app
from signclip.eval.model_card import find_run_dir, model_card
from signclip.models.hub import HubModelError, parse_hub_id

from serve_utils import untrained_model_dir

runner = CliRunner()
REPO = "signclip-test/tiny"
MAIN = "a" * 40  # commit hashes of the fake repository
V2 = "b" * 40
TEXTS = ["A", "house"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, lexicon):
    """A training run's layout: RUN/best (a ready-to-use tiny model), splits.csv, train_config.json."""
    from signclip.config import TrainConfig

    run = tmp_path_factory.mktemp("run")
    untrained_model_dir(run / "best", lexicon)
    splits = lexicon.iloc[::5].copy()
    splits["split"] = ["train", "train", "validation", "test"] * (len(splits) // 4) + ["train"] * (len(splits) % 4)
    splits.to_csv(run / "splits.csv", index=False)
    (run / "train_config.json").write_text(json.dumps(TrainConfig(epochs=3, seed=7).to_dict()))
    return run


@pytest.fixture(scope="module")
def local_model(run_dir):
    return signclip.load(run_dir / "best")


def add_snapshot(cache: Path, repo_id: str, commit: str, files: dict[str, Path], refs: tuple[str, ...] = ()) -> Path:
    """Put ``files`` (path in repo -> local file) into the huggingface_hub cache layout, as a download would:
    ``models--ORG--NAME/blobs/<sha256>``, ``snapshots/<commit>/<path>`` symlinks to them, ``refs/<ref>``."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for name, src in files.items():
        data = src.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snapshot


def model_files(model_dir: Path) -> dict[str, Path]:
    return {p.relative_to(model_dir).as_posix(): p for p in sorted(model_dir.rglob("*")) if p.is_file()}


@pytest.fixture
def hub_cache(tmp_path, monkeypatch, run_dir):
    """A Hugging Face cache (HF_HUB_CACHE) holding REPO: main = RUN/best; tag v2 = the same weights with a
    language-free prompt template. Offline, as every test is (tests/conftest.py)."""
    cache = tmp_path / "hf-cache"
    files = model_files(run_dir / "best")
    add_snapshot(cache, REPO, MAIN, files, refs=("main",))
    cfg = json.loads((run_dir / "best" / "config.json").read_text())
    (tmp_path / "config-v2.json").write_text(json.dumps({**cfg, "prompt_template": "{text}"}))
    add_snapshot(cache, REPO, V2, {**files, "config.json": tmp_path / "config-v2.json"}, refs=("v2",))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))  # read from the environment at import
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def test_parse_hub_id():
    assert parse_hub_id("hf-hub:org/name") == ("org/name", None)
    assert parse_hub_id("hf-hub:org/name@v1.0") == ("org/name", "v1.0")
    with pytest.raises(ValueError, match="hf-hub:org/na me: not a Hugging Face Hub id"):
        parse_hub_id("hf-hub:org/na me")


def test_load_hub_id_from_the_cache(hub_cache, local_model, lexicon_paths):
    model = signclip.load(f"hf-hub:{REPO}")
    np.testing.assert_array_equal(model.encode_text(TEXTS, "en", "ase"), local_model.encode_text(TEXTS, "en", "ase"))
    np.testing.assert_array_equal(model.encode_pose(lexicon_paths[:3]), local_model.encode_pose(lexicon_paths[:3]))


def test_revisions_tag_and_commit(hub_cache, local_model):
    v2 = signclip.load(f"hf-hub:{REPO}@v2")
    assert v2.cfg.prompt_template == "{text}" and v2.prompts(["A"], "en", "ase") == ["A"]
    np.testing.assert_array_equal(v2.encode_text(["A"], "en", "ase"), local_model.encode_text(["A"]))
    assert signclip.load(f"hf-hub:{REPO}@{MAIN}").cfg.prompt_template == local_model.cfg.prompt_template


def test_offline_error_for_an_id_not_in_the_cache(hub_cache):
    for name in ("hf-hub:signclip-test/absent", f"hf-hub:{REPO}@v3"):
        with pytest.raises(HubModelError) as e:
            signclip.load(name)
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith(f"{name}: not in the Hugging Face cache ({hub_cache})")
        assert "offline" in msg
    result = runner.invoke(app, ["embed", "hf-hub:signclip-test/absent", "--text", "A", "-o", "x.npy"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: hf-hub:signclip-test/absent: not in the Hugging Face cache ({hub_cache}) and the machine is "
        "offline (HF_HUB_OFFLINE=1); load it once with network access, or copy the cache here"]


def test_repository_without_a_model(hub_cache, tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    add_snapshot(hub_cache, "signclip-test/other", MAIN, {"config.json.bak": tmp_path / "notes.txt"}, refs=("main",))
    with pytest.raises(HubModelError, match="hf-hub:signclip-test/other: not a signclip model"):
        signclip.load("hf-hub:signclip-test/other")


def test_cli_embed_with_the_environment_cache(hub_cache, local_model, tmp_path):
    """A fresh process finds the model through HF_HUB_CACHE and HF_HUB_OFFLINE alone."""
    out = tmp_path / "texts.npy"
    env = {**os.environ, "HF_HUB_CACHE": str(hub_cache), "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "signclip.cli", "embed", f"hf-hub:{REPO}", "-s", "en", "-l", "ase",
                        *[a for t in TEXTS for a in ("--text", t)], "-o", str(out), "--precision", "fp32"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    np.testing.assert_allclose(np.load(out), local_model.encode_text(TEXTS, "en", "ase"), atol=1e-6)


def test_cli_eval_a_hub_id(hub_cache, run_dir, tmp_path):
    rows = pd.read_csv(run_dir / "splits.csv")
    rows = rows[rows["split"] == "test"].head(8)
    rows.to_csv(tmp_path / "manifest.csv", index=False)
    metrics = {}
    for name, model in (("hub", f"hf-hub:{REPO}"), ("local", run_dir / "best")):
        r = runner.invoke(app, ["eval", str(model), str(tmp_path / "manifest.csv"), "-o", str(tmp_path / name)])
        assert r.exit_code == 0, r.output + repr(r.exception)
        metrics[name] = json.loads((tmp_path / name).read_text())
    assert metrics["hub"] == metrics["local"] and "pose_to_text/R@1" in metrics["hub"]


def test_cli_index_remembers_the_hub_id(hub_cache, local_model, tmp_path):
    pytest.importorskip("faiss")
    idx = tmp_path / "idx"
    r = runner.invoke(app, ["index", "build", f"hf-hub:{REPO}", str(idx), "--text", "A", "--text", "B",
                            "-s", "en", "-l", "ase"])
    assert r.exit_code == 0, r.output
    assert json.loads((idx / "index.json").read_text())["model"] == f"hf-hub:{REPO}"
    r = runner.invoke(app, ["search", str(idx), "--text", "B", "-s", "en", "-l", "ase", "--target", "text", "--json"])
    assert r.exit_code == 0, r.output
    hits = json.loads(r.output)
    assert hits[0]["text"] == "B" and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)


# ---- the model card --------------------------------------------------------------------------------------
def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def write_suite_metrics(path: Path) -> None:
    """A metrics.json as the evaluation suite writes it (signclip.eval.report.write_metrics_json)."""
    from signclip.eval.report import write_metrics_json
    from signclip.eval.suite import EvalResult

    retrieval = {"pose_to_text/R@1": 0.4833, "pose_to_text/MedianR": 2.0, "text_to_pose/P@1": 0.4917}
    result = EvalResult(metrics={
        "retrieval": {"signclip": retrieval, "raw-keypoint baseline": {"pose_to_text/R@1": 0.108},
                      "chance": {"pose_to_text/R@1": 0.008}},
        "language_identification": {"signclip": {"top-1": 0.925}, "chance": {"top-1": 0.053}},
        "recognition/text": {"signclip fine-tuned": {"acc@1": 0.142, "R@5": 0.467, "R@10": 0.6, "MedianR": 6.0},
                             "chance": {"acc@1": 0.006, "R@5": 0.029, "R@10": 0.057, "MedianR": 87.5}},
        "few_shot/text": {"signclip": {"10-shot acc (mean)": 0.035}}},  # a section of older metrics.json files
        facts={"evaluated": "split 'test'; 120 poses", "title": "signclip quickstart report"})
    write_metrics_json(result, path)


def test_model_card_of_a_training_run(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    write_suite_metrics(run / "metrics.json")
    assert find_run_dir(run / "best") == run.resolve()
    card = model_card(run / "best", "org/name", run_dir=run, datasets=["org/fingerspelling"])
    meta = front_matter(card)
    assert meta["library_name"] == "signclip" and meta["license"] == "mit"
    assert {"sign-language", "contrastive", "pose"} <= set(meta["tags"])
    assert meta["datasets"] == ["org/fingerspelling"]
    assert {"en", "de", "ase", "gsg"} <= set(meta["language"])
    assert 'signclip.load("hf-hub:org/name")' in card
    assert "| embedding dimension | 256 |" in card and "`reduce_holistic` (178 points" in card
    assert "all-MiniLM-L6-v2" in card and "| parameters | " in card
    splits = pd.read_csv(run / "splits.csv")
    n_test = (splits["split"] == "test").sum()
    assert f"| test | {n_test} | {splits[splits.split == 'test'].text.nunique()} |" in card
    assert "epochs 3" in card and "seed 7" in card
    assert "| metric | signclip | raw-keypoint baseline | chance |" in card
    assert "| pose_to_text/R@1 | 0.483 | 0.108 | 0.008 |" in card and "| pose_to_text/MedianR | 2.0 |  |  |" in card
    assert "### Sign-language identification" in card and "| top-1 | 0.925 | 0.053 |" in card
    assert "### Few-shot kNN — label: text" in card and "evaluated: split 'test'; 120 poses" in card
    assert "### Isolated sign recognition\n\n| setting | acc@1 (= R@1) | R@5 | R@10 | MedianR |" in card
    assert "| signclip fine-tuned | 0.142 | 0.467 | 0.600 | 6.0 |" in card  # one row per setting


def test_model_card_without_a_run(run_dir, tmp_path):
    model_dir = shutil.copytree(run_dir / "best", tmp_path / "model")
    assert find_run_dir(model_dir) is None
    card = model_card(model_dir, "org/name", license="apache-2.0")
    meta = front_matter(card)
    assert meta["license"] == "apache-2.0" and "datasets" not in meta
    assert "No training run was found" in card and "## Evaluation" not in card
    # the flat metrics of `signclip eval -o metrics.json` are the model's retrieval metrics
    (tmp_path / "m.json").write_text(json.dumps({"pose_to_text/R@1": 0.25, "text_to_pose/P@1": 0.5}))
    card = model_card(model_dir, "org/name", metrics=tmp_path / "m.json")
    assert "### Retrieval" in card and "| pose_to_text/R@1 | 0.250 |" in card


# ---- push (huggingface_hub's network calls replaced) -------------------------------------------------------
@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """Record HfApi.create_repo / create_branch / upload_folder calls; keep a copy of each uploaded folder."""
    calls: list[tuple[str, dict]] = []

    def create_repo(self, repo_id, **kw):
        calls.append(("create_repo", {"repo_id": repo_id, **kw}))
        return f"https://huggingface.co/{repo_id}"

    def create_branch(self, repo_id, **kw):
        calls.append(("create_branch", {"repo_id": repo_id, **kw}))

    def upload_folder(self, **kw):
        kept = tmp_path / f"uploaded{len(calls)}"
        shutil.copytree(kw["folder_path"], kept)
        calls.append(("upload_folder", {**kw, "folder": kept}))

    for name, fn in (("create_repo", create_repo), ("create_branch", create_branch), ("upload_folder", upload_folder)):
        monkeypatch.setattr(huggingface_hub.HfApi, name, fn)
    return calls


def test_cli_push_of_a_run_model(fake_hub, run_dir, local_model, tmp_path):
    run = shutil.copytree(run_dir, tmp_path / "run")
    write_suite_metrics(run / "metrics.json")
    r = runner.invoke(app, ["push", str(run / "best"), "org/name", "--private", "--branch", "dev",
                            "--commit-message", "first model", "--token", "hf_x", "--license", "cc-by-4.0"])
    assert r.exit_code == 0, r.output + repr(r.exception)
    assert "pushed" in r.output and 'signclip.load("hf-hub:org/name@dev")' in r.output
    (c1, repo), (c2, branch), (c3, upload) = fake_hub
    assert (c1, c2, c3) == ("create_repo", "create_branch", "upload_folder")
    assert repo == {"repo_id": "org/name", "private": True, "exist_ok": True, "token": "hf_x"}
    assert branch["branch"] == "dev" and branch["exist_ok"]
    assert upload["repo_id"] == "org/name" and upload["revision"] == "dev"
    assert upload["commit_message"] == "first model" and upload["token"] == "hf_x"
    folder = upload["folder"]
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors",
                                                        "text_config", "tokenizer"]
    card = (folder / "README.md").read_text()
    assert front_matter(card)["license"] == "cc-by-4.0" and "| pose_to_text/R@1 | 0.483 |" in card
    np.testing.assert_array_equal(signclip.load(folder).encode_text(TEXTS), local_model.encode_text(TEXTS))
    assert not (run / "best" / "README.md").exists()  # the card goes to the upload, not the model folder


def test_model_push_to_hub(fake_hub, local_model, lexicon_paths):
    url = signclip.push_to_hub(local_model, "org/other")
    assert url == "https://huggingface.co/org/other"
    assert [c for c, _ in fake_hub] == ["create_repo", "upload_folder"]  # no branch: main
    repo, upload = fake_hub[0][1], fake_hub[1][1]
    assert repo["private"] is None and upload["revision"] is None
    assert upload["commit_message"] == "Upload signclip model"
    folder = upload["folder"]
    assert front_matter((folder / "README.md").read_text())["library_name"] == "signclip"
    pushed = signclip.load(folder)
    np.testing.assert_array_equal(pushed.encode_pose(lexicon_paths[:2]), local_model.encode_pose(lexicon_paths[:2]))
