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
    calibration: str = typer.Option("lexicon", help="with --int8: poses (a manifest, or 'lexicon', the embedded "
                                                    "one) that show which layers of a BERT pose tower int8 can "
                                                    "take; 'none' keeps them all in fp32"),
    calibration_poses: int = typer.Option(64, help="poses drawn from --calibration"),
) -> None:
    """Write the pose and text encoders as ONNX (+ tokenizer, preprocessing) for `signclip.export.runtime`."""
    from signclip.export.onnx import export_onnx

    m = load_model(model)
    arrays = None
    if int8 and calibration != "none":
        from signclip.data.manifests import load_dataset

        table = load_dataset(calibration)
        rows = table.sample(min(calibration_poses, len(table)), random_state=0)
        arrays = [m.preprocess_pose(p) for p in rows["path"]]
    files = export_onnx(m, out, int8=int8, calibration=arrays)
    for name, path in files.items():
        typer.echo(f"{name}: {path} ({path.stat().st_size / 1e6:.1f} MB)")
