"""Datasets larger than memory: pack preprocessed poses into parquet shards once, then stream them.

A shard directory::

    signclip_shards.json    pose config, row counts per shard / row group / split, languages, and the
                            per-dimension feature mean/std of the training rows (computed while packing)
    shard-00000.parquet     one row per pose: index (input order), path, text, languages, split, signer,
    shard-00001.parquet     frames and the preprocessed (T, P, D) float32 array as raw bytes
    ...

Training streams row groups: each epoch the row groups are shuffled (seed, epoch), dealt to ranks
(``[rank::world]``) and then to DataLoader workers (``[worker::workers]``), and each worker shuffles
through a buffer of ``shuffle_buffer`` samples, so memory stays flat however large the data set is.
"""
from __future__ import annotations

import json
import math
import shutil
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm.auto import tqdm

from signclip.config import AugmentConfig, PoseConfig, TrainConfig
from signclip.distributed import DistEnv, barrier, init_distributed
from signclip.errors import PoseInputError
from signclip.data.datasets import training_sample
from signclip.pose.layout import get_layout
from signclip.text.prompts import language_prompt, make_prompt

META = "signclip_shards.json"
META_COLUMNS = ["path", "text", "spoken_language", "signed_language", "split", "signer"]


def is_shard_dir(path: str | Path) -> bool:
    """True for a directory written by :func:`pack_shards`."""
    return (Path(path) / META).is_file()


# ---- packing ----------------------------------------------------------------------------------------

