"""Split semantics users can rely on (signclip.data.splits.ensure_split)."""
from __future__ import annotations

import pandas as pd

from signclip.data.splits import ensure_split, split_summary


def table(n: int = 60, signers: int = 6) -> pd.DataFrame:
    return pd.DataFrame({"path": [f"{i}.pose" for i in range(n)], "text": [f"w{i % 5}" for i in range(n)],
                         "split": None, "signer": [f"s{i % signers}" for i in range(n)]})


def test_rows_marked_test_are_exactly_the_test_set():
    """Marking only the test rows once moved 20 % of the other rows into test as well."""
    df = table()
    df.loc[df["signer"] == "s0", "split"] = "test"
    out = ensure_split(df)
    assert (out["split"] == "test").sum() == 10 and set(out.loc[out["split"] == "test", "signer"]) == {"s0"}
    assert set(out.loc[df["split"].isna(), "split"]) == {"train", "validation"}  # blank rows: train/validation
    assert set(out.loc[df["split"].isna(), "split_origin"]) == {"random"}


def test_blank_rows_are_not_dropped_when_some_are_marked_train():
    """When any row was marked train, blank rows were once dropped without a word."""
    df = table()
    df.loc[:9, "split"] = "train"
    df.loc[10:14, "split"] = "test"
    out = ensure_split(df)
    assert out["split"].isin(["train", "validation", "test"]).all()
    assert (out["split"] == "test").sum() == 5 and (out["split"] == "validation").sum() > 0


def test_a_signer_never_spans_test_and_another_split():
    df = table()
    df.loc[df.index[df["signer"] == "s1"][:4], "split"] = "test"  # some of s1's rows marked, the rest blank
    out = ensure_split(df, group="signer")
    s1 = out[out["signer"] == "s1"]
    assert set(s1["split"]) == {"test", "excluded"}
    assert set(out.loc[out["split"].isin(["train", "validation"]), "signer"]).isdisjoint({"s1"})
    by_split = out[out["split"] != "excluded"].groupby("signer")["split"].nunique()
    assert (by_split == 1).all()  # every other signer in exactly one split
    assert any("excluded" in line for line in split_summary(out))


def test_validation_is_carved_from_the_training_rows():
    df = table()
    df["split"] = ["test" if i % 5 == 0 else "train" for i in range(len(df))]
    out = ensure_split(df, val_fraction=0.1)
    val = out[out["split"] == "validation"]
    assert len(val) == 5 and (df.loc[val.index, "split"] == "train").all()  # only training rows move
    assert val["split_origin"].str.startswith("validation carved from training rows at random").all()
    by_signer = ensure_split(df, val_fraction=0.1, group="signer")
    val = by_signer[by_signer["split"] == "validation"]
    assert val["signer"].nunique() == 1 and not (by_signer.loc[by_signer["split"] == "train", "signer"]
                                                 .isin(val["signer"]).any())


def test_a_complete_table_is_kept_as_it_is():
    df = table()
    df["split"] = ["train"] * 40 + ["validation"] * 10 + ["test"] * 10
    out = ensure_split(df)
    assert out["split"].tolist() == df["split"].tolist() and set(out["split_origin"]) == {"manifest"}
    assert split_summary(out) == ["train: 40 rows (manifest)", "validation: 10 rows (manifest)",
                                  "test: 10 rows (manifest)"]


def test_split_defaults_are_the_train_configs(lexicon):
    """0.1 / 0.2 / 42 were written in four places (TrainConfig, both functions, `signclip shards`): the
    functions now take what they are not given from TrainConfig."""
    import inspect

    from signclip.config import TrainConfig
    from signclip.data.splits import split_dataset

    cfg = TrainConfig()
    df = lexicon.head(60)
    pd.testing.assert_frame_equal(ensure_split(df), ensure_split(df, cfg.val_fraction, cfg.test_fraction, cfg.seed))
    pd.testing.assert_frame_equal(split_dataset(df), split_dataset(df, cfg.val_fraction, cfg.test_fraction, cfg.seed))
    for fn in (split_dataset, ensure_split):
        params = inspect.signature(fn).parameters
        assert all(params[name].default is None for name in ("val_fraction", "test_fraction", "seed"))
