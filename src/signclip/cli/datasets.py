"""``signclip prepare``: a manifest from one of the paper's datasets in its published layout."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def language_map(values: list[str] | None) -> dict[str, str]:
    """``FOLDER=CODE`` options as a dict."""
    pairs = {}
    for value in values or []:
        folder, sep, code = value.partition("=")
        if not sep or not folder.strip() or not code.strip():
            raise ValueError(f"--language {value!r}: expected FOLDER=CODE, e.g. en.us=ase")
        pairs[folder.strip()] = code.strip()
    return pairs


def prepare_cmd(
    dataset: str = typer.Argument(..., help="asl-citizen, sem-lex, wlasl, how2sign, phoenix-2014t, csl-daily, "
                                  "spreadthesign or kaggle"),
    root: Path = typer.Argument(..., help="the downloaded dataset, in the layout it is published in"),
    out: Path = typer.Option(..., "--out", "-o", help="the manifest CSV to write (paths relative to its folder)"),
    poses: Optional[Path] = typer.Option(None, "--poses", help="the .pose files that `signclip pose ROOT -o POSES` "
                                         "converted from ROOT's videos: list these instead of the videos"),
    clean_glosses: Optional[bool] = typer.Option(None, "--clean-glosses/--no-clean-glosses",
                                                 help="the paper's gloss clean-up (lower case, no variant number "
                                                      "or #: HOUSE1 -> house); default: on, off for how2sign, "
                                                      "phoenix-2014t, csl-daily and spreadthesign (sentences, "
                                                      "words)"),
    spoken_language: Optional[str] = typer.Option(None, "--spoken-language", "-s",
                                                  help="spoken-language code of the texts; default: the "
                                                       "dataset's (en; phoenix-2014t de, csl-daily zh)"),
    signed_language: Optional[str] = typer.Option(None, "--signed-language", "-l",
                                                  help="sign-language code; default: the dataset's (ase; "
                                                       "phoenix-2014t gsg, csl-daily csl; spreadthesign: the "
                                                       "language folder's name)"),
    language: Optional[list[str]] = typer.Option(None, "--language", help="spreadthesign: FOLDER=CODE, the "
                                                 "sign-language code of a language folder (repeatable)"),
    known_glosses: Optional[Path] = typer.Option(None, "--known-glosses", help="leave out test rows whose cleaned "
                                                 "gloss is not in this vocabulary (one gloss per line, or a "
                                                 "manifest CSV such as the pre-training data's): the paper's "
                                                 "third gloss clean-up"),
) -> None:
    """Write a manifest of a dataset of the paper (ASL Citizen, Sem-Lex, WLASL, How2Sign, Spreadthesign-style
    folders, Kaggle ASL Signs) or of a sentence-level one with glosses (PHOENIX-2014-T, CSL-Daily) from its
    published layout: texts, glosses, splits and signers as the dataset gives them."""
    from signclip.data.prepare import (
        SENTENCE_DATASETS,
        dataset_name,
        keep_known_glosses,
        prepare_dataset,
        read_vocabulary,
        write_manifest,
    )
    from signclip.pose.video import is_video_path

    name = dataset_name(dataset)
    kwargs = {"poses": poses}
    if spoken_language:
        kwargs["spoken_language"] = spoken_language
    if name == "spreadthesign":
        kwargs["languages"] = language_map(language)
    elif signed_language:
        kwargs["signed_language"] = signed_language
    if clean_glosses is not None:
        kwargs["clean_glosses"] = clean_glosses
    vocabulary = read_vocabulary(known_glosses) if known_glosses is not None else None
    table = prepare_dataset(name, root, **kwargs)
    if vocabulary is not None:
        tests = int((table["split"] == "test").sum())
        table, unknown = keep_known_glosses(table, vocabulary)
        typer.echo(f"--known-glosses: left out {unknown} of {tests} test rows whose gloss is not among the "
                   f"{len(vocabulary)} of {known_glosses}")
    write_manifest(table, out)

    splits = table["split"].value_counts().to_dict()
    split_text = ", ".join(f"{s} {splits[s]}" for s in ("train", "validation", "test") if s in splits) or "no split"
    signers = table["signer"].nunique()
    typer.echo(f"wrote {len(table)} rows to {out}: {split_text}; {table['text'].nunique()} texts"
               + (f", {signers} signers" if signers else "")
               + (f", {table['glosses'].notna().sum()} gloss sequences" if "glosses" in table else "")
               + ("" if name in SENTENCE_DATASETS or "raw_text" not in table else " (glosses cleaned up)"))
    skipped = table.attrs.get("skipped", [])
    if skipped:
        typer.echo(f"left out {len(skipped)} rows, e.g. {skipped[0]}", err=True)
    videos = sum(is_video_path(p) for p in table["path"])
    if videos:
        typer.echo(f"{videos} rows point at videos, converted with MediaPipe at every read: convert them once with "
                   f"`signclip pose {root} -o POSES` (pip install \"signclip[video]\") and prepare again with "
                   "--poses POSES")
    if not splits:
        typer.echo("no split in the data: train with --split-by signer (signer-independent) where there are "
                   "signers; otherwise a seeded random split is drawn")