class RunningStats:
    """NaN-aware per-dimension mean/std over streamed (N, F) blocks (Chan et al. parallel Welford)."""

    def __init__(self, dim: int):
        self.count = np.zeros(dim)
        self.mean = np.zeros(dim)
        self.m2 = np.zeros(dim)

    def update(self, x: np.ndarray) -> None:
        """x: (N, F) with NaN for missing values."""
        finite = np.isfinite(x)
        n = finite.sum(0).astype(np.float64)  # (F,)
        mean = np.where(finite, x, 0.0).sum(0) / np.maximum(n, 1)
        m2 = (np.where(finite, x - mean, 0.0) ** 2).sum(0)
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * n / np.maximum(total, 1)
        self.m2 = self.m2 + m2 + delta ** 2 * self.count * n / np.maximum(total, 1)
        self.count = total

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) float32 as :func:`signclip.train.feature_statistics`: unseen dims 0 / 1, std >= 1e-3."""
        seen = self.count > 0
        mean = np.where(seen, self.mean, 0.0)
        std = np.where(seen, np.sqrt(self.m2 / np.maximum(self.count, 1)), 1.0)
        return mean.astype(np.float32), np.maximum(std, 1e-3).astype(np.float32)


@dataclass
class Sample:
    """One preprocessed pose and its metadata, as packed into a shard row."""

    array: np.ndarray  # (T, P, D) float32, NaN = missing
    text: str
    path: str = ""
    spoken_language: str | None = None
    signed_language: str | None = None
    split: str = "train"
    signer: str | None = None


def _none(v) -> str | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def samples_from_table(df: pd.DataFrame, cfg: PoseConfig, reader=None, progress: bool = True,
                       errors: list[str] | None = None) -> Iterator[Sample]:
    """Preprocess the rows of a dataset table one by one (unusable poses are skipped into ``errors``)."""
    from signclip.pose.io import crop_pose, read_pose
    from signclip.pose.preprocess import pose_to_array

    reader = reader or read_pose
    for row in tqdm(df.itertuples(index=False), total=len(df), desc="packing poses", disable=not progress,
                    unit="pose"):
        try:
            pose = crop_pose(reader(row.path), row.start_ms, row.end_ms, str(row.path))
            array = pose_to_array(pose, cfg, str(row.path))
        except PoseInputError as e:
            if errors is not None:
                errors.append(str(e))
            continue
        yield Sample(array, str(row.text), str(row.path), _none(row.spoken_language), _none(row.signed_language),
                     str(row.split), _none(row.signer))


class ShardWriter:
    """Write samples into ``shard-NNNNN.parquet`` files of ``rows_per_shard`` rows (row groups of
    ``rows_per_group``), accumulating the training rows' feature statistics with ``featurize``."""

    def __init__(self, out: str | Path, pose_cfg: PoseConfig, featurize, rows_per_shard: int = 4096,
                 rows_per_group: int = 256, model_config: dict | None = None):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        for old in self.out.glob("shard-*.parquet"):
            old.unlink()
        self.pose_cfg, self.featurize = pose_cfg, featurize
        self.rows_per_shard, self.rows_per_group = rows_per_shard, rows_per_group
        self.model_config = model_config
        self.stats: RunningStats | None = None
        self.shards: list[dict] = []
        self.buffer: list[dict] = []
        self.frames: list[np.ndarray] = []  # training frames waiting for the statistics, (T, P*D) each
        self.writer: pq.ParquetWriter | None = None
        self.rows_in_shard = 0
        self.index = 0
        self.languages: set[tuple[str | None, str | None]] = set()

    def add(self, s: Sample) -> None:
        a = np.ascontiguousarray(s.array, dtype=np.float32)
        self.buffer.append({"index": self.index, "path": s.path, "text": s.text,
                            "spoken_language": s.spoken_language, "signed_language": s.signed_language,
                            "split": s.split, "signer": s.signer, "frames": a.shape[0], "pose": a.tobytes()})
        self.index += 1
        self.languages.add((s.spoken_language, s.signed_language))
        if s.split == "train":
            self.frames.append(a.reshape(a.shape[0], -1))
            if sum(f.shape[0] for f in self.frames) >= 8192:
                self._update_stats()
        if len(self.buffer) == self.rows_per_group:
            self._flush()

    def _update_stats(self) -> None:
        if not self.frames:
            return
        with torch.no_grad():
            feats = self.featurize(torch.from_numpy(np.concatenate(self.frames))[None])[0].numpy()  # (N, F)
        if self.stats is None:
            self.stats = RunningStats(feats.shape[1])
        self.stats.update(feats.astype(np.float64))
        self.frames = []

    def _flush(self) -> None:
        if not self.buffer:
            return
        if self.writer is None:
            name = f"shard-{len(self.shards):05d}.parquet"
            self.writer = pq.ParquetWriter(self.out / name, _SCHEMA)
            self.shards.append({"file": name, "row_groups": []})
        table = pa.Table.from_pylist(self.buffer, schema=_SCHEMA)
        self.writer.write_table(table, row_group_size=len(self.buffer))
        splits = pd.Series([r["split"] for r in self.buffer]).value_counts().to_dict()
        self.shards[-1]["row_groups"].append({"rows": len(self.buffer), "first_index": self.buffer[0]["index"],
                                              "splits": {k: int(v) for k, v in splits.items()}})
        self.rows_in_shard += len(self.buffer)
        self.buffer = []
        if self.rows_in_shard >= self.rows_per_shard:
            self.writer.close()
            self.writer, self.rows_in_shard = None, 0

    def close(self, extra: dict | None = None) -> dict:
        """Flush, close and write ``signclip_shards.json``; returns its content."""
        self._flush()
        self._update_stats()
        if self.writer is not None:
            self.writer.close()
        if self.stats is None:
            raise ValueError(f"{self.out}: no training rows to compute feature statistics from")
        mean, std = self.stats.result()
        layout = get_layout(self.pose_cfg.layout)
        splits: dict[str, int] = {}
        for sh in self.shards:
            for g in sh["row_groups"]:
                for k, v in g["splits"].items():
                    splits[k] = splits.get(k, 0) + v
        meta = {"format": 1, "pose": asdict(self.pose_cfg), "points": len(layout), "dims": self.pose_cfg.dims,
                "rows": self.index, "splits": splits, "shards": self.shards,
                "spoken_languages": sorted({s for s, _ in self.languages if s}),
                "signed_languages": sorted({g for _, g in self.languages if g}),
                "feature_mean": mean.tolist(), "feature_std": std.tolist(), "model_config": self.model_config,
                **(extra or {})}
        (self.out / META).write_text(json.dumps(meta))
        return meta


_SCHEMA = pa.schema([("index", pa.int64()), ("path", pa.string()), ("text", pa.string()),
                     ("spoken_language", pa.string()), ("signed_language", pa.string()), ("split", pa.string()),
                     ("signer", pa.string()), ("frames", pa.int32()), ("pose", pa.binary())])


def pack_samples(samples: Iterable[Sample], out: str | Path, model, rows_per_shard: int = 4096,
                 rows_per_group: int = 256, extra: dict | None = None) -> dict:
    """Pack samples with ``model``'s pose config; statistics from ``model.pose.featurize`` on training rows."""
    writer = ShardWriter(out, model.cfg.pose, model.pose.featurize, rows_per_shard, rows_per_group,
                         model.cfg.to_dict())
    for s in samples:
        writer.add(s)
    return writer.close(extra)


