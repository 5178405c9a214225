"""`signclip eval --report`: the full suite on a trained tiny model, one self-contained HTML + metrics.json,
with the paper's recognition table; one sign language (no language identification); and signer-independent
splits for a dataset with signer ids (Kaggle ASL Signs layout)."""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from signclip.cli import app
from signclip.data.manifests import load_dataset
from signclip.data.splits import split_dataset

runner = CliRunner()


RECOGNITION_HEADER = "| setting | acc@1 (= R@1) | R@5 | R@10 | MedianR |"


def test_eval_report_from_trained_model(trained_model_dir, tmp_path):
    run = trained_model_dir.parent  # best/, splits.csv, log.csv
    out = tmp_path / "report"
    result = runner.invoke(app, ["eval", str(trained_model_dir), str(run / "splits.csv"), "--report", str(out),
                                 "--shots", "3", "--draws", "2"])
    assert result.exit_code == 0, result.output
    html = (out / "report.html").read_text()
    for heading in ("Retrieval", "Isolated sign recognition", "Sign-language identification",
                    "Sign-language recognition on frozen features", "Iconicity"):
        assert f"<h2>{heading}" in html
    assert html.count('<table class="metrics">') >= 4
    assert "raw-keypoint baseline" in html and "chance" in html
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    alts = {a for a, _ in images}
    assert {"t-SNE of pose and text embeddings", "Similarity heat-map", "Training curve",
            "Recognition confusion matrix (prompt ranking)", "Sign-language identification confusion matrix"} <= alts
    assert all(len(b) > 1000 for _, b in images)
    assert "src=\"http" not in html and ".png\"" not in html  # nothing outside the file
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    for key in ("retrieval", "recognition/text", "language_identification", "recognition/signed_language"):
        assert key in metrics
    # the paper's recognition table: the model's prompt ranking, named from the run's training split
    table = metrics["recognition/text"]
    splits = pd.read_csv(run / "splits.csv")
    trained, evaluated = (set(splits.loc[splits["split"] == s, "text"]) for s in ("train", "test"))
    prompt_row = "signclip " + ("fine-tuned" if evaluated <= trained else "zero-shot" if not evaluated & trained
                                else "prompt ranking")
    assert list(table) == [prompt_row, "signclip 3-shot kNN", "signclip linear probe",
                           "raw-keypoint baseline 3-shot kNN", "raw-keypoint baseline linear probe", "chance"]
    for row in table.values():
        assert 0 <= row["acc@1"] <= row["R@5"] <= row["R@10"] <= 1 and row["MedianR"] >= 1
    assert table["chance"]["acc@1"] == pytest.approx(1 / len(trained | evaluated))
    assert RECOGNITION_HEADER in (out / "report.md").read_text()
    lid = metrics["language_identification"]["signclip"]
    assert 0 <= lid["top-1"] <= lid["top-5"] <= 1


def one_language_manifest(lexicon):
    """24 real lexicon poses, letters A-D, 6 poses each (4 train, 2 test), all labelled ASL.

    The lexicon has one pose per (language, letter): the 6 poses of a letter are that letter in 6
    *different* sign languages, relabelled here as one (ase, en) so that the data has one sign language
    with several examples per class. The labels are made up; the poses are real."""
    rows = lexicon[lexicon["text"].isin(list("ABCD"))].groupby("text").head(6).reset_index(drop=True)
    rows["split"] = np.where(rows.groupby("text").cumcount() < 4, "train", "test")
    return rows, rows.assign(signed_language="ase", spoken_language="en")


@pytest.fixture(scope="module")
def polyglot_model(lexicon):
    """A fresh tiny model that knows every sign language of the lexicon (so it could identify them)."""
    import signclip

    return signclip.create_model("tiny", signed_languages=sorted(lexicon["signed_language"].unique())).eval()


