"""Embeddings written to files: ``.npy`` (the (N, E) matrix) or ``.parquet`` (one row per item, its
metadata and an ``embedding`` column), from any items or, data-parallel under torchrun, from packed shards."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from signclip.data.shards import META_COLUMNS, ShardSplit
from signclip.files import atomic_file
from signclip.models.signclip import SignCLIP
from signclip.training.distributed import barrier, init_distributed

SUFFIXES = (".npy", ".parquet")


def check_output(out: Path) -> Path:
    """``out`` must end in .npy or .parquet."""
    if Path(out).suffix not in SUFFIXES:
        raise ValueError(f"{out}: use a .npy or .parquet file")
    return Path(out)


def write_embeddings(emb: np.ndarray, meta: pd.DataFrame, out: str | Path) -> Path:
    """(N, E) embeddings to ``out``: .npy alone, or .parquet with the N metadata rows."""
    out = check_output(Path(out))
    with atomic_file(out) as tmp:
        if out.suffix == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, emb)
        else:
            meta = meta.reset_index(drop=True).copy()
            meta["embedding"] = list(emb.astype(np.float32))
            meta.to_parquet(tmp, index=False)
    return out


def embed_shards(model, root: str | Path, out: str | Path, split: str | None = None, batch_size: int = 64,
                 progress: bool = True, precision: str | None = None) -> Path | None:
    """Embed the poses of a shard directory into ``out`` (.npy, or .parquet with metadata), rows in input
    order. Under torchrun each rank embeds every world-th row group into ``out.parts/``; rank 0 merges.
    ``precision``: the model's inference precision on this rank's device (``SignCLIP.set_precision``)."""
    env = init_distributed("auto")
    if not isinstance(model, SignCLIP):
        model = SignCLIP.load(model, device=env.device)
    model.to(env.device).eval()
    if precision:
        model.set_precision(precision)
    data = ShardSplit(root, split)
    data.check(model.cfg.pose)
    out = check_output(Path(out))
    parts = out.with_name(out.name + ".parts")
    if env.is_main:
        shutil.rmtree(parts, ignore_errors=True)
        parts.mkdir(parents=True)
    barrier()
    mine = data.units[env.rank::env.world_size]
    writer = None
    for unit in tqdm(mine, desc=f"embedding (rank {env.rank})", disable=not (progress and env.is_main), unit="group"):
        rows = list(data.rows([unit]))
        emb = model.encode_arrays([a for _, a, _ in rows], batch_size, progress=False)  # (n, E)
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
