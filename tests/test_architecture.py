"""The layout's rules: imports point down the pipeline (import-linter contracts in pyproject.toml), every
import is a declared dependency (deptry), and the core commands work without the optional extras."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from isolation import blocked_python

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    lint = Path(sys.executable).parent / "lint-imports"
    r = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout


def test_every_import_is_a_declared_dependency():
    """src, tests and benchmarks import only what pyproject.toml declares (core or an extra), not packages that
    merely come along with another one ([tool.deptry] in pyproject.toml)."""
    deptry = Path(sys.executable).parent / "deptry"
    r = subprocess.run([str(deptry), "."], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


def test_core_works_without_the_extras():
    """Train, evaluate and embed need none of the serve, index, export, video or tasks extras."""
    extras = ("fastapi", "fastapi_offline", "uvicorn", "multipart", "faiss", "onnx", "onnxruntime", "mediapipe",
              "jiwer", "sacrebleu", "rouge_score")
    code = """
from typer.testing import CliRunner
from signclip.cli import app
import signclip.training, signclip.eval.suite, signclip.eval.report, signclip.export.embeddings
import signclip.tasks.finetune, signclip.tasks.evaluate
r = CliRunner().invoke(app, ["--help"])
assert r.exit_code == 0 and "quickstart" in r.output, r.output
print("ok")
"""
    r = blocked_python(extras, code)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-3000:]
