"""`signclip eval --report`: the full suite on a trained tiny model, one self-contained HTML + metrics.json;
and signer-independent splits for a dataset with signer ids (Kaggle ASL Signs layout)."""
from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from signclip.cli import app
from signclip.data.manifests import load_dataset
from signclip.data.splits import split_dataset

runner = CliRunner()


def test_eval_report_from_trained_model(trained_model_dir, tmp_path):
    run = trained_model_dir.parent  # best/, splits.csv, log.csv
    out = tmp_path / "report"
    result = runner.invoke(app, ["eval", str(trained_model_dir), str(run / "splits.csv"), "--report", str(out),
                                 "--shots", "3", "--draws", "2"])
    assert result.exit_code == 0, result.output
    html = (out / "report.html").read_text()
    for heading in ("Retrieval", "Zero-shot isolated sign recognition", "Sign-language identification",
                    "Few-shot kNN", "Linear probe", "Iconicity"):
        assert f"<h2>{heading}" in html
    assert html.count('<table class="metrics">') >= 5
    assert "raw-keypoint baseline" in html and "chance" in html
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    alts = {a for a, _ in images}
    assert {"t-SNE of pose and text embeddings", "Similarity heat-map", "Training curve",
            "Zero-shot recognition confusion matrix", "Sign-language identification confusion matrix"} <= alts
    assert all(len(b) > 1000 for _, b in images)
    assert "src=\"http" not in html and ".png\"" not in html  # nothing outside the file
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    for key in ("retrieval", "zero_shot_recognition", "language_identification", "few_shot/text",
                "linear_probe/text"):
        assert key in metrics
    probe = metrics["linear_probe/text"]
    assert set(probe) == {"signclip", "raw-keypoint baseline", "chance"}
    assert 0 <= probe["signclip"]["accuracy"] <= 1
    lid = metrics["language_identification"]["signclip"]
    assert 0 <= lid["top-1"] <= lid["top-5"] <= 1


def test_signer_independent_split_and_eval(trained_model_dir, tmp_path, lexicon_paths):
    from test_formats import write_kaggle

    n = 8
    root = write_kaggle(tmp_path / "kaggle", lexicon_paths[:n], ["A", "B"] * (n // 2), [1, 1, 2, 2, 3, 3, 4, 4])
    df = split_dataset(load_dataset(root), val_fraction=0.25, test_fraction=0.25, group="signer")
    for signer, rows in df.groupby("signer"):
        assert rows["split"].nunique() == 1  # every signer in one split
    result = runner.invoke(app, ["eval", str(trained_model_dir), str(root), "--split-by", "signer"])
    assert result.exit_code == 0, result.output
    assert "pose_to_text/R@1" in result.output
    # the evaluated rows are exactly the test signers of the same deterministic split
    test_signers = set(split_dataset(load_dataset(root), group="signer").query("split == 'test'")["signer"])
    assert test_signers and test_signers < {"1", "2", "3", "4"}
    assert isinstance(pd.read_csv(root / "train.csv"), pd.DataFrame)


@pytest.mark.slow
def test_report_of_a_fresh_model_that_knows_no_language(tmp_path, lexicon):
    """A freshly created model (no languages, no training) once crashed in the similarity heat-map."""
    import signclip

    signclip.create_model("tiny").save(tmp_path / "fresh")
    rows = lexicon[lexicon["signed_language"].isin(["ase", "gsg", "fsl"])].head(36)
    rows.to_csv(tmp_path / "m.csv", index=False)
    result = CliRunner().invoke(app, ["eval", str(tmp_path / "fresh"), str(tmp_path / "m.csv"), "--report",
                                      str(tmp_path / "report")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert (tmp_path / "report" / "similarity.png").exists() and (tmp_path / "report" / "report.md").exists()
