"""Train / validation / test splits in a table's ``split`` column."""
from __future__ import annotations

import numpy as np
import pandas as pd

SPLITS = ("train", "validation", "test")


def split_dataset(df: pd.DataFrame, val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 42,
                  group: str | None = None) -> pd.DataFrame:
    """Deterministic train/validation/test split in a ``split`` column.

    Rows that already have a split keep it. ``group`` (e.g. ``"signer"``) keeps each group in one
    split (signer-independent evaluation)."""
    df = df.copy()
    has = df["split"].isin(SPLITS)
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


def ensure_split(df: pd.DataFrame, val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 42,
                 group: str | None = None) -> pd.DataFrame:
    """The table with every row in a split: returned as it is when each row has one, else the rows
    without one are split by :func:`split_dataset`."""
    if df["split"].isin(SPLITS).all():
        return df
    return split_dataset(df, val_fraction, test_fraction, seed, group)
