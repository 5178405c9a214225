"""`signclip train DATA --init MODEL`: fine-tuning a trained model with the finetune recipe."""
from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

import signclip
from signclip.cli import app

pytestmark = pytest.mark.slow  # trains


def test_init_keeps_the_models_statistics_and_adds_languages(trained_model_dir, lexicon, tmp_path):
    init = signclip.load(trained_model_dir)
    rows = lexicon.sample(30, random_state=9).assign(signed_language="xsl")  # a language the model never saw
    rows.to_csv(tmp_path / "m.csv", index=False)
    runner = CliRunner()
    result = runner.invoke(app, ["train", str(tmp_path / "m.csv"), "-o", str(tmp_path / "run"), "--init",
                                 str(trained_model_dir), "--steps", "3", "--batch-size", "8"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "recipe finetune: fine-tuning" in result.output and "statistics kept from the model" in result.output
    assert "training tiny-test" in result.output or "training tiny" in result.output  # the plan is printed
    cfg = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert cfg["lr"] == 1e-4 and cfg["steps"] == 3 and not cfg["refit_statistics"]
    tuned = signclip.load(tmp_path / "run" / "best")
    assert torch.equal(tuned.pose.feature_mean, init.pose.feature_mean)
    assert "xsl" in tuned.cfg.signed_languages and set(init.cfg.signed_languages) < set(tuned.cfg.signed_languages)
    assert not torch.equal(tuned.pose.proj.weight, init.pose.proj.weight)  # it did train

    result = runner.invoke(app, ["train", str(tmp_path / "m.csv"), "-o", str(tmp_path / "run2"), "--init",
                                 str(trained_model_dir), "--steps", "1", "--batch-size", "8", "--refit-stats"])
    assert result.exit_code == 0, result.output
    assert not torch.equal(signclip.load(tmp_path / "run2" / "best").pose.feature_mean, init.pose.feature_mean)
    bad = runner.invoke(app, ["train", str(tmp_path / "m.csv"), "-o", str(tmp_path / "r3"), "--init",
                              str(trained_model_dir), "--model", "tiny"])
    assert bad.exit_code == 2 and "not both" in bad.output
