"""The ``signclip`` command line: every command group registered here, in one place.

Each module holds one group; heavy imports (torch, the model) happen inside the commands, so
``signclip --help`` is quick. ``python -m signclip.cli`` (used by torchrun) runs the same app.
"""
from __future__ import annotations

import typer

from signclip.cli import embedding, evaluation, export, hub, search, serving, training

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Contrastive pose–text models for sign language (CLIP for sign language).")

app.command("models")(training.models_cmd)
app.command("train")(training.train_cmd)
app.command("quickstart")(training.quickstart_cmd)
app.command("shards")(training.shards_cmd)
app.command("eval")(evaluation.eval_cmd)
app.command("embed")(embedding.embed_cmd)
app.command("pose")(embedding.pose_cmd)
app.add_typer(search.index_app, name="index")
app.command("search")(search.search_cmd)
app.command("serve")(serving.serve_cmd)
app.add_typer(export.export_app, name="export")
app.command("push")(hub.push_cmd)

__all__ = ["app"]
