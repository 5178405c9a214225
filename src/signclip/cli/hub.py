"""Models given on the command line (a directory or ``hf-hub:ORG/NAME[@REVISION]``), the options of the commands
that run them (threads, precision), and ``signclip push``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

MODEL_HELP = ("saved model directory, or a Hugging Face Hub id hf-hub:ORG/NAME (hf-hub:ORG/NAME@REVISION for a "
              "branch, tag or commit)")
THREADS_HELP = "torch CPU threads (default: the cores other processes leave free, measured again every few seconds)"
PRECISION_HELP = "inference precision: auto (bf16 on a CPU with bf16 instructions, else fp32), fp32 or bf16"


def load_model(model: str, precision: str = "fp32"):
    """The ``SignCLIP`` named by a MODEL argument (a directory or a ``hf-hub:`` id) at this inference precision
    (``SignCLIP.set_precision``)."""
    from signclip.models.signclip import load

    m = load(model)
    m.set_precision(precision)
    return m


def model_dir(model: str) -> str:
    """The local directory of a MODEL argument (a ``hf-hub:`` id is downloaded or found in the cache)."""
    from signclip.models.hub import resolve_model_dir

    return str(resolve_model_dir(model))


def push_cmd(
    model: str = typer.Argument(..., help=MODEL_HELP),
    repo_id: str = typer.Argument(..., help="Hub repository ORG/NAME (created if it does not exist)"),
    private: bool = typer.Option(False, "--private", help="create the repository private (a new one only)"),
    revision: Optional[str] = typer.Option(None, "--revision", "--branch",
                                           help="branch to push to (created if new; default main)"),
    commit_message: Optional[str] = typer.Option(None, "--commit-message", "-m"),
    token: Optional[str] = typer.Option(None, "--token", help="Hub token (default: HF_TOKEN or `hf auth login`)"),
    license: str = typer.Option("mit", "--license", help="licence of the weights in the model card (a Hub licence "
                                "id, e.g. mit, apache-2.0, cc-by-4.0, other)"),
    run: Optional[Path] = typer.Option(None, "--run", help="training run described in the card (splits.csv, "
                                       "train_config.json, metrics.json; default: the folder above MODEL when it "
                                       "holds them)"),
    metrics: Optional[Path] = typer.Option(None, "--metrics", help="metrics.json for the card (default: "
                                           "RUN/metrics.json)"),
    dataset: Optional[list[str]] = typer.Option(None, "--dataset", help="Hub dataset id of the training data for "
                                                "the card (repeatable)"),
) -> None:
    """Upload MODEL to the Hugging Face Hub as ORG/NAME, with a generated model card (README.md)."""
    from signclip.export.hub import push_to_hub

    url = push_to_hub(model, repo_id, private=private or None, revision=revision, commit_message=commit_message,
                      token=token, license=license, run_dir=run, metrics=metrics, datasets=dataset or ())
    typer.echo(f"pushed {model} to {url}" + (f" (branch {revision})" if revision else ""))
    typer.echo(f'load it with signclip.load("hf-hub:{repo_id}' + (f'@{revision}' if revision else "") + '")')
