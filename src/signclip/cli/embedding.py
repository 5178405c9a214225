"""``signclip embed`` (poses, videos or texts into .npy / .parquet) and ``signclip pose`` (videos to .pose)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from signclip.cli.hub import MODEL_HELP, PRECISION_HELP, THREADS_HELP, load_model, model_dir
from signclip.cpu import use_threads
from signclip.errors import UsageError


def pose_files(folder: Path) -> list[Path]:
    """The .pose files and videos under a folder, sorted."""
    from signclip.pose.video import is_video_path

    return sorted(p for p in folder.rglob("*") if p.suffix == ".pose" or is_video_path(p))


def embed_cmd(
    model: str = typer.Argument(..., help=MODEL_HELP),
    inputs: list[str] = typer.Argument(None, help=".pose files, videos, folders of them, or a shard directory"),
    texts: Optional[list[str]] = typer.Option(None, "--text", "-t", help="text to embed (repeatable)"),
    manifest: Optional[str] = typer.Option(None, help="embed the poses of a manifest CSV / folder / 'lexicon'"),
    spoken_language: Optional[str] = typer.Option(None, "--spoken-language", "-s"),
    signed_language: Optional[str] = typer.Option(None, "--signed-language", "-l"),
    out: Path = typer.Option(..., "--out", "-o", help=".npy (embeddings only) or .parquet (with metadata)"),
    batch_size: int = 32,
    precision: str = typer.Option("auto", help=PRECISION_HELP),
    threads: Optional[int] = typer.Option(None, help=THREADS_HELP),
) -> None:
    """Embed poses or texts into OUT (.npy, or .parquet with one row per item and its metadata)."""
    import pandas as pd

    from signclip.data.shards import is_shard_dir
    from signclip.errors import PoseInputError
    from signclip.export.embeddings import check_output, embed_shards, write_embeddings

    check_output(out)
    threads_line = use_threads(threads).describe()
    if inputs and len(inputs) == 1 and is_shard_dir(inputs[0]):  # every rank embeds its row groups (torchrun)
        from signclip.training.distributed import cleanup

        if embed_shards(model_dir(model), inputs[0], out, batch_size=batch_size, precision=precision) is not None:
            typer.echo(f"wrote embeddings of {inputs[0]} to {out}")
        cleanup()
        return
    m = load_model(model, precision)
    if texts:
        emb = m.encode_text(texts, spoken_language, signed_language, batch_size=batch_size, progress=True)
        meta = pd.DataFrame({"text": texts, "prompt": m.prompts(texts, spoken_language, signed_language)})
    else:
        if manifest:
            from signclip.data.manifests import load_dataset

            meta = load_dataset(manifest)
            paths = meta["path"].tolist()
        else:
            paths = [str(p) for i in inputs or [] for p in (pose_files(Path(i)) if Path(i).is_dir() else [Path(i)])]
            meta = pd.DataFrame({"path": paths})
        if not paths:
            raise UsageError("nothing to embed: give .pose files, folders, --manifest or --text")
        usable = m.encode_usable_poses(paths, batch_size=batch_size, progress=True)
        emb, skipped = usable.embeddings, usable.skipped
        if not len(emb):
            raise PoseInputError(f"nothing embedded: all {len(paths)} pose(s) are unusable, e.g. "
                                 f"{next(iter(skipped.values()))}")
        if skipped:
            typer.echo(f"skipped {len(skipped)} of {len(paths)} unusable pose(s):", err=True)
            for message in skipped.values():
                typer.echo(f"  {message}", err=True)
        meta = meta.drop(index=meta.index[list(skipped)])
    write_embeddings(emb, meta, out)
    typer.echo(f"wrote {len(emb)} embeddings of dimension {emb.shape[1]} to {out} (CPU: {threads_line}; precision "
               f"{m.precision})")


def pose_cmd(
    source: Path = typer.Argument(..., help="a video, or a folder searched recursively for videos (with "
                                  "--anonymize also .pose files)"),
    out: Path = typer.Option(..., "--out", "-o", help="output folder (mirrors the input folder), or a .pose file"),
    workers: int = typer.Option(max(1, min(2, os.cpu_count() or 1)), "--workers", "-w",
                                help="worker processes (one video each)"),
    overwrite: bool = typer.Option(False, help="convert again even when the .pose file exists"),
    anonymize: bool = typer.Option(False, "--anonymize", help="write anonymised poses: the signer's appearance "
                                   "(body proportions, face shape) replaced by the mean one (the paper's E6.2); "
                                   ".pose files are taken too"),
    appearance: Optional[Path] = typer.Option(None, "--appearance", help="with --anonymize: the appearance to "
                                              "give instead of the mean one (the first frame of this .pose file)"),
) -> None:
    """Convert videos to .pose files (MediaPipe Holistic, fps kept); already converted videos are skipped.
    With --anonymize, videos and .pose files are written as anonymised .pose files."""
    from signclip.pose.anonymize import MEAN, appearance_pose
    from signclip.pose.video import convert_videos

    if appearance is not None and not anonymize:
        raise UsageError("--appearance: give --anonymize too")
    target = (str(appearance) if appearance is not None else MEAN) if anonymize else None
    if target:
        appearance_pose(target)  # a bad appearance file fails once, here
    summary = convert_videos(source, out, workers=workers, overwrite=overwrite, anonymize=target)
    typer.echo(str(summary))
    if summary.failed:
        raise typer.Exit(1)
