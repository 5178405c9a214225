"""Training: run artefacts, logs, and exact resume (N steps in one go == N/2, stop, resume to N)."""
from __future__ import annotations

import copy
import json

import pandas as pd
import pytest
import torch

import signclip
from signclip.config import AugmentConfig, TrainConfig
from signclip.data.splits import split_dataset
from signclip.training import fit, prepare_splits, train
from signclip.training.batches import epoch_batches, source_weights
from signclip.training.optim import lr_lambda
from signclip.training.regime import apply_regime


def test_run_directory(trained_model_dir):
    run = trained_model_dir.parent
    last = run / "checkpoints" / "last"
    for name in ("model.safetensors", "config.json", "tokenizer", "text_config", "trainer_state.pt"):
        assert (last / name).exists(), name
    for name in ("model.safetensors", "config.json", "tokenizer"):
        assert (run / "best" / name).exists(), name
    assert (run / "train_config.json").exists() and (run / "splits.csv").exists()
    log = pd.read_csv(run / "log.csv")
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert len(rows) == len(log) and log["step"].tolist() == list(range(1, len(log) + 1))
    assert {"loss", "lr", "temperature", "grad_norm", "val/pose_to_text/R@1"} <= set(log.columns)
    state = torch.load(last / "trainer_state.pt", weights_only=False)
    assert state["step"] == len(log)
    splits = pd.read_csv(run / "splits.csv")
    assert set(splits["split"]) == {"train", "validation", "test"} and len(splits) == 120


