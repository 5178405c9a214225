"""Train / validation / test splits in a table's ``split`` column, and where each row's split came from.

:func:`ensure_split` is the one place a dataset gets its splits (training, evaluation and packing call
it). Its rules, which users can rely on:

* rows that have a split keep it, and the test set is exactly the rows marked ``test`` when there are any:
  nothing else joins it;
* rows without a split are split at random with the seed (by ``group``, e.g. the signer, when given):
  into train / validation / test when no row is marked test, into train / validation otherwise;
* with ``group``, a group never spans the test set and another split: rows without a split whose group
  has test rows are left out (``split`` "excluded");
* validation rows are drawn at random from the training rows, or by ``group`` when given: holding a whole
  signer or session out for validation when there are only a few of them costs more than the validation
  is worth (benchmarks/RESULTS.md, generalisation); :func:`unseen_group` tells when the test set is unseen
  signers / sessions so training can say so;
* whole groups are chosen at random to hold about each fraction of the rows (at least one group, never all);
* when no row ends up in validation, a validation set is carved out of the training rows, by ``group``
  when the training rows have at least two groups, else at random;
* several sources trained together (a ``source`` column) are each split on their own.

Every row's ``split_origin`` says what decided its split ("manifest", "random", "by <group>",
"excluded"); :func:`split_summary` turns that into the lines training prints.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from signclip.config import TrainConfig
from signclip.data.manifests import SOURCE

SPLITS = ("train", "validation", "test")
ORIGIN = "split_origin"
# columns naming who or when a clip was recorded, coarsest first: when the test rows' values of one of them never
# occur in the other rows, the test set is unseen signers (or sessions) and validation is carved the same way
GROUP_COLUMNS = ("signer", "session")


def unseen_group(df: pd.DataFrame) -> str | None:
    """The first of :data:`GROUP_COLUMNS` whose values on the test rows all differ from those of the other rows
    (which have at least two of them), else None."""
    test = df["split"] == "test"
    for col in GROUP_COLUMNS:
        if col not in df.columns or not test.any() or df.loc[test, col].isna().any():
            continue
        others = df.loc[~test & df["split"].ne("excluded"), col].dropna().astype(str)
        if others.nunique() >= 2 and not set(df.loc[test, col].astype(str)) & set(others):
            return col
    return None


def validation_group(df: pd.DataFrame, group: str | None = None) -> str | None:
    """``group`` or the first of :data:`GROUP_COLUMNS` whose validation values never occur among the training
    rows, else None."""
    val, train = df["split"] == "validation", df["split"] == "train"
    for col in ((group,) if group else ()) + GROUP_COLUMNS:
        if col in df.columns and val.any() and df.loc[val, col].notna().all() and df.loc[train, col].notna().any():
            if not set(df.loc[val, col].astype(str)) & set(df.loc[train, col].astype(str)):
                return col
    return None


def pick_groups(sizes: pd.Series, fraction: float, rng: np.random.Generator) -> set[str]:
    """Whole groups holding about ``fraction`` of the rows: in random order, each group is taken when it brings
    the share closer to ``fraction``; at least one group (the smallest if none), never all of them."""
    target = fraction * sizes.sum()
    chosen: set[str] = set()
    n = 0
    for g in rng.permutation(np.array(sizes.index, dtype=object)):
        if abs(n + sizes[g] - target) < abs(n - target) and len(chosen) + 1 < len(sizes):
            chosen.add(g)
            n += sizes[g]
    return chosen or ({sizes.idxmin()} if len(sizes) > 1 else set())


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
    split (signer-independent evaluation): whole groups holding about each fraction of the rows."""
    val_fraction, test_fraction, seed = split_options(val_fraction, test_fraction, seed)
    df = df.copy()
    has = df["split"].isin(SPLITS)
    todo = df.index[~has]
    rng = np.random.default_rng(seed)
    if group and df[group].notna().any():
        sizes = df.loc[todo, group].astype(str).value_counts().sort_index()
        test = pick_groups(sizes, test_fraction, rng) if test_fraction > 0 else set()
        rest = sizes.drop(list(test))
        val = pick_groups(rest, val_fraction, rng) if val_fraction > 0 else set()
        assign = {g: "test" for g in test} | {g: "validation" for g in val}
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
    have a split and a validation set is returned as it is (plus ``split_origin`` "manifest" where missing).
    Several sources (a ``source`` column) are each split on their own."""
    val_fraction, test_fraction, seed = split_options(val_fraction, test_fraction, seed)
    if SOURCE in df.columns and df[SOURCE].nunique() > 1:
        parts = [ensure_one_source(part, val_fraction, test_fraction, seed, group)
                 for _, part in df.groupby(SOURCE, sort=False)]
        return pd.concat(parts).loc[df.index]
    return ensure_one_source(df, val_fraction, test_fraction, seed, group)


def ensure_one_source(df: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int,
                      group: str | None) -> pd.DataFrame:
    """:func:`ensure_split` of one source's rows."""
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
    """Move about ``val_fraction`` of the training rows to validation: whole groups when the training rows have
    at least two of them, else rows at random."""
    train = df.index[df["split"] == "train"]
    if len(train) < 2:
        return df
    by_group = group is not None and df.loc[train, group].astype(str).nunique() >= 2
    part = split_dataset(df.loc[train].assign(split=None), val_fraction, 0.0, seed, group if by_group else None)
    moved = part.index[part["split"] == "validation"]
    df.loc[moved, "split"] = "validation"
    df.loc[moved, ORIGIN] = f"validation carved from training rows by {group}" if by_group else \
        "validation carved from training rows at random"
    return df


def split_summary(df: pd.DataFrame) -> list[str]:
    """One line per (split, origin): how many rows, and what decided it (per source when there are several)."""
    if SOURCE in df.columns and df[SOURCE].nunique() > 1:
        return [f"{name}: {line}" for name, part in df.groupby(SOURCE, sort=False)
                for line in split_summary(part.drop(columns=SOURCE))]
    counts = df.groupby(["split", ORIGIN], dropna=False, sort=False).size()
    order = {s: i for i, s in enumerate(SPLITS + ("excluded",))}
    lines = []
    for (split, origin), n in sorted(counts.items(), key=lambda kv: (order.get(kv[0][0], 9), str(kv[0][1]))):
        lines.append(f"{split}: {n} rows ({origin if isinstance(origin, str) else 'manifest'})")
    return lines