def pack_shards(data: pd.DataFrame, out: str | Path, model, cfg: TrainConfig | None = None,
                rows_per_shard: int = 4096, rows_per_group: int = 256, reader=None,
                progress: bool = True) -> dict:
    """Preprocess a dataset table (:func:`signclip.data.datasets.load_dataset`) once into shards.

    Rows without a split are split as :func:`signclip.train.fit` would (``cfg`` fractions and seed)."""
    from signclip.data.datasets import split_dataset

    cfg = cfg or TrainConfig()
    if not data["split"].isin(["train"]).any():
        data = split_dataset(data, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    errors: list[str] = []
    meta = pack_samples(samples_from_table(data, model.cfg.pose, reader, progress, errors), out, model,
                        rows_per_shard, rows_per_group, {"skipped": len(errors)})
    if errors:
        warnings.warn(f"skipped {len(errors)} unusable pose(s), e.g. {errors[0]}", stacklevel=2)
    return meta


# ---- reading ----------------------------------------------------------------------------------------

@dataclass
class PromptMaker:
    """Picklable ``(text, spoken, signed) -> prompt`` with a model's template and known languages."""

    template: str
    spoken: list[str]
    signed: list[str]

    @classmethod
    def for_model(cls, model) -> "PromptMaker":
        return cls(model.cfg.prompt_template, list(model.cfg.spoken_languages), list(model.cfg.signed_languages))

    def __call__(self, text: str, spoken: str | None, signed: str | None) -> str:
        return make_prompt(text, spoken, signed, self.template, self.spoken, self.signed)


def read_group(root: Path, file: str, group: int) -> pd.DataFrame:
    """One row group as a table; ``pose`` holds raw float32 bytes."""
    return pq.ParquetFile(root / file).read_row_group(group).to_pandas()


def decode(row, points: int, dims: int) -> np.ndarray:
    """A shard row -> its (T, P, D) float32 array."""
    return np.frombuffer(row.pose, dtype=np.float32).reshape(int(row.frames), points, dims)


class ShardSplit:
    """One split of a shard directory: its row groups, statistics and languages; streamed for training
    (:meth:`source`) or loaded into memory (:meth:`load`, e.g. validation)."""

    def __init__(self, root: str | Path, split: str | None = "train"):
        self.root = Path(root)
        if not is_shard_dir(self.root):
            raise FileNotFoundError(f"{self.root}: not a shard directory (no {META}); create one with `signclip shards`")
        self.meta = json.loads((self.root / META).read_text())
        self.split = split
        self.pose_cfg = PoseConfig(**self.meta["pose"])
        # (file, row group, rows of this split in it), in input order
        self.units = [(sh["file"], i, g["rows"] if split is None else g["splits"].get(split, 0))
                      for sh in self.meta["shards"] for i, g in enumerate(sh["row_groups"])]
        self.units = [u for u in self.units if u[2] > 0]

    def __len__(self) -> int:
        return sum(u[2] for u in self.units)

    def check(self, pose_cfg: PoseConfig) -> None:
        """The model must preprocess poses exactly as the shards were packed."""
        if asdict(pose_cfg) != self.meta["pose"]:
            raise ValueError(f"{self.root / META}: shards were packed with pose config {self.meta['pose']}, "
                             f"the model uses {asdict(pose_cfg)}; pack again with this model config")

    def statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-dimension feature mean/std of the training rows, computed while packing."""
        return (np.asarray(self.meta["feature_mean"], dtype=np.float32),
                np.asarray(self.meta["feature_std"], dtype=np.float32))

    def language_table(self) -> pd.DataFrame:
        """The language codes seen in the shards (for the model's known languages)."""
        s, g = self.meta["spoken_languages"], self.meta["signed_languages"]
        n = max(len(s), len(g), 1)
        return pd.DataFrame({"spoken_language": (s + [None] * n)[:n], "signed_language": (g + [None] * n)[:n]})

    def rows(self, units: list | None = None) -> Iterator[tuple[int, np.ndarray, pd.Series]]:
        """(index, (T, P, D) array, metadata row) of this split, one row group in memory at a time."""
        for file, group, _ in (self.units if units is None else units):
            df = read_group(self.root, file, group)
            if self.split is not None:
                df = df[df["split"] == self.split]
            for row in df.itertuples(index=False):
                yield int(row.index), decode(row, self.meta["points"], self.meta["dims"]), row

    def load(self, progress: bool = False):
        """This split in memory as :class:`signclip.train.SplitData` (for validation / test)."""
        from signclip.train import SplitData

        arrays, meta = [], []
        for _, a, row in tqdm(self.rows(), total=len(self), desc=f"loading {self.split}", disable=not progress):
            arrays.append(a)
            meta.append({c: getattr(row, c) for c in META_COLUMNS})
        df = pd.DataFrame(meta, columns=META_COLUMNS)
        df["start_ms"] = np.nan
        df["end_ms"] = np.nan
        return SplitData(df, arrays)

    def source(self, model, cfg: TrainConfig, env: DistEnv) -> "ShardSource":
        """Training batches streamed for this rank (see :class:`ShardSource`)."""
        self.check(model.cfg.pose)
        return ShardSource(self, PromptMaker.for_model(model), cfg, env)


class ShardStream(IterableDataset):
    """Samples (array, prompt, prompt id) of one rank's share of an epoch, endlessly (a rank whose
    shards run out starts them again, so every rank yields the same number of batches).

    Row groups are shuffled with (seed, epoch), dealt to ranks then workers; each worker shuffles its
    samples through a buffer; the first ``skip`` samples of each worker are dropped (exact resume)."""

    def __init__(self, split: ShardSplit, prompts: PromptMaker, epoch: int, rank: int, world: int, seed: int = 0,
                 shuffle_buffer: int = 1000, augment_cfg: AugmentConfig | None = None, skip_batches: int = 0,
                 batch_size: int = 1, endless: bool = True, language_prompt_p: float = 0.0):
        self.split, self.prompts, self.epoch, self.rank, self.world = split, prompts, epoch, rank, world
        self.seed, self.shuffle_buffer, self.augment_cfg = seed, shuffle_buffer, augment_cfg
        self.skip_batches, self.batch_size, self.endless = skip_batches, batch_size, endless
        self.language_prompt_p = language_prompt_p
        self.layout = get_layout(split.pose_cfg.layout)

    def partition(self, worker: int = 0, workers: int = 1) -> list:
        """The row groups of this (rank, worker) in this epoch: disjoint, together all of them."""
        order = np.random.default_rng((self.seed, self.epoch)).permutation(len(self.split.units))
        mine = order[self.rank::self.world][worker::workers]
        return [self.split.units[i] for i in mine]

    def __iter__(self) -> Iterator[tuple[np.ndarray, str, int]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        units = self.partition(worker, workers)
        if not units:
            return
        # the loader takes batches round-robin from its workers: this worker's share of the skipped ones
        skip = len(range(worker, self.skip_batches, workers)) * self.batch_size
        samples = islice(self._shuffled(units, worker), skip, None)
        for index, array, row in samples:
            spoken, signed = _none(row.spoken_language), _none(row.signed_language)
            yield training_sample(array, self.prompts(row.text, spoken, signed),
                                  language_prompt(spoken, signed, self.prompts.template), self.layout,
                                  self.split.pose_cfg, self.augment_cfg, self.language_prompt_p,
                                  (self.seed, self.epoch, index))

    def _shuffled(self, units: list, worker: int) -> Iterator:
        rng = np.random.default_rng((self.seed, self.epoch, self.rank, worker))
        buffer: list = []
        passes = 0
        while True:
            order = units if passes == 0 else [units[i] for i in rng.permutation(len(units))]
            for item in self.split.rows(order):
                if len(buffer) < self.shuffle_buffer:
                    buffer.append(item)
                    continue
                j = int(rng.integers(len(buffer)))
                buffer[j], item = item, buffer[j]
                yield item
            passes += 1
            if not self.endless:
                break
        rng.shuffle(buffer)
        yield from buffer


class ShardSource:
    """Training batches from shards for :func:`signclip.train.train`: ``len // (batch_size x world)``
    batches per epoch on every rank."""

    def __init__(self, split: ShardSplit, prompts: PromptMaker, cfg: TrainConfig, env: DistEnv):
        self.split, self.prompts, self.cfg, self.env = split, prompts, cfg, env
        streams = env.world_size * max(1, cfg.num_workers)
        if len(split.units) < streams:
            raise ValueError(f"{split.root}: {len(split.units)} row group(s) with training rows for {streams} "
                             "streams (ranks x workers); pack with a smaller --rows-per-group")

    def n_batches(self) -> int:
        n = len(self.split) // (self.cfg.batch_size * self.env.world_size)
        if n == 0:
            raise ValueError(f"{self.split.root}: {len(self.split)} training rows, fewer than one global batch "
                             f"({self.cfg.batch_size} x {self.env.world_size})")
        return n

    def loader(self, epoch: int, start: int, stop: int) -> Iterable:
        from signclip.train import collate

        stream = ShardStream(self.split, self.prompts, epoch, self.env.rank, self.env.world_size, self.cfg.seed,
                             self.cfg.shuffle_buffer, self.cfg.augment, start, self.cfg.batch_size,
                             language_prompt_p=self.cfg.language_prompt_p)
        loader = DataLoader(stream, batch_size=self.cfg.batch_size, collate_fn=collate,
                            num_workers=self.cfg.num_workers, pin_memory=self.env.device.type == "cuda")
        return islice(loader, stop - start)


# ---- training and embedding -------------------------------------------------------------------------

def fit_shards(root: str | Path, model_cfg, cfg: TrainConfig, out_dir: str | Path, resume: bool = True,
               progress: bool = True):
    """:func:`signclip.train.fit` for a shard directory: stream the training rows, validate on the
    validation rows (loaded into memory), reload the best model. Works under torchrun."""
    from signclip.models.signclip import SignCLIP
    from signclip.train import make_prompts_for, resolve_device, train

    init_distributed(cfg.device)
    model = model_cfg if isinstance(model_cfg, SignCLIP) else SignCLIP.create(model_cfg)
    data = ShardSplit(root, "train")
    data.check(model.cfg.pose)
    splits = {"train": data, "validation": ShardSplit(root, "validation").load(progress),
              "test": ShardSplit(root, "test")}
    summary = train(model, splits, cfg, out_dir, resume=resume, progress=progress)
    best = SignCLIP.load(Path(out_dir) / "best", device=resolve_device(cfg.device))
    splits["validation"].prompts = make_prompts_for(best, splits["validation"].df)
    return best, splits, summary


def embed_shards(model, root: str | Path, out: str | Path, split: str | None = None, batch_size: int = 64,
                 progress: bool = True) -> Path | None:
    """Embed the poses of a shard directory into ``out`` (.npy, or .parquet with metadata), rows in input
    order. Under torchrun each rank embeds every world-th row group into ``out.parts/``; rank 0 merges."""
    from signclip.models.signclip import SignCLIP

    env = init_distributed("auto")
    if not isinstance(model, SignCLIP):
        model = SignCLIP.load(model, device=env.device)
    model.to(env.device).eval()
    data = ShardSplit(root, split)
    data.check(model.cfg.pose)
    out = Path(out)
    if out.suffix not in (".npy", ".parquet"):
        raise ValueError(f"{out}: use a .npy or .parquet file")
    parts = out.with_name(out.name + ".parts")
    if env.is_main:
        shutil.rmtree(parts, ignore_errors=True)
        parts.mkdir(parents=True)
    barrier()
    mine = data.units[env.rank::env.world_size]
    writer = None
    for unit in tqdm(mine, desc=f"embedding (rank {env.rank})", disable=not (progress and env.is_main), unit="group"):
        rows = list(data.rows([unit]))
        emb = model._encode_arrays([a for _, a, _ in rows], batch_size, True, False)  # (n, E)
        table = pa.table({"index": [i for i, _, _ in rows],
                          **{c: [getattr(r, c) for _, _, r in rows] for c in META_COLUMNS},
                          "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1])})
        writer = writer or pq.ParquetWriter(parts / f"part-{env.rank:05d}.parquet", table.schema)
        writer.write_table(table)
    if writer is not None:
        writer.close()
    barrier()
    if env.is_main:
        merged = pa.concat_tables([pq.read_table(p) for p in sorted(parts.glob("part-*.parquet"))])
        merged = merged.sort_by("index")
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".npy":
            emb = merged.column("embedding").combine_chunks()
            np.save(out, emb.flatten().to_numpy().reshape(len(emb), -1).astype(np.float32))  # (N, E)
        else:
            df = merged.to_pandas()
            df["embedding"] = [np.asarray(e, dtype=np.float32) for e in df["embedding"]]
            df.to_parquet(out, index=False)
        shutil.rmtree(parts)
    barrier()
    return out if env.is_main else None