def test_single_language_report_has_no_language_identification(polyglot_model, lexicon, tmp_path):
    from signclip.eval.report import write_html_report, write_markdown_report
    from signclip.eval.suite import run_suite

    several, single = one_language_manifest(lexicon)
    # control: with their real sign languages the same poses are identified by language
    control = run_suite(polyglot_model, several, tmp_path / "several", shots=10, draws=2, plots=False)
    assert {"language_identification", "recognition/signed_language"} <= set(control.metrics)

    # (the figures of one sign language: test_eval_report_on_one_sign_language, t-SNE takes a while)
    result = run_suite(polyglot_model, single, tmp_path / "one", shots=10, draws=2, trained_classes=list("ABCDE"),
                       plots=False)
    write_html_report(result, tmp_path / "one")
    write_markdown_report(result, tmp_path / "one")
    assert set(result.metrics) == {"retrieval", "recognition/text"}  # no language id, no iconicity
    html = (tmp_path / "one" / "report.html").read_text()
    md = (tmp_path / "one" / "report.md").read_text()
    payload = json.loads((tmp_path / "one" / "metrics.json").read_text())
    for text in (html, md):
        assert "Sign-language identification" not in text and "Iconicity" not in text
        assert "Isolated sign recognition" in text
        # 16 support poses, 4 per letter: fewer than the 10 shots asked
        assert "10-shot asked; 4 classes have fewer than 10 support examples (min 4)" in text
    assert payload["notes"] == {"recognition/text": ["10-shot asked; 4 classes have fewer than 10 support "
                                                     "examples (min 4)"]}
    # the recognition table: one row per setting, the paper's columns; A-D were trained on: "fine-tuned"
    lines = md[md.index(RECOGNITION_HEADER):].splitlines()
    assert [line.split(" | ")[0] for line in lines[2:8]] == [
        "| signclip fine-tuned", "| signclip 10-shot kNN", "| signclip linear probe",
        "| raw-keypoint baseline 10-shot kNN", "| raw-keypoint baseline linear probe", "| chance"]
    assert lines[7].startswith("| chance | 0.250 | 1.000 | 1.000 | 2.5 |")
    table = payload["metrics"]["recognition/text"]
    assert table["signclip 10-shot kNN"]["kNN k"] == 4  # round(sqrt(16 support poses))
    assert "<th>acc@1 (= R@1)</th>" in html and "<td>signclip linear probe</td>" in html


def test_prompt_ranking_label(tmp_path):
    from signclip.eval.suite import prompt_ranking_label, training_classes

    assert prompt_ranking_label(["A", "B"], ["A", "B", "C"])[0] == "fine-tuned"
    assert prompt_ranking_label(["A", "B"], ["C"]) == ("zero-shot",
                                                       "0 of the 2 evaluated classes were seen in training")
    assert prompt_ranking_label(["A", "B"], ["B"])[0] == "prompt ranking"
    assert prompt_ranking_label(["A"], None)[0] == "prompt ranking"
    pd.DataFrame({"text": ["A", "B", "C", "A"], "split": ["train", "test", "validation", "train"],
                  "path": ["x"] * 4}).to_csv(tmp_path / "splits.csv", index=False)
    assert training_classes(tmp_path / "splits.csv") == ["A"]
    assert training_classes(tmp_path / "missing.csv") is None


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


def test_eval_report_on_one_sign_language(trained_model_dir, tmp_path, lexicon):
    """`signclip eval --report` on data of a single sign language: no identification section, no crash."""
    _, single = one_language_manifest(lexicon)
    single.to_csv(tmp_path / "one.csv", index=False)
    result = runner.invoke(app, ["eval", str(trained_model_dir), str(tmp_path / "one.csv"), "--report",
                                 str(tmp_path / "report"), "--shots", "10", "--draws", "2"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())["metrics"]
    assert set(metrics) == {"retrieval", "recognition/text"}
    html = (tmp_path / "report" / "report.html").read_text()
    assert "Sign-language identification" not in html and "10-shot asked; 4 classes have fewer" in html
    alts = set(re.findall(r'<img alt="([^"]+)"', html))
    assert {"Similarity heat-map", "Recognition confusion matrix (prompt ranking)"} <= alts  # heat-map by class
    assert "Sign-language identification confusion matrix" not in alts and "Iconicity ranking" not in alts
    assert not (tmp_path / "report" / "confusion_language_id.png").exists()
