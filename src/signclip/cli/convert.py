"""``signclip convert-reference``: a released reference SignCLIP checkpoint as a signclip model."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def convert_reference_cmd(
    checkpoint: Path = typer.Argument(..., help="reference checkpoint (fairseq .pt, e.g. checkpoint_best.pt)"),
    out: Path = typer.Option(..., "--out", "-o", help="model directory to write"),
    tokenizer: Optional[str] = typer.Option(None, help="Hugging Face id or local folder of the text tokenizer "
                                                       "(default: the variant's BERT, if available offline)"),
    variant: Optional[str] = typer.Option(None, help="reference or reference-hand-dominant (default: detected)"),
    max_video_len: Optional[int] = typer.Option(None, help="frames the reference pads to; sets its [SEP] position "
                                                           "(default 256)"),
) -> None:
    """Convert a reference SignCLIP checkpoint (E7.2 baseline_temporal, E3.2 hand-dominant) into a model directory."""
    from signclip.models.convert import convert_reference

    path = convert_reference(checkpoint, out, tokenizer=tokenizer, variant=variant, max_video_len=max_video_len)
    typer.echo(f"wrote {path}")
