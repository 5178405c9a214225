"""Embedding indexes on disk: a faiss index plus parquet metadata, for pose and text collections.

An index directory::

    index.json          kind, dimension, the model (path and weights fingerprint), number of vectors per
                        part, and the files of the current version
    pose.V.faiss        faiss index of pose embeddings   (row i <-> pose.V.parquet row i)
    pose.V.parquet      metadata of each pose (path, text, languages, ...)
    text.V.faiss        faiss index of text embeddings (optional)
    text.V.parquet      metadata of each text (text, prompt, languages)

Every save writes version V+1 beside version V (crash-safe files), then replaces ``index.json``, then
deletes version V: a writer killed at any moment leaves the previous index whole. Loading checks that the
faiss files, the metadata and ``index.json`` agree; searching checks the querying model's dimension and
fingerprint against the model that built the index.

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
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

from signclip.errors import DamagedFileError
from signclip.files import atomic_file, write_text

KINDS = ("flat", "flat16", "hnsw", "ivf")
PARTS = ("pose", "text")
RESERVED = ("rank", "score", "id")  # columns of every search result; metadata columns of these names are renamed


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
        clash = [c for c in RESERVED if c in meta.columns]
        if clash:
            meta = meta.rename(columns={c: f"meta_{c}" for c in clash})
            warnings.warn(f"metadata column(s) {clash} renamed to {[f'meta_{c}' for c in clash]}: "
                          "search results have their own rank, score and id", stacklevel=2)
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
        if int(k) < 1:
            raise ValueError(f"k: expected at least 1 result, got {k}")
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries: expected (Q, {self.dim}) embeddings, got {q.shape}")
        k = min(int(k), len(self))
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

    def save(self, vectors: Path, metadata: Path) -> None:
        """Write the faiss index and the metadata table, each crash-safely."""
        with atomic_file(vectors) as tmp:
            faiss.write_index(self.index, str(tmp))
        with atomic_file(metadata) as tmp:
            self.metadata.to_parquet(tmp, index=False)

    @classmethod
    def load(cls, vectors: Path, metadata: Path, kind: str = "flat", options: dict | None = None) -> "EmbeddingIndex":
        """Read a part written by :meth:`save`; a missing or unreadable file is a :class:`DamagedFileError`."""
        try:
            index = faiss.read_index(str(vectors))
        except RuntimeError as e:
            raise DamagedFileError(f"{vectors}: not a readable faiss index ({str(e).splitlines()[0]})") from None
        try:
            table = pd.read_parquet(metadata)
        except (OSError, ValueError) as e:
            raise DamagedFileError(f"{metadata}: not a readable metadata table ({e})") from None
        if table.shape[1] == 0:  # a part added without metadata: parquet keeps no row count without columns
            table = pd.DataFrame(index=range(index.ntotal))
        if kind == "hnsw" and options and options.get("ef_search"):
            index.hnsw.efSearch = int(options["ef_search"])  # search-time parameter, not stored by faiss
        return cls(index, table, kind, dict(options or {}))


class SearchIndex:
    """A pose part and a text part in one directory (either may be empty), and the model that made them."""

    def __init__(self, dim: int, kind: str = "flat", model: str | None = None, fingerprint: str | None = None,
                 **kwargs):
        if kind not in KINDS:
            raise ValueError(f"unknown index kind {kind!r}; use one of {KINDS}")
        self.dim, self.kind, self.model, self.fingerprint, self.kwargs = dim, kind, model, fingerprint, kwargs
        self.parts: dict[str, EmbeddingIndex] = {}
        self.version = 0

    @classmethod
    def for_model(cls, model, kind: str = "flat", model_path: str | None = None, **kwargs) -> "SearchIndex":
        """An empty index for ``model``'s embeddings, recording which model it is."""
        return cls(model.cfg.embed_dim, kind, model_path, model.fingerprint, **kwargs)

    def check_model(self, model) -> None:
        """Refuse a model whose embeddings are not the ones indexed (other dimension or other weights)."""
        if model.cfg.embed_dim != self.dim:
            raise ValueError(f"the index holds {self.dim}-d embeddings of {self.model or 'another model'}; this "
                             f"model makes {model.cfg.embed_dim}-d ones: use the index's model or rebuild the index")
        if self.fingerprint and model.fingerprint and model.fingerprint != self.fingerprint:
            raise ValueError(f"the index was built with {self.model or 'another model'} (weights {self.fingerprint}); "
                             f"this model's weights are {model.fingerprint}: use that model or rebuild the index")

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
        """Write the next version of every part, then ``index.json``, then delete older versions."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.version += 1
        files = {name: [f"{name}.{self.version}.faiss", f"{name}.{self.version}.parquet"] for name in self.parts}
        for name, part in self.parts.items():
            part.save(*(path / f for f in files[name]))
        info = {"format": 2, "version": self.version, "kind": self.kind, "dim": self.dim, "model": self.model,
                "fingerprint": self.fingerprint, "sizes": self.sizes(), "files": files, "options": self.kwargs}
        write_text(path / "index.json", json.dumps(info, indent=2))
        current = {f for names in files.values() for f in names}
        for stale in path.iterdir():
            if re.fullmatch(r"(pose|text)(\.\d+)?\.(faiss|parquet)", stale.name) and stale.name not in current:
                stale.unlink()
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SearchIndex":
        """Read an index; its files must agree with each other and with ``index.json``."""
        path = Path(path)
        if not (path / "index.json").is_file():
            raise FileNotFoundError(f"{path}: not a signclip index (no index.json)")
        try:
            info = json.loads((path / "index.json").read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise DamagedFileError(f"{path / 'index.json'}: not valid JSON ({e})") from None
        index = cls(info["dim"], info["kind"], info.get("model"), info.get("fingerprint"), **info.get("options", {}))
        index.version = int(info.get("version", 0))
        for name, count in info.get("sizes", {}).items():
            vectors, metadata = info.get("files", {}).get(name, [f"{name}.faiss", f"{name}.parquet"])  # format 1
            part = EmbeddingIndex.load(path / vectors, path / metadata, info["kind"], info.get("options"))
            if not len(part) == len(part.metadata) == count or part.dim != index.dim:
                raise DamagedFileError(
                    f"{path}: the {name} part does not add up ({len(part)} vectors of dimension {part.dim}, "
                    f"{len(part.metadata)} metadata rows; index.json says {count} of dimension {index.dim}): its "
                    "files come from different writes; rebuild it with `signclip index build`")
            index.parts[name] = part
        return index
