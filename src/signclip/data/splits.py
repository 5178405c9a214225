"""Train / validation / test splits in a table's ``split`` column, and where each row's split came from.

:func:`ensure_split` is the one place a dataset gets its splits (training, evaluation and packing call
it). Its rules, which users can rely on:

* rows that have a split keep it, and the test set is exactly the rows marked ``test`` when there are any:
  nothing else joins it;
* rows without a split are split at random with the seed (by ``group``, e.g. the signer, when given):
  into train / validation / test when no row is marked test, into train / validation otherwise;
* with ``group``, a group never spans the test set and another split: rows without a split whose group
  has test rows are left out (``split`` "excluded");
* when no row ends up in validation, a validation set is carved out of the training rows, by ``group``
  when there are enough groups to spare one, else at random.

Every row's ``split_origin`` says what decided its split ("manifest", "random", "by <group>",
"excluded"); :func:`split_summary` turns that into the lines training prints.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from signclip.config import TrainConfig

SPLITS = ("train", "validation", "test")
ORIGIN = "split_origin"
MIN_GROUPS_FOR_VALIDATION = 3  # a validation group is carved only when at least 2 groups stay for training


def split_options(val_fraction: float | None, test_fraction: float | None, seed: int | None
                  ) -> tuple[float, float, int]:
    """The split fractions and seed, each one not given taken from :class:`TrainConfig` (their one owner)."""
    d = TrainConfig()
    return (d.val_fraction if val_fraction is None else val_fraction,
            d.test_fraction if test_fraction is None else test_fraction, d.seed if seed is None else seed)


def split_dataset(df: pd.DataFrame, val_fraction: float | None = None, test_fraction: float | None = None,
                  seed: int | None = None, group: str | None = None) -> pd.DataFrame:
    """Deterministic train/validation/test split in a ``split`` column (fractions and seed: TrainConfig's
    by default).

    Rows that already have a split keep it. ``group`` (e.g. ``"signer"``) keeps each group in one
    split (signer-independent evaluation)."""
    val_fraction, test_fraction, seed = split_options(val_fraction, test_fraction, seed)
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


def ensure_split(df: pd.DataFrame, val_fraction: float | None = None, test_fraction: float | None = None,
                 seed: int | None = None, group: str | None = None) -> pd.DataFrame:
    """The table with every row in a split (or "excluded") and a ``split_origin`` column: see the module
    docstring for the rules (fractions and seed: TrainConfig's by default). A table whose rows already all
    have a split and a validation set is returned as it is (plus ``split_origin`` "manifest" where missing)."""
    val_fraction, test_fraction, seed = split_options(val_fraction, test_fraction, seed)
    df = df.copy()
    if ORIGIN not in df.columns:
        df[ORIGIN] = np.where(df["split"].isin(SPLITS), "manifest", None)
    group = group if group and group in df.columns and df[group].notna().any() else None
    blank = ~df["split"].isin(SPLITS + ("excluded",))
    if group is not None and blank.any():
        test_groups = set(df.loc[df["split"] == "test", group].astype(str))
        leak = blank & df[group].astype(str).isin(test_groups)
        df.loc[leak, ["split", ORIGIN]] = ["excluded", f"excluded: its {group} is in the test set"]
        blank &= ~leak
    if blank.any():
        has_test = (df["split"] == "test").any()
        part = split_dataset(df[blank].assign(split=None), val_fraction, 0.0 if has_test else test_fraction, seed,
                             group)
        df.loc[blank, "split"] = part["split"]
        df.loc[blank, ORIGIN] = f"by {group}" if group else "random"
    if not (df["split"] == "validation").any() and val_fraction > 0:
        df = carve_validation(df, val_fraction, seed, group)
    return df


def carve_validation(df: pd.DataFrame, val_fraction: float, seed: int, group: str | None) -> pd.DataFrame:
    """Move ``val_fraction`` of the training rows to validation: whole groups when the training rows have
    at least :data:`MIN_GROUPS_FOR_VALIDATION` of them, else rows at random."""
    train = df.index[df["split"] == "train"]
    if len(train) < 2:
        return df
    groups = df.loc[train, group].astype(str) if group else None
    by_group = groups is not None and groups.nunique() >= MIN_GROUPS_FOR_VALIDATION
    part = split_dataset(df.loc[train].assign(split=None), val_fraction, 0.0, seed, group if by_group else None)
    moved = part.index[part["split"] == "validation"]
    df.loc[moved, "split"] = "validation"
    df.loc[moved, ORIGIN] = f"validation carved from training rows by {group}" if by_group else \
        "validation carved from training rows at random"
    return df


def split_summary(df: pd.DataFrame) -> list[str]:
    """One line per (split, origin): how many rows, and what decided it."""
    counts = df.groupby(["split", ORIGIN], dropna=False, sort=False).size()
    order = {s: i for i, s in enumerate(SPLITS + ("excluded",))}
    lines = []
    for (split, origin), n in sorted(counts.items(), key=lambda kv: (order.get(kv[0][0], 9), str(kv[0][1]))):
        lines.append(f"{split}: {n} rows ({origin if isinstance(origin, str) else 'manifest'})")
    return lines
