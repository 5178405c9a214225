"""Search latency and recall: exact (flat fp32, flat16) vs approximate (IVF, HNSW) at 10k / 100k / 1M vectors.

Vectors are L2-normalised, dimension 256 (the tiny/base embedding size). Two kinds of synthetic data:
``clustered`` (many noisy copies of a few thousand "signs", like real embedding collections) and
``uniform`` (isotropic random directions, the worst case for approximate search). Latency is per
query, one query at a time; recall@10 is against exact search. Prints a markdown table.

    python benchmarks/search.py --sizes 10000 100000 1000000 --queries 100 --threads 1
"""
from __future__ import annotations

import argparse
import time

import faiss
import numpy as np

from signclip.serve.index import make_faiss_index


def make_data(n: int, dim: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "uniform":
        x = rng.standard_normal((n, dim), dtype=np.float32)
    else:  # clustered: n vectors around n/100 centres (a sign with ~100 variants), noise ~ cos 0.7 to centre
        centres = rng.standard_normal((max(1, n // 100), dim), dtype=np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        x = np.empty((n, dim), dtype=np.float32)
        for s in range(0, n, 100_000):  # chunks keep peak memory low
            m = min(100_000, n - s)
            c = centres[rng.integers(0, len(centres), m)]
            noise = rng.standard_normal((m, dim), dtype=np.float32) / np.sqrt(dim)
            x[s: s + m] = c + noise
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def per_query(index: faiss.Index, q: np.ndarray, k: int = 10) -> tuple[float, np.ndarray]:
    """Mean ms per query (one at a time) and the (Q, k) ids."""
    ids = np.empty((len(q), k), dtype=np.int64)
    index.search(q[:2], k)  # warm up
    t = time.perf_counter()
    for i in range(len(q)):
        ids[i] = index.search(q[i: i + 1], k)[1][0]
    return (time.perf_counter() - t) / len(q) * 1000, ids


def recall(ids: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(ids, truth)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--data", nargs="+", default=["clustered", "uniform"])
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1, help="faiss OpenMP threads (1 is fastest per query "
                                                          "on a busy machine)")
    ap.add_argument("--uniform-max", type=int, default=100_000, help="skip uniform data above this size")
    ap.add_argument("--nprobe", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    ap.add_argument("--hnsw-max", type=int, default=100_000, help="skip HNSW above this size (build time)")
    ap.add_argument("--ef", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, default=80)
    ap.add_argument("--build-threads", type=int, default=None, help="faiss threads while building (default: "
                                                                   "--threads)")
    ap.add_argument("--skip-ivf", action="store_true")
    args = ap.parse_args()
    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"faiss {faiss.__version__}, {args.threads} threads, dim {args.dim}, {args.queries} queries, k=10")
    print("| data | vectors | index | setting | build s | ms/query | recall@10 |")
    print("|---|---:|---|---|---:|---:|---:|")
    for kind in args.data:
        for n in args.sizes:
            if kind == "uniform" and n > args.uniform_max:
                continue
            x = make_data(n, args.dim, kind, rng)
            q = make_data(args.queries, args.dim, kind, rng) if kind == "uniform" else \
                x[rng.integers(0, n, args.queries)] + rng.standard_normal((args.queries, args.dim),
                                                                          dtype=np.float32) / np.sqrt(args.dim)
            q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
            t = time.perf_counter()
            flat = make_faiss_index(args.dim, "flat")
            flat.add(x)
            build = time.perf_counter() - t
            ms, truth = per_query(flat, q)
            print(f"| {kind} | {n:,} | flat (exact) | - | {build:.1f} | {ms:.2f} | 1.000 |", flush=True)
            t = time.perf_counter()
            flat.search(q, 10)  # all queries in one call: BLAS matrix product, amortised
            ms = (time.perf_counter() - t) / len(q) * 1000
            print(f"| {kind} | {n:,} | flat (exact) | {len(q)} queries per call | {build:.1f} | {ms:.2f} | 1.000 |",
                  flush=True)
            del flat
            t = time.perf_counter()
            flat16 = make_faiss_index(args.dim, "flat16")
            flat16.add(x)
            build = time.perf_counter() - t
            ms, ids = per_query(flat16, q)
            same = float((ids == truth).all(1).mean())
            print(f"| {kind} | {n:,} | flat16 (fp16 scan, fp32 re-rank) | refine x{flat16.k_factor:.0f} | "
                  f"{build:.1f} | {ms:.2f} | {recall(ids, truth):.3f} ({same:.0%} identical top-10) |", flush=True)
            del flat16
            if not args.skip_ivf:
                ivf_rows(kind, x, q, truth, args, rng)
            if n <= args.hnsw_max:
                faiss.omp_set_num_threads(args.build_threads or args.threads)
                t = time.perf_counter()
                hnsw = make_faiss_index(args.dim, "hnsw", hnsw_m=args.hnsw_m, ef_construction=args.ef_construction)
                hnsw.add(x)
                build = time.perf_counter() - t
                faiss.omp_set_num_threads(args.threads)
                for ef in args.ef:
                    hnsw.hnsw.efSearch = ef
                    ms, ids = per_query(hnsw, q)
                    print(f"| {kind} | {n:,} | hnsw M={args.hnsw_m} efC={args.ef_construction} | efSearch={ef} | "
                          f"{build:.1f} | {ms:.2f} | {recall(ids, truth):.3f} |", flush=True)
                del hnsw
            del x


def ivf_rows(kind: str, x: np.ndarray, q: np.ndarray, truth: np.ndarray, args, rng: np.random.Generator) -> None:
    """IVF (nlist = sqrt(n), trained on 32 vectors per list) at each --nprobe."""
    n = len(x)
    t = time.perf_counter()
    nlist = int(np.sqrt(n))
    ivf = make_faiss_index(args.dim, "ivf", nlist=nlist)
    ivf.train(x[rng.choice(n, min(n, 32 * nlist), replace=False)])
    ivf.add(x)
    build = time.perf_counter() - t
    for nprobe in args.nprobe:
        ivf.nprobe = nprobe
        ms, ids = per_query(ivf, q)
        print(f"| {kind} | {n:,} | ivf nlist={nlist} | nprobe={nprobe} | {build:.1f} | {ms:.2f} | "
              f"{recall(ids, truth):.3f} |", flush=True)


if __name__ == "__main__":
    main()
