"""Dataset tables: every source becomes one pandas table with the columns of :data:`COLUMNS`.

Sources: the embedded fingerspelling lexicon, a CSV manifest (or a folder holding ``manifest.csv``), a
Kaggle "ASL Signs" ``train.csv`` and ``ACTION/SEQUENCE/FRAME.npy`` folder trees. ``path`` is absolute
after loading; :func:`signclip.pose.io.read_pose` reads every path a table can hold.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from signclip.pose.formats import frame_number, is_frame_folder_root

# text: the sentence or word; glosses (optional): its space-separated gloss sequence (continuous recognition)
COLUMNS = ["path", "text", "glosses", "spoken_language", "signed_language", "start_ms", "end_ms", "split", "signer"]
REQUIRED = ["path", "text"]
KAGGLE_COLUMNS = ["path", "participant_id", "sequence_id", "sign"]


def optional(value) -> str | None:
    """A table cell as a string, or None where it is missing (NaN, None)."""
    return None if value is None or pd.isna(value) else str(value)


def optional_column(df: pd.DataFrame, column: str) -> list[str | None]:
    """A column's cells as strings, None where missing (e.g. languages for prompts)."""
    return [optional(v) for v in df[column]]


def lexicon_dir() -> Path:
    """The fingerspelling lexicon shipped by PyPI ``spoken-to-signed`` (600 .pose, 19 sign languages)."""
    return Path(str(resources.files("spoken_to_signed") / "assets" / "fingerspelling_lexicon"))


def load_lexicon() -> pd.DataFrame:
    """The embedded default dataset: one fingerspelled letter per (sign language, letter)."""
    root = lexicon_dir()
    df = pd.read_csv(root / "data.csv")
    df = df.rename(columns={"words": "text", "start": "start_ms", "end": "end_ms"})
    df["start_ms"] = np.nan  # the lexicon's start/end span the whole file
    df["end_ms"] = np.nan
    return normalise_table(df, root)


def load_manifest(csv_path: str | Path, root: str | Path | None = None) -> pd.DataFrame:
    """A folder of pose files described by a CSV with columns ``path, text`` and optionally ``glosses``
    (space-separated), ``spoken_language, signed_language, start_ms, end_ms, split (train/validation/test), signer``.
    Relative paths are resolved against ``root`` (default: the CSV's folder)."""
    csv_path = Path(csv_path)
    df = pd.read_csv(csv_path, dtype={"text": str, "glosses": str, "signer": str, "split": str})
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"{csv_path}: manifest lacks column(s) {missing}; has {list(df.columns)}")
    return normalise_table(df, Path(root) if root else csv_path.parent)


def load_frame_folders(root: str | Path, signed_language: str | None = None,
                       spoken_language: str | None = None) -> pd.DataFrame:
    """A table with one row per ``ROOT/ACTION/SEQUENCE`` folder; the action is the text."""
    root = Path(root)
    rows = [{"path": str(seq), "text": action.name, "sequence": seq.name}
            for action in sorted(p for p in root.iterdir() if p.is_dir())
            for seq in sorted((p for p in action.iterdir() if p.is_dir()), key=frame_number)
            if any(seq.glob("*.npy"))]
    if not rows:
        raise FileNotFoundError(f"{root}: no ACTION/SEQUENCE/FRAME.npy folders")
    df = pd.DataFrame(rows)
    df["signed_language"], df["spoken_language"] = signed_language, spoken_language
    return normalise_table(df, root)


def load_kaggle_asl_signs(csv_path: str | Path, signed_language: str = "ase",
                          spoken_language: str = "en") -> pd.DataFrame:
    """The Kaggle ASL Signs ``train.csv`` as a table: text = sign, signer = participant_id."""
    csv_path = Path(csv_path)
    df = pd.read_csv(csv_path, dtype={"sign": str, "participant_id": str})
    missing = [c for c in KAGGLE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{csv_path}: not a Kaggle ASL Signs train.csv, lacks {missing}")
    df = df.rename(columns={"sign": "text", "participant_id": "signer"})
    df["signed_language"], df["spoken_language"] = signed_language, spoken_language
    return normalise_table(df, csv_path.parent)


def is_kaggle_csv(csv_path: Path) -> bool:
    """Whether a CSV has the Kaggle ASL Signs train.csv columns."""
    try:
        cols = pd.read_csv(csv_path, nrows=0).columns
    except Exception:
        return False
    return all(c in cols for c in KAGGLE_COLUMNS)


def load_dataset(source: str | Path | None) -> pd.DataFrame:
    """``None`` or ``"lexicon"``: the embedded lexicon; a CSV file; a folder holding ``manifest.csv``; a
    Kaggle ASL Signs ``train.csv`` (or its folder); or ``ACTION/SEQUENCE/FRAME.npy`` folders."""
    if source is None or str(source) == "lexicon":
        return load_lexicon()
    source = Path(source)
    if source.is_dir() and not (source / "manifest.csv").is_file():
        if (source / "train.csv").is_file() and is_kaggle_csv(source / "train.csv"):
            return load_kaggle_asl_signs(source / "train.csv")
        if is_frame_folder_root(source):
            return load_frame_folders(source)
    if source.suffix.lower() == ".csv" and source.is_file() and is_kaggle_csv(source):
        return load_kaggle_asl_signs(source)
    if source.is_dir():
        source = source / "manifest.csv"
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such manifest")
    return load_manifest(source)


SOURCE = "source"  # the column naming each row's source when several are trained together


def source_name(source: str | Path) -> str:
    """A short name for a data source: ``lexicon``, a folder's name, or a CSV's stem (its folder's name for
    ``manifest.csv``)."""
    if str(source) == "lexicon":
        return "lexicon"
    path = Path(source)
    if path.suffix.lower() == ".csv":
        return path.parent.name if path.stem == "manifest" and path.parent.name else path.stem
    return path.name or str(source)


def load_datasets(sources: Sequence[str | Path]) -> pd.DataFrame:
    """One source as :func:`load_dataset` gives it; several as one table with a :data:`SOURCE` column (each
    source's name, made unique), every source keeping its own languages, splits and columns."""
    if len(sources) == 1:
        return load_dataset(sources[0])
    tables, names = [], []
    for source in sources:
        name = base = source_name(source)
        k = 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
        tables.append(load_dataset(source).assign(**{SOURCE: name}))
    return pd.concat(tables, ignore_index=True)


def normalise_table(df: pd.DataFrame, root: Path) -> pd.DataFrame:
    """Every column of :data:`COLUMNS` (missing ones empty) first, paths absolute, texts strings."""
    df = df.copy()
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = np.nan if col in ("start_ms", "end_ms") else None
    df["path"] = [os.path.abspath(root / p) for p in df["path"]]  # the same from any working directory
    df["text"] = df["text"].astype(str)
    return df[COLUMNS + [c for c in df.columns if c not in COLUMNS]].reset_index(drop=True)
