"""The one row loader: a table's rows read, cropped and preprocessed into (T, P, D) arrays."""
from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from signclip.config import PoseConfig
from signclip.data.manifests import optional_column
from signclip.errors import PoseInputError
from signclip.pose.io import crop_pose, read_pose
from signclip.pose.preprocess import pose_to_array


@dataclass
class SplitData:
    """Preprocessed poses of one split: the rows kept, their arrays, and their prompts once a model made them."""

    df: pd.DataFrame
    arrays: list[np.ndarray]
    prompts: list[str] = field(default_factory=list)


def iter_arrays(df: pd.DataFrame, cfg: PoseConfig, progress: bool = True, errors: list[str] | None = None,
                desc: str = "preprocessing poses") -> Iterator[tuple[int, np.ndarray, tuple]]:
    """(position, (T, P, D) float32 array, row) of every usable row of ``df``, in order. A row whose pose
    cannot be read or preprocessed is skipped, its message (naming the file) appended to ``errors``."""
    rows = df.itertuples(index=False)
    for i, row in enumerate(tqdm(rows, total=len(df), desc=desc, disable=not progress, unit="pose")):
        try:
            pose = crop_pose(read_pose(row.path), row.start_ms, row.end_ms, str(row.path))
            yield i, pose_to_array(pose, cfg, str(row.path)), row
        except PoseInputError as e:
            if errors is not None:
                errors.append(str(e))


def load_arrays(df: pd.DataFrame, cfg: PoseConfig, progress: bool = True
                ) -> tuple[list[np.ndarray], pd.DataFrame, list[str]]:
    """Preprocess every row once. Rows that fail are dropped with a warning naming the file.

    Returns the arrays, the kept rows and the error messages of dropped rows."""
    arrays, keep, errors = [], [], []
    for i, array, _ in iter_arrays(df, cfg, progress, errors):
        arrays.append(array)
        keep.append(i)
    if errors:
        warnings.warn(f"skipped {len(errors)} unusable pose(s), e.g. {errors[0]}", stacklevel=2)
    return arrays, df.iloc[keep].reset_index(drop=True), errors


def none_usable(what: str, rows: int, errors: list[str]) -> PoseInputError:
    """The error for ``rows`` rows of which no pose is usable: how many, and the first reason."""
    return PoseInputError(f"{what}: none of its {rows} pose(s) is usable" + (f", e.g. {errors[0]}" if errors else ""))


def load_split(df: pd.DataFrame, cfg: PoseConfig, progress: bool = True) -> SplitData:
    """The rows of one split, preprocessed (unusable ones dropped with a warning)."""
    arrays, kept, _ = load_arrays(df, cfg, progress)
    return SplitData(kept, arrays)


def table_prompts(model, df: pd.DataFrame) -> list[str]:
    """The prompt ``<spoken> <signed> text`` of every row, in ``model``'s template and languages."""
    return model.prompts(df["text"].tolist(), optional_column(df, "spoken_language"),
                         optional_column(df, "signed_language"))
