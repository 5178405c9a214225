"""Embedding indexes on disk: a faiss index plus parquet metadata, for pose and text collections.

An index directory::

    index.json          kind, dimension, model path, number of vectors per part
    pose.faiss          faiss index of pose embeddings   (row i <-> pose.parquet row i)
    pose.parquet        metadata of each pose (path, text, languages, ...)
    text.faiss          faiss index of text embeddings (optional)
    text.parquet        metadata of each text (text, prompt, languages)

Embeddings are L2-normalised, so inner product = cosine similarity. Kinds:

* ``flat`` (exact, default): scans every fp32 vector;
* ``flat16``: scans fp16 copies (half the memory traffic, ~2x faster on large collections) and
  re-ranks the best ``refine_factor * k`` with the fp32 vectors, so scores are exact fp32 ones and the
  top-k is exact unless more than ``(refine_factor - 1) * k`` vectors lie within fp16 rounding
  (|score error| <= 2**-11 for unit vectors) of the k-th score; stores 1.5x the vectors;
* ``hnsw`` (approximate graph, no training) and ``ivf`` (approximate inverted lists, trained on the
  first vectors added).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

KINDS = ("flat", "flat16", "hnsw", "ivf")
PARTS = ("pose", "text")


def make_faiss_index(dim: int, kind: str = "flat", hnsw_m: int = 32, ef_search: int = 128,
                     nlist: int | None = None, n_hint: int = 0, nprobe: int | None = None,
                     ef_construction: int = 80, refine_factor: int = 4) -> faiss.Index:
    """An empty inner-product index. ``ivf`` needs training (:meth:`EmbeddingIndex.add` does it)."""
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if kind == "flat16":
        scan = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
        index = faiss.IndexRefineFlat(scan)  # keeps the fp32 vectors for the re-ranking
        index.referenced_objects = [scan]
        index.k_factor = float(refine_factor)
        return index
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
        return index
    if kind == "ivf":
        nlist = nlist or max(1, min(4096, int(4 * np.sqrt(max(n_hint, 1)))))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.referenced_objects = [quantizer]  # keep the quantiser alive with the index
        index.nprobe = nprobe or min(nlist, max(16, nlist // 16))
        return index
    raise ValueError(f"unknown index kind {kind!r}; use one of {KINDS}")


@dataclass
class EmbeddingIndex:
    """One faiss index and a metadata table with one row per vector."""

    index: faiss.Index
    metadata: pd.DataFrame = field(default_factory=pd.DataFrame)
    kind: str = "flat"
    options: dict = field(default_factory=dict)

    @classmethod
    def create(cls, dim: int, kind: str = "flat", **options) -> "EmbeddingIndex":
        return cls(make_faiss_index(dim, kind, **options), pd.DataFrame(), kind, options)

    @property
    def dim(self) -> int:
        return self.index.d

    def __len__(self) -> int:
        return self.index.ntotal

    def add(self, embeddings: np.ndarray, metadata: pd.DataFrame | None = None) -> None:
        """Append (N, E) embeddings and their N metadata rows (incremental)."""
        emb = np.ascontiguousarray(embeddings, dtype=np.float32).reshape(-1, self.dim)  # (N, E)
        meta = pd.DataFrame(index=range(len(emb))) if metadata is None else metadata.reset_index(drop=True)
        if len(meta) != len(emb):
            raise ValueError(f"metadata: {len(meta)} rows for {len(emb)} embeddings")
        if not self.index.is_trained:  # IVF: size the lists and train the quantiser on the first batch
            opts = {**self.options, "n_hint": len(emb)}
            opts["nlist"] = min(opts.get("nlist") or int(4 * np.sqrt(len(emb))), len(emb), 4096) or 1
            self.index = make_faiss_index(self.dim, "ivf", **opts)
            if "nprobe" in self.options:
                self.index.nprobe = int(self.options["nprobe"])
            self.index.train(emb)
        self.index.add(emb)
        self.metadata = pd.concat([self.metadata, meta], ignore_index=True) if len(self.metadata) else meta

    def search(self, queries: np.ndarray, k: int = 10) -> list[pd.DataFrame]:
        """(Q, E) queries -> one table per query: top-k rows of metadata with ``rank`` and ``score``."""
        q = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)  # (Q, E)
        k = max(1, min(int(k), len(self)))
        if len(self) == 0:
            return [pd.DataFrame(columns=["rank", "score"]) for _ in q]
        scores, ids = self.index.search(q, k)  # (Q, k) each; -1 where fewer results
        out = []
        for s, i in zip(scores, ids):
            keep = i >= 0
            rows = self.metadata.iloc[i[keep]].reset_index(drop=True).copy()
            rows.insert(0, "score", s[keep].astype(float))
            rows.insert(0, "rank", np.arange(1, keep.sum() + 1))
            rows.insert(2, "id", i[keep])
            out.append(rows)
        return out

    def save(self, path: Path, name: str) -> None:
        faiss.write_index(self.index, str(path / f"{name}.faiss"))
        self.metadata.to_parquet(path / f"{name}.parquet", index=False)

    @classmethod
    def load(cls, path: Path, name: str, kind: str = "flat", options: dict | None = None) -> "EmbeddingIndex":
        index = faiss.read_index(str(path / f"{name}.faiss"))
        if kind == "hnsw" and options and options.get("ef_search"):
            index.hnsw.efSearch = int(options["ef_search"])  # search-time parameter, not stored by faiss
        return cls(index, pd.read_parquet(path / f"{name}.parquet"), kind, dict(options or {}))


class SearchIndex:
    """A pose part and a text part in one directory (either may be empty)."""

    def __init__(self, dim: int, kind: str = "flat", model: str | None = None, **kwargs):
        if kind not in KINDS:
            raise ValueError(f"unknown index kind {kind!r}; use one of {KINDS}")
        self.dim, self.kind, self.model, self.kwargs = dim, kind, model, kwargs
        self.parts: dict[str, EmbeddingIndex] = {}

    def part(self, name: str) -> EmbeddingIndex:
        if name not in PARTS:
            raise ValueError(f"unknown index part {name!r}; use one of {PARTS}")
        if name not in self.parts:
            self.parts[name] = EmbeddingIndex.create(self.dim, self.kind, **self.kwargs)
        return self.parts[name]

    def add(self, name: str, embeddings: np.ndarray, metadata: pd.DataFrame | None = None) -> None:
        """Add (N, E) embeddings to the ``pose`` or ``text`` part."""
        self.part(name).add(embeddings, metadata)

    def sizes(self) -> dict[str, int]:
        return {name: len(p) for name, p in self.parts.items()}

    def search(self, queries: np.ndarray, target: str, k: int = 10) -> list[pd.DataFrame]:
        """Top-k of the ``target`` part for each (Q, E) query."""
        if target not in self.parts or len(self.parts[target]) == 0:
            raise KeyError(f"the index has no {target} embeddings (has {self.sizes()})")
        return self.parts[target].search(queries, k)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for name, p in self.parts.items():
            p.save(path, name)
        info = {"kind": self.kind, "dim": self.dim, "model": self.model, "sizes": self.sizes(),
                "options": self.kwargs}
        (path / "index.json").write_text(json.dumps(info, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SearchIndex":
        path = Path(path)
        if not (path / "index.json").is_file():
            raise FileNotFoundError(f"{path}: not a signclip index (no index.json)")
        info = json.loads((path / "index.json").read_text())
        index = cls(info["dim"], info["kind"], info.get("model"), **info.get("options", {}))
        for name in info.get("sizes", {}):
            index.parts[name] = EmbeddingIndex.load(path, name, info["kind"], info.get("options"))
        return index
