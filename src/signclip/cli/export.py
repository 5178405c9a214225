"""``signclip export onnx``: encoders for inference without torch."""
from __future__ import annotations

from pathlib import Path

import typer

from signclip.cli.hub import MODEL_HELP, load_model

export_app = typer.Typer(no_args_is_help=True, help="Export a model for inference without torch.")


@export_app.command("onnx")
def export_onnx_cmd(
    model: str = typer.Argument(..., help=MODEL_HELP),
    out: Path = typer.Argument(..., help="output directory"),
    int8: bool = typer.Option(False, "--int8", help="also write dynamically quantised int8 encoders"),
) -> None:
    """Write the pose and text encoders as ONNX (+ tokenizer, preprocessing) for `signclip.export.runtime`."""
    from signclip.export.onnx import export_onnx

    files = export_onnx(load_model(model), out, int8=int8)
    for name, path in files.items():
        typer.echo(f"{name}: {path} ({path.stat().st_size / 1e6:.1f} MB)")
