"""Shards: pack -> stream round trip, feature statistics, disjoint per-rank/worker partitions,
exact resume of the stream, streamed training and embedding in input order."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from torch.utils.data import DataLoader

from signclip.config import AugmentConfig, TrainConfig
from signclip.data.arrays import load_arrays
from signclip.data.shards import ShardSplit, is_shard_dir, pack_shards
from signclip.data.splits import split_dataset
from signclip.export.embeddings import embed_shards
from signclip.models.statistics import FeatureStatistics
from signclip.training import fit_shards
from signclip.training.distributed import DistEnv
from signclip.training.streaming import PromptMaker, ShardSource, ShardStream


@pytest.fixture(scope="module")
def table(lexicon):
    """40 lexicon rows with a fixed split."""
    return split_dataset(lexicon.sample(40, random_state=1).reset_index(drop=True), 0.1, 0.1, 0)


@pytest.fixture(scope="module")
def packed(tmp_path_factory, table, tiny_model):
    out = tmp_path_factory.mktemp("shards")
    meta = pack_shards(table, out, tiny_model, rows_per_shard=16, rows_per_group=4, progress=False)
    return out, meta


def _key(a: np.ndarray) -> str:
    return hashlib.md5(np.asarray(a).tobytes()).hexdigest()


def test_pack_then_stream_gives_the_same_arrays(packed, table, tiny_model):
    root, meta = packed
    arrays, kept, _ = load_arrays(table, tiny_model.cfg.pose, progress=False)
    assert is_shard_dir(root) and meta["rows"] == len(arrays) and len(meta["shards"]) == 3
    rows = list(ShardSplit(root, None).rows())
    assert [i for i, _, _ in rows] == list(range(len(arrays)))  # input order
    for (_, a, row), b, path in zip(rows, arrays, kept["path"]):
        np.testing.assert_array_equal(a, b)  # bit-exact, NaN (missing points) included
        assert row.path == path
    assert sum(meta["splits"].values()) == len(arrays)
    assert len(ShardSplit(root, "validation").load().arrays) == meta["splits"]["validation"]


def test_statistics_match_in_memory_training(packed, table, tiny_model):
    root, _ = packed
    arrays, kept, _ = load_arrays(table[table["split"] == "train"], tiny_model.cfg.pose, progress=False)
    mean, std = tiny_model.feature_statistics().add_poses(arrays).result()
    smean, sstd = ShardSplit(root).statistics()
    np.testing.assert_allclose(smean, mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sstd, std, rtol=1e-4, atol=1e-5)


def test_running_stats_merge_blocks():
    rng = np.random.default_rng(0)
    x = rng.normal(3, 2, (500, 4))
    x[rng.random(x.shape) < 0.2] = np.nan
    x[:, 3] = np.nan  # never seen -> mean 0, std 1
    s = FeatureStatistics(featurize=lambda t: t)  # the raw values are the features
    for block in np.array_split(x, 7):
        s.update(block)
    mean, std = s.result()
    np.testing.assert_allclose(mean[:3], np.nanmean(x[:, :3], 0), rtol=1e-6)
    np.testing.assert_allclose(std[:3], np.nanstd(x[:, :3], 0), rtol=1e-6)
    assert mean[3] == 0 and std[3] == 1


def test_rank_and_worker_partitions_are_disjoint_and_cover(packed):
    root, meta = packed
    split = ShardSplit(root, None)
    prompts = PromptMaker("<{spoken}> <{signed}> {text}", [], [])
    world, workers = 2, 2
    parts = [ShardStream(split, prompts, epoch=3, rank=r, world=world).partition(w, workers)
             for r in range(world) for w in range(workers)]
    units = [u for p in parts for u in p]
    assert sorted(units) == sorted(split.units)  # disjoint and covering (row groups)
    # samples: two ranks, each streaming through a DataLoader with 2 worker processes
    seen = []
    for r in range(world):
        stream = ShardStream(split, prompts, 3, r, world, shuffle_buffer=5, endless=False)
        rank_keys = [_key(a) for a, _, _ in DataLoader(stream, batch_size=None, num_workers=workers)]
        seen.append(rank_keys)
    assert not set(seen[0]) & set(seen[1])
    everything = [_key(a) for _, a, _ in split.rows()]
    assert sorted(seen[0] + seen[1]) == sorted(everything)
    assert seen[0] != sorted(seen[0], key=everything.index)  # the shuffle buffer reorders


def test_stream_resumes_exactly(packed, tiny_model):
    root, _ = packed
    cfg = TrainConfig(batch_size=3, shuffle_buffer=4, augment=AugmentConfig())
    source = ShardSource(ShardSplit(root), PromptMaker.for_model(tiny_model), cfg, DistEnv())
    full = list(source.loader(epoch=1, start=0, stop=5))
    resumed = list(source.loader(epoch=1, start=2, stop=5))
    assert len(full) == 5 and len(resumed) == 3
    for (xa, ma, pa, ia), (xb, mb, pb, ib) in zip(full[2:], resumed):
        assert pa == pb and ia.tolist() == ib.tolist()
        np.testing.assert_array_equal(xa.numpy(), xb.numpy())


@pytest.mark.slow  # trains
def test_train_and_embed_from_shards(packed, tmp_path):
    import pandas as pd

    from signclip.config import get_model_config

    root, meta = packed
    # the GPU-path options also run on CPU: bf16 autocast and gradient checkpointing
    cfg = TrainConfig(epochs=1, batch_size=8, warmup_steps=1, device="cpu", shuffle_buffer=8, precision="bf16",
                      gradient_checkpointing=True)
    model, splits, summary = fit_shards(root, get_model_config("tiny", pose_layers=1), cfg, tmp_path / "run",
                                        progress=False)
    assert summary["steps"] == meta["splits"]["train"] // 8
    log = pd.read_csv(tmp_path / "run" / "log.csv")
    assert np.isfinite(log["loss"]).all() and (log["grad_norm"] > 0).all()
    assert (tmp_path / "run" / "checkpoints" / "last" / "trainer_state.pt").exists()
    np.testing.assert_allclose(model.pose.feature_mean.numpy(), ShardSplit(root).statistics()[0])
    out = embed_shards(model, root, tmp_path / "emb.parquet", progress=False)
    df = pd.read_parquet(out)
    assert df["index"].tolist() == list(range(meta["rows"]))
    arrays = [a for _, a, _ in ShardSplit(root, None).rows()]
    np.testing.assert_allclose(np.stack(df["embedding"]), model.encode_pose(arrays), atol=1e-5)
