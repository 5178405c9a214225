"""Pose–text datasets as pandas tables, and a torch Dataset over preprocessed poses.

Every source becomes one table with the columns of :data:`COLUMNS` (a CSV manifest, the embedded
lexicon, or an adapter for another keypoint format). ``path`` is absolute after loading.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from signclip.config import AugmentConfig, PoseConfig
from signclip.errors import PoseInputError
from signclip.pose.augment import augment
from signclip.pose.io import crop_pose, read_pose
from signclip.pose.layout import Layout, get_layout
from signclip.pose.preprocess import pose_to_array
from signclip.text.prompts import prompt_id

COLUMNS = ["path", "text", "spoken_language", "signed_language", "start_ms", "end_ms", "split", "signer"]
REQUIRED = ["path", "text"]


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
    return _normalise(df, root)


def load_manifest(csv_path: str | Path, root: str | Path | None = None) -> pd.DataFrame:
    """A folder of ``.pose`` files described by a CSV with columns ``path, text`` and optionally
    ``spoken_language, signed_language, start_ms, end_ms, split (train/validation/test), signer``.
    Relative paths are resolved against ``root`` (default: the CSV's folder)."""
    csv_path = Path(csv_path)
    df = pd.read_csv(csv_path, dtype={"text": str, "signer": str, "split": str})
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"{csv_path}: manifest lacks column(s) {missing}; has {list(df.columns)}")
    return _normalise(df, Path(root) if root else csv_path.parent)


def load_dataset(source: str | Path | None) -> pd.DataFrame:
    """``None`` or ``"lexicon"``: the embedded lexicon; a CSV file; or a folder holding ``manifest.csv``.
    Kaggle ASL Signs (``train.csv``) and ``ACTION/SEQUENCE/FRAME.npy`` folders are detected and read by
    :mod:`signclip.data.adapters` (``read_pose`` reads their files)."""
    if source is None or str(source) == "lexicon":
        return load_lexicon()
    source = Path(source)
    from signclip.data.adapters import detect_dataset, load_adapted

    kind = detect_dataset(source)
    if kind is not None:
        return load_adapted(source, kind)
    if source.is_dir():
        source = source / "manifest.csv"
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such manifest")
    return load_manifest(source)


def _normalise(df: pd.DataFrame, root: Path) -> pd.DataFrame:
    df = df.copy()
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = np.nan if col in ("start_ms", "end_ms") else None
    df["path"] = [str(p if Path(p).is_absolute() else root / p) for p in df["path"]]
    df["text"] = df["text"].astype(str)
    return df[COLUMNS + [c for c in df.columns if c not in COLUMNS]].reset_index(drop=True)


def split_dataset(df: pd.DataFrame, val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 42,
                  group: str | None = None) -> pd.DataFrame:
    """Deterministic train/validation/test split in a ``split`` column.

    Rows that already have a split keep it. ``group`` (e.g. ``"signer"``) keeps each group in one
    split (signer-independent evaluation)."""
    df = df.copy()
    has = df["split"].isin(["train", "validation", "test"])
    todo = df.index[~has]
    rng = np.random.default_rng(seed)
    if group and df[group].notna().any():
        groups = np.array(sorted(df.loc[todo, group].astype(str).unique()))
        rng.shuffle(groups)
        n_test = max(1, round(len(groups) * test_fraction)) if test_fraction > 0 else 0
        n_val = max(1, round(len(groups) * val_fraction)) if val_fraction > 0 else 0
        assign = {g: "test" for g in groups[:n_test]} | {g: "validation" for g in groups[n_test:n_test + n_val]}
        df.loc[todo, "split"] = [assign.get(g, "train") for g in df.loc[todo, group].astype(str)]
        return df
    order = rng.permutation(todo)
    n_test = round(len(order) * test_fraction)
    n_val = round(len(order) * val_fraction)
    df.loc[order[:n_test], "split"] = "test"
    df.loc[order[n_test:n_test + n_val], "split"] = "validation"
    df.loc[order[n_test + n_val:], "split"] = "train"
    return df


def load_arrays(df: pd.DataFrame, cfg: PoseConfig, progress: bool = True,
                reader: Callable[[str], object] = read_pose) -> tuple[list[np.ndarray], pd.DataFrame, list[str]]:
    """Preprocess every row once. Rows that fail are dropped with a warning naming the file.

    Returns the arrays, the kept rows and the error messages of dropped rows."""
    arrays, keep, errors = [], [], []
    for i, row in enumerate(tqdm(df.itertuples(index=False), total=len(df), desc="preprocessing poses",
                                 disable=not progress, unit="pose")):
        try:
            pose = crop_pose(reader(row.path), row.start_ms, row.end_ms, str(row.path))
            arrays.append(pose_to_array(pose, cfg, str(row.path)))
            keep.append(i)
        except PoseInputError as e:
            errors.append(str(e))
    if errors:
        warnings.warn(f"skipped {len(errors)} unusable pose(s), e.g. {errors[0]}", stacklevel=2)
    return arrays, df.iloc[keep].reset_index(drop=True), errors


def training_sample(array: np.ndarray, prompt: str, lang_prompt: str | None, layout: Layout, cfg: PoseConfig,
                    augment_cfg: AugmentConfig | None, language_prompt_p: float, rng_key: tuple
                    ) -> tuple[np.ndarray, str, int]:
    """One training example: the (augmented) pose, its prompt and the prompt's id.

    With probability ``language_prompt_p`` the prompt is the text-free ``<en> <ase>`` of its language,
    which teaches sign-language identification. Random draws come from ``rng_key`` (seed, epoch,
    index), so an epoch is reproducible, also after a resume."""
    rng = np.random.default_rng(rng_key)
    if augment_cfg is not None:
        array = augment(array, layout, augment_cfg, rng, cfg.max_frames)
    if lang_prompt is not None and language_prompt_p > 0 and rng.random() < language_prompt_p:
        prompt = lang_prompt
    return array, prompt, prompt_id(prompt)


class PoseTextDataset(Dataset):
    """In-memory preprocessed poses with their prompts; augments when ``augment_cfg`` is given."""

    def __init__(self, arrays: list[np.ndarray], prompts: list[str], cfg: PoseConfig,
                 augment_cfg: AugmentConfig | None = None, seed: int = 0,
                 language_prompts: list[str | None] | None = None, language_prompt_p: float = 0.0):
        self.arrays, self.prompts, self.cfg, self.augment_cfg, self.seed = arrays, prompts, cfg, augment_cfg, seed
        self.language_prompts = language_prompts or [None] * len(arrays)
        self.language_prompt_p = language_prompt_p
        self.layout = get_layout(cfg.layout)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, i: int) -> tuple[np.ndarray, str, int]:
        return training_sample(self.arrays[i], self.prompts[i], self.language_prompts[i], self.layout, self.cfg,
                               self.augment_cfg, self.language_prompt_p, (self.seed, self.epoch, i))