def test_schedule_and_batches():
    f = lr_lambda(warmup=4, total=20)
    assert [round(f(s), 3) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == 1.0 and f(20) == pytest.approx(0.0) and 0 < f(12) < 1
    a = epoch_batches(10, 4, seed=1, epoch=0)
    assert a == epoch_batches(10, 4, seed=1, epoch=0) != epoch_batches(10, 4, seed=1, epoch=1)
    assert [len(b) for b in a] == [4, 4, 2]
    assert [len(b) for b in epoch_batches(9, 4, 1, 0)] == [4, 4]  # a batch of one is dropped


def test_fit_seed_fixes_the_initial_weights(lexicon, tmp_path):
    """Same seed, same split and same initial weights: a run is reproducible (0 epochs: best = initial)."""
    data = lexicon.sample(16, random_state=2).reset_index(drop=True)
    cfg = signclip.get_model_config("tiny", pose_layers=1, freeze_text=True)
    weights = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        model, _, _ = fit(data, cfg, TrainConfig(epochs=0, seed=seed), tmp_path / name, progress=False)
        weights[name] = model.pose.frame_mlp[0].weight
    assert torch.equal(weights["a"], weights["b"]) and not torch.equal(weights["a"], weights["c"])
    assert (tmp_path / "a" / "splits.csv").read_text() == (tmp_path / "b" / "splits.csv").read_text()


@pytest.fixture(scope="module")
def small_splits(lexicon, tiny_model):
    """16 training and 6 validation lexicon poses, preprocessed once."""
    df = split_dataset(lexicon.sample(22, random_state=1).reset_index(drop=True), 6 / 22, 0.0, seed=0)
    return prepare_splits(df, tiny_model, TrainConfig(), progress=False)


def fresh_splits(splits):
    return {k: copy.copy(v) for k, v in splits.items()}


class Stop(Exception):
    pass


@pytest.mark.slow  # trains
@pytest.mark.parametrize("ema_decay", [0.0, 0.5])
def test_resume_continues_exactly(small_splits, tmp_path, ema_decay):
    """6 steps (3 epochs of 2 batches, dropout, augmentation, warm-up + cosine) in one go, versus 3
    steps, an interruption in the middle of epoch 2, and a resume from the checkpoint to step 6.
    With ``ema_decay`` the moving average resumes too, and it is the model kept as best."""
    torch.manual_seed(0)
    # frozen text backbone keeps the test fast (its dropout still runs and must be replayed exactly)
    init = signclip.create_model(signclip.get_model_config("tiny", pose_layers=1, freeze_text=True))
    cfg = TrainConfig(epochs=3, batch_size=8, warmup_steps=2, save_every=3, eval_every=6, lr=1e-3,
                      ema_decay=ema_decay)

    straight = copy.deepcopy(init)
    train(straight, fresh_splits(small_splits), cfg, tmp_path / "straight", progress=False)

    interrupted = copy.deepcopy(init)
    calls = []

    def stop_after_three_steps(module, _):
        if module.training:
            calls.append(1)
            if len(calls) > 3:
                raise Stop

    handle = interrupted.pose.frame_mlp.register_forward_pre_hook(stop_after_three_steps)  # once per pose batch
    with pytest.raises(Stop):
        train(interrupted, fresh_splits(small_splits), cfg, tmp_path / "resumed", progress=False)
    handle.remove()
    state = torch.load(tmp_path / "resumed" / "checkpoints" / "last" / "trainer_state.pt", weights_only=False)
    assert state["step"] == 3

    resumed = copy.deepcopy(init)  # its weights are replaced by the checkpoint's
    summary = train(resumed, fresh_splits(small_splits), cfg, tmp_path / "resumed", resume=True, progress=False)
    assert summary["steps"] == 6

    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst <= 1e-6, f"resumed weights differ by up to {worst}"
    log_a = pd.read_csv(tmp_path / "straight" / "log.csv")
    log_b = pd.read_csv(tmp_path / "resumed" / "log.csv")
    assert log_b["step"].tolist() == list(range(1, 7))
    pd.testing.assert_series_equal(log_a["loss"], log_b["loss"], rtol=1e-5)
    pd.testing.assert_series_equal(log_a["lr"], log_b["lr"])
    best_a = signclip.load(tmp_path / "straight" / "best").state_dict()
    best_b = signclip.load(tmp_path / "resumed" / "best").state_dict()
    assert max(float((best_a[k] - best_b[k]).abs().max()) for k in best_a) <= 1e-6
    weight = "pose.frame_mlp.0.weight"
    if ema_decay:  # best = the average, which lags the trained weights
        assert not torch.allclose(best_a[weight], a[weight])
    else:
        assert torch.equal(best_a[weight], a[weight])


def test_grouped_batches():
    """Hard-negative batching: a share of the samples in runs of equal key, the rest at random."""
    keys = [f"letter{i % 5}" for i in range(40)]  # 5 keys, 8 samples each
    full = epoch_batches(40, 8, 1, 0, [(1.0, keys)])
    assert sorted(i for b in full for i in b) == list(range(40))
    assert all(len({keys[i] for i in b}) == 1 for b in full)  # runs of 8 fill batches of 8 exactly
    half = epoch_batches(40, 8, 1, 0, [(0.5, keys)])
    assert half == epoch_batches(40, 8, 1, 0, [(0.5, keys)]) != epoch_batches(40, 8, 1, 1, [(0.5, keys)])
    assert sorted(i for b in half for i in b) == list(range(40))
    assert len(half) == len(epoch_batches(40, 8, 1, 5, [(0.5, keys)]))  # the same number every epoch
    with pytest.raises(ValueError, match="sum to at most 1"):
        epoch_batches(40, 8, 1, 0, [(0.7, keys), (0.7, keys)])


def test_source_weights_upsample_per_source():
    """Source b drawn 3 times per epoch, source a half of the time: exact counts, distinct copies, reproducible."""
    df = pd.DataFrame({"source": ["a"] * 10 + ["b"] * 4})
    weights = source_weights(df, {"a": 0.5, "b": 3})
    batches = epoch_batches(14, 5, seed=1, epoch=0, weights=weights)
    drawn = [i for b in batches for i in b]
    assert len(drawn) == 5 + 12  # 5 of a, 3 copies of b
    assert sorted(i % 14 for i in drawn if i % 14 >= 10) == sorted([10, 11, 12, 13] * 3)
    assert len(set(drawn)) == len(drawn)  # each copy is its own index (its own augmentation draws)
    assert batches == epoch_batches(14, 5, seed=1, epoch=0, weights=weights)
    assert source_weights(df, {}) is None
    with pytest.raises(ValueError, match=r"unknown source\(s\) \['c'\]"):
        source_weights(df, {"c": 2})
    with pytest.raises(ValueError, match="factors must be > 0"):
        source_weights(df, {"a": 0})


def test_frozen_parameters_stay_at_their_initial_values(small_splits, tmp_path):
    """TrainConfig.frozen_parameters: the part-wise tower's transformers kept, the rest trained; a name that
    matches nothing is refused."""
    model = signclip.create_model("tiny-partwise", pose_layers=1, pose_width=32, pose_heads=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(steps=3, batch_size=4, ema_decay=0.0, frozen_parameters=["pose.manual.", "pose.non_manual."])
    train(model, fresh_splits(small_splits), cfg, tmp_path / "run", progress=False)
    after = model.state_dict()
    frozen = [k for k in before if k.startswith(("pose.manual.", "pose.non_manual."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert not torch.equal(before["pose.proj.weight"], after["pose.proj.weight"])
    with pytest.raises(ValueError, match=r"frozen_parameters: \['pose.nothing'\] match no parameter"):
        train(signclip.create_model("tiny"), fresh_splits(small_splits),
              TrainConfig(steps=1, frozen_parameters=["pose.nothing"]), tmp_path / "run2", progress=False)


def test_kept_weights_are_the_latest_not_clearly_worse_than_the_best():
    """A saturated validation keeps the later weights; a decline beyond two standard errors keeps those before."""
    from signclip.training.loop import clearly_worse

    def kept(scores: list[float], n: int) -> int:  # the Trainer's rule over a run's validations
        best, keep = -float("inf"), -1
        for i, value in enumerate(scores):
            best = max(best, value)
            keep = keep if clearly_worse(value, best, n) else i
        return keep

    assert kept([0.5, 0.9, 0.99, 0.99, 0.985, 0.99], n=200) == 5  # plateau with noise: the last
    assert kept([0.5, 0.9, 0.99, 0.99, 0.90, 0.88], n=200) == 3  # over-trained: before the decline
    assert kept([0.5, 1.0, 1.0, 0.9933], n=150) == 3  # one pose of 150 is noise even at a perfect score
    assert kept([0.2, 0.4, 0.39], n=0) == 1  # not a rate: any amount below is worse
    assert clearly_worse(0.80, 0.90, 210) and not clearly_worse(0.87, 0.90, 210)


def test_retrain_trains_again_on_all_rows_for_the_chosen_length(lexicon, tmp_path):
    """TrainConfig.retrain: validation on a held-out signer chooses the length, then training + validation rows
    train again from the same initial weights (RUN/selection keeps the choosing run)."""
    data = lexicon.sample(36, random_state=3).reset_index(drop=True)
    data["signer"] = [f"s{i % 4}" for i in range(36)]
    data.loc[data["signer"] == "s3", "split"] = "test"
    cfg = signclip.get_model_config("tiny", pose_layers=1, freeze_text=True)
    train_cfg = TrainConfig(steps=4, batch_size=4, eval_every=2, ema_decay=0.0, retrain=True, split_by="signer")
    _, splits, summary = fit(data, cfg, train_cfg, tmp_path / "run", progress=False)
    selection = summary["selection"]
    assert (tmp_path / "run" / "selection" / "best").exists() and selection["best_step"] in (2, 4)
    chosen = pd.read_csv(tmp_path / "run" / "splits.csv")
    n_train, n_val = (int((chosen["split"] == s).sum()) for s in ("train", "validation"))
    assert len(splits["train"].arrays) == n_train + n_val and len(splits["validation"].arrays) == 0
    assert summary["steps"] == max(1, round(selection["best_step"] * (n_train + n_val) / n_train))


def test_the_few_shot_regime_trains_without_flips_unless_asked():
    """Flips are the default with all clips and off with few clips per text (benchmarks/generalisation.py);
    a flip_p the config sets is kept."""
    def table(clips_per_text: int) -> pd.DataFrame:
        return pd.DataFrame({"text": [t for t in "abc" for _ in range(clips_per_text)], "split": "train"})

    cfg, lines = apply_regime(table(3), TrainConfig())
    assert cfg.augment.flip_p == 0.0 and "regime: few-shot" in lines[0] and "no mirror flips" in lines[0]
    cfg, lines = apply_regime(table(20), TrainConfig())
    assert cfg.augment.flip_p == AugmentConfig.flip_p > 0 and "regime: full data" in lines[0]
    asked = TrainConfig(augment=AugmentConfig(flip_p=0.5))
    cfg, lines = apply_regime(table(3), asked)
    assert cfg.augment.flip_p == 0.5 and "flips" not in lines[0]
    # one clip per text from a small source beside a large one is still full data (median over clips, not texts)
    mixed = pd.concat([table(20), pd.DataFrame({"text": [f"letter {i}" for i in range(40)], "split": "train"})])
    assert "regime: full data (median 20 " in apply_regime(mixed, TrainConfig())[1][0]
