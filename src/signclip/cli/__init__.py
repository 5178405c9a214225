"""The ``signclip`` command line: every command group registered here, in one place.

Each module holds one group; heavy imports (torch, the model) happen inside the commands, so
``signclip --help`` is quick. ``python -m signclip.cli`` (used by torchrun) runs the same app.

Errors are one line on stderr: ``error: ...`` naming the file or field, exit status 2 for a user's
mistake (bad input, a missing or damaged file, a locked run folder, a missing extra), 1 for anything
unexpected; warnings are one line too (``warning: ...``). ``--debug`` (or ``SIGNCLIP_DEBUG=1``) shows the
traceback and Python's warnings instead.
"""
from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import click
import typer

from signclip.cli import convert, datasets, embedding, evaluation, export, hub, search, serving, tasks, training
from signclip.cpu import set_wait_policy
from signclip.errors import RunLockedError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Contrastive pose–text models for sign language (CLIP for sign language).")
DEBUG = {"on": False}
# an optional dependency missing -> the extra that installs it
EXTRAS = {"fastapi": "serve", "fastapi_offline": "serve", "uvicorn": "serve", "multipart": "serve",
          "faiss": "index", "onnx": "export", "onnxruntime": "export", "mediapipe": "video",
          "jiwer": "tasks", "sacrebleu": "tasks", "rouge_score": "tasks"}
USER_ERRORS = (ValueError, OSError, RunLockedError)  # SignCLIPInputError and DamagedFileError are ValueErrors


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", envvar="SIGNCLIP_DEBUG",
                                    help="show the traceback of an error instead of one line")) -> None:
    """Contrastive pose–text models for sign language (CLIP for sign language)."""
    DEBUG["on"] = debug
    set_wait_policy()  # before a command imports torch (no module above does): OpenMP reads it then


def error_message(e: BaseException) -> tuple[str, int]:
    """The one line to print for an exception, and the exit status."""
    if isinstance(e, ModuleNotFoundError) and (e.name or "").split(".")[0] in EXTRAS:
        extra = EXTRAS[e.name.split(".")[0]]
        return f"this command needs the {extra} extra: pip install \"signclip[{extra}]\"", 2
    text = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, USER_ERRORS):
        return text, 2
    return f"{type(e).__name__}: {text} (unexpected; run with --debug for the traceback)", 1


def one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as ``warning: ...`` on stderr, without the source line Python shows."""
    typer.echo(f"warning: {' '.join(str(message).split())}", err=True)


def one_line_errors(command: Callable) -> Callable:
    """Run a command; an exception becomes ``error: ...`` and an exit status, a warning ``warning: ...``,
    unless ``--debug``."""
    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            with warnings.catch_warnings():
                if not DEBUG["on"]:
                    warnings.showwarning = one_line_warning
                return command(*args, **kwargs)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort, typer.Exit):
            raise
        except Exception as e:
            if DEBUG["on"]:
                raise
            message, status = error_message(e)
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(status) from None
    return run


def command(name: str, function: Callable) -> None:
    app.command(name)(one_line_errors(function))


command("models", training.models_cmd)
command("train", training.train_cmd)
command("quickstart", training.quickstart_cmd)
command("shards", training.shards_cmd)
command("finetune", tasks.finetune_cmd)
command("compose", tasks.compose_cmd)
command("eval", evaluation.eval_cmd)
command("embed", embedding.embed_cmd)
command("pose", embedding.pose_cmd)
command("prepare", datasets.prepare_cmd)
command("search", search.search_cmd)
command("serve", serving.serve_cmd)
command("push", hub.push_cmd)
command("convert-reference", convert.convert_reference_cmd)
for group, sub_app in (("index", search.index_app), ("export", export.export_app)):
    for info in sub_app.registered_commands:
        info.callback = one_line_errors(info.callback)
    app.add_typer(sub_app, name=group)

__all__ = ["app"]
