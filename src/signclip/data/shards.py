"""Datasets larger than memory: pack preprocessed poses into parquet shards once, then read them back.

A shard directory::

    signclip_shards.json    pose config, row counts per shard / row group / split, languages, and the
                            per-dimension feature mean/std of the training rows (computed while packing)
    shard-00000.parquet     one row per pose: index (input order), path, text, languages, split, signer,
    shard-00001.parquet     frames and the preprocessed (T, P, D) float32 array as raw bytes
    ...

:class:`ShardSplit` reads one split, a row group at a time; training streams it
(:mod:`signclip.training.streaming`) so memory stays flat however large the data set is.
"""
from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from signclip.config import PoseConfig, TrainConfig
from signclip.data.arrays import SplitData, iter_arrays
from signclip.data.manifests import optional
from signclip.data.splits import ensure_split
from signclip.models.statistics import FeatureStatistics
from signclip.pose.layout import get_layout

META = "signclip_shards.json"
META_COLUMNS = ["path", "text", "spoken_language", "signed_language", "split", "signer"]


def is_shard_dir(path: str | Path) -> bool:
    """True for a directory written by :func:`pack_shards`."""
    return (Path(path) / META).is_file()


# ---- packing ----------------------------------------------------------------------------------------

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


def samples_from_table(df: pd.DataFrame, cfg: PoseConfig, progress: bool = True,
                       errors: list[str] | None = None) -> Iterator[Sample]:
    """Preprocess the rows of a dataset table one by one (unusable poses are skipped into ``errors``)."""
    for _, array, row in iter_arrays(df, cfg, progress, errors, desc="packing poses"):
        yield Sample(array, str(row.text), str(row.path), optional(row.spoken_language), optional(row.signed_language),
                     str(row.split), optional(row.signer))


class ShardWriter:
    """Write samples into ``shard-NNNNN.parquet`` files of ``rows_per_shard`` rows (row groups of
    ``rows_per_group``), accumulating the training rows' feature statistics in ``stats``."""

    def __init__(self, out: str | Path, pose_cfg: PoseConfig, stats: FeatureStatistics, rows_per_shard: int = 4096,
                 rows_per_group: int = 256, model_config: dict | None = None):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        for old in self.out.glob("shard-*.parquet"):
            old.unlink()
        self.pose_cfg, self.stats = pose_cfg, stats
        self.rows_per_shard, self.rows_per_group = rows_per_shard, rows_per_group
        self.model_config = model_config
        self.seen_train = False
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
        self.stats.update(np.concatenate(self.frames))  # (N, P*D)
        self.seen_train = True
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
        if not self.seen_train:
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
    """Pack samples with ``model``'s pose config; feature statistics of ``model``'s pose tower on training rows."""
    writer = ShardWriter(out, model.cfg.pose, model.feature_statistics(), rows_per_shard, rows_per_group,
                         model.cfg.to_dict())
    for s in samples:
        writer.add(s)
    return writer.close(extra)


def pack_shards(data: pd.DataFrame, out: str | Path, model, cfg: TrainConfig | None = None,
                rows_per_shard: int = 4096, rows_per_group: int = 256, progress: bool = True) -> dict:
    """Preprocess a dataset table (:func:`signclip.data.manifests.load_dataset`) once into shards.

    Rows without a split are split as training would (``cfg`` fractions and seed)."""
    cfg = cfg or TrainConfig()
    data = ensure_split(data, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    errors: list[str] = []
    meta = pack_samples(samples_from_table(data, model.cfg.pose, progress, errors), out, model,
                        rows_per_shard, rows_per_group, {"skipped": len(errors)})
    if errors:
        warnings.warn(f"skipped {len(errors)} unusable pose(s), e.g. {errors[0]}", stacklevel=2)
    return meta


# ---- reading ----------------------------------------------------------------------------------------

def read_group(root: Path, file: str, group: int) -> pd.DataFrame:
    """One row group as a table; ``pose`` holds raw float32 bytes."""
    return pq.ParquetFile(root / file).read_row_group(group).to_pandas()


def decode(row, points: int, dims: int) -> np.ndarray:
    """A shard row -> its (T, P, D) float32 array."""
    return np.frombuffer(row.pose, dtype=np.float32).reshape(int(row.frames), points, dims)


class ShardSplit:
    """One split of a shard directory: its row groups, statistics and languages; read a row group at a
    time (:meth:`rows`, streamed by training) or loaded into memory (:meth:`load`, e.g. validation)."""

    def __init__(self, root: str | Path, split: str | None = "train"):
        self.root = Path(root)
        if not is_shard_dir(self.root):
            raise FileNotFoundError(f"{self.root}: not a shard directory (no {META}); "
                                    "create one with `signclip shards`")
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
        if pose_cfg != self.pose_cfg:  # fields added since packing take their defaults on both sides
            raise ValueError(f"{self.root / META}: shards were packed with pose config {asdict(self.pose_cfg)}, "
                             f"the model uses {asdict(pose_cfg)}; pack again with this model config")

    def statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-dimension feature mean/std of the training rows, computed while packing."""
        return (np.asarray(self.meta["feature_mean"], dtype=np.float32),
                np.asarray(self.meta["feature_std"], dtype=np.float32))

    def languages(self) -> tuple[list[str], list[str]]:
        """The spoken and signed language codes seen in the shards."""
        return self.meta["spoken_languages"], self.meta["signed_languages"]

    def rows(self, units: list | None = None) -> Iterator[tuple[int, np.ndarray, pd.Series]]:
        """(index, (T, P, D) array, metadata row) of this split, one row group in memory at a time."""
        for file, group, _ in (self.units if units is None else units):
            df = read_group(self.root, file, group)
            if self.split is not None:
                df = df[df["split"] == self.split]
            for row in df.itertuples(index=False):
                yield int(row.index), decode(row, self.meta["points"], self.meta["dims"]), row

    def load(self, progress: bool = False) -> SplitData:
        """This split in memory (for validation / test)."""
        arrays, meta = [], []
        for _, a, row in tqdm(self.rows(), total=len(self), desc=f"loading {self.split}", disable=not progress):
            arrays.append(a)
            meta.append({c: getattr(row, c) for c in META_COLUMNS})
        df = pd.DataFrame(meta, columns=META_COLUMNS)
        df["start_ms"] = np.nan
        df["end_ms"] = np.nan
        return SplitData(df, arrays)
