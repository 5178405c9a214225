"""Split semantics users can rely on (signclip.data.splits.ensure_split)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from signclip.data.splits import ensure_split, pick_groups, split_summary, unseen_group


def table(n: int = 60, signers: int = 6) -> pd.DataFrame:
    return pd.DataFrame({"path": [f"{i}.pose" for i in range(n)], "text": [f"w{i % 5}" for i in range(n)],
                         "split": None, "signer": [f"s{i % signers}" for i in range(n)]})


def test_rows_marked_test_are_exactly_the_test_set():
    """Marking only the test rows once moved 20 % of the other rows into test as well."""
    df = table()
    df.loc[df.index % 7 == 0, "split"] = "test"  # every signer has test rows: validation at random
    out = ensure_split(df)
    assert (out["split"] == "test").sum() == 9 and out.loc[df.index % 7 == 0, "split"].eq("test").all()
    assert set(out.loc[df["split"].isna(), "split"]) == {"train", "validation"}  # blank rows: train/validation
    assert set(out.loc[df["split"].isna(), "split_origin"]) == {"random"}


def test_validation_is_drawn_from_the_training_signers_when_the_test_signers_are_unseen():
    """Holding a whole signer out for validation cost 0.05 1-NN on unseen traduttore signers (RESULTS.md):
    validation rows are drawn at random; unseen_group() tells that the test signers are unseen."""
    df = table()
    df.loc[df["signer"] == "s0", "split"] = "test"
    assert unseen_group(df) == "signer"
    out = ensure_split(df)
    assert (out["split"] == "test").sum() == 10 and set(out.loc[out["split"] == "test", "signer"]) == {"s0"}
    val, train = (set(out.loc[out["split"] == s, "signer"]) for s in ("validation", "train"))
    assert val and val <= train and "s0" not in val | train
    assert set(out.loc[df["split"].isna(), "split_origin"]) == {"random"}


def test_unseen_sessions_of_one_signer_validated_by_session_when_asked():
    """One person recorded in sessions, one session held out; --split-by session: validation is a whole session."""
    df = table(n=50, signers=1).assign(session=[f"k{i % 5}" for i in range(50)])
    df.loc[df["session"] == "k2", "split"] = "test"
    assert unseen_group(df) == "session"
    out = ensure_split(df, group="session")
    val, train = (set(out.loc[out["split"] == s, "session"]) for s in ("validation", "train"))
    assert len(val) == 1 and not val & train and "k2" not in val | train


def test_validation_groups_hold_about_the_fraction():
    """Two signers of 1,273 and 210 clips (traduttore without its third): the small one validates."""
    sizes = pd.Series({"TheCamNelson": 1273, "Alex": 210})
    for seed in range(5):
        assert pick_groups(sizes, 0.1, np.random.default_rng(seed)) == {"Alex"}
    many = pd.Series({f"s{i}": 10 for i in range(50)})
    assert len(pick_groups(many, 0.1, np.random.default_rng(0))) == 5
    assert pick_groups(pd.Series({"a": 5}), 0.5, np.random.default_rng(0)) == set()  # never every group


def test_each_source_is_split_on_its_own():
    a = table(n=30).assign(source="a")
    a.loc[a["signer"] == "s0", "split"] = "test"
    b = table(n=40).assign(source="b", signer=None)
    out = ensure_split(pd.concat([a, b], ignore_index=True))
    a_out, b_out = out[out["source"] == "a"], out[out["source"] == "b"]
    assert set(a_out.loc[a_out["split"] == "test", "signer"]) == {"s0"} and (a_out["split"] == "test").sum() == 5
    assert set(b_out["split"]) == {"train", "validation", "test"} and (b_out["split"] == "test").sum() == 8
    assert any(line.startswith("a: test: 5 rows") for line in split_summary(out))


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
