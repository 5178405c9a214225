"""Training throughput and streaming memory.

1. samples/s and peak memory of training steps (forward + backward + AdamW, the real ``train`` pieces:
   ``Objective``, DDP via ``wrap_ddp``, ``gather_with_grad``) for ``tiny`` and ``base``: one process vs
   2 gloo processes on CPU (same global batch), and CUDA (fp32 / bf16) when a GPU is present.
2. a synthetic shard set of ``--clips`` clips packed with ``signclip.data.shards`` and streamed through
   ``ShardSource`` (shuffle buffer, DataLoader workers, collation) while resident memory is sampled.

    python benchmarks/train_throughput.py                      # everything (a few minutes on 2 cores)
    python benchmarks/train_throughput.py --skip-stream --models tiny
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


# ---- memory -------------------------------------------------------------------------------------------

def _status(pid: int, key: str) -> int:
    """A /proc/PID/status field in bytes (0 if the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _pss(pid: int) -> int:
    """Proportional set size (bytes): resident memory with pages shared by forked workers split among them."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def memory_tree(pid: int | None = None) -> tuple[int, int]:
    """(PSS, RSS) of a process and all its descendants, bytes (RSS counts shared pages once per process)."""
    pid = pid or os.getpid()
    pss, rss = _pss(pid), _status(pid, "VmRSS")
    for c in _children(pid):
        p, r = memory_tree(c)
        pss, rss = pss + p, rss + r
    return pss, rss


# ---- throughput ---------------------------------------------------------------------------------------

def _steps(rank: int, world: int, name: str, batch: int, frames: int, steps: int, port: int, device: str,
           precision: str, threads: int, out: str) -> None:
    """Time ``steps`` optimiser steps (after one warm-up) on synthetic poses; rank 0 writes the result."""
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                          LOCAL_RANK=str(rank))
    torch.set_num_threads(threads)
    from signclip.config import TrainConfig
    from signclip.models.signclip import SignCLIP
    from signclip.pose.layout import get_layout
    from signclip.training.distributed import cleanup, gather_with_grad, init_distributed
    from signclip.training.loop import wrap_ddp
    from signclip.training.objectives import Objective, no_gather
    from signclip.training.optim import make_optimizer

    env = init_distributed(device)
    torch.manual_seed(0)
    model = SignCLIP.create(name).to(env.device).train()
    cfg = TrainConfig(precision=precision)
    objective = Objective(model, cfg, gather_with_grad if env.distributed else no_gather)
    if env.distributed:
        objective = wrap_ddp(objective, env.device)
    optimizer = make_optimizer(model, cfg)
    feat = len(get_layout(model.cfg.pose.layout)) * model.cfg.pose.dims
    rng = np.random.default_rng(rank)
    x = torch.from_numpy(rng.normal(0, 0.3, (batch, frames, feat)).astype(np.float32)).to(env.device)  # (B, T, F)
    mask = torch.ones(batch, frames, dtype=torch.bool, device=env.device)
    tok = model.tokenize([f"<en> <ase> word {rank * batch + i}" for i in range(batch)])
    ids = torch.arange(rank * batch, (rank + 1) * batch, device=env.device)
    autocast = torch.autocast(env.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    if env.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for i in range(steps + 1):
        if i == 1:
            if env.device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with autocast:
            loss, _ = objective(x, mask, tok, ids)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if env.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() if env.device.type == "cuda" else _status(os.getpid(), "VmHWM")
    if env.is_main:
        torch.save({"samples_per_s": steps * batch * world / seconds, "peak_bytes": peak,
                    "params_m": sum(p.numel() for p in model.parameters()) / 1e6}, out)
    cleanup()


def throughput(name: str, world: int, batch: int, frames: int, steps: int, device: str = "cpu",
               precision: str = "fp32", threads: int = 1) -> dict:
    """Run :func:`_steps` in ``world`` processes (``batch`` each) and return rank 0's figures."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "r.pt")
        mp.spawn(_steps, args=(world, name, batch, frames, steps, port, device, precision, threads, out), nprocs=world)
        return torch.load(out)


# ---- streaming ----------------------------------------------------------------------------------------

def synthetic_samples(n: int, points: int, dims: int, seed: int = 0):
    """``n`` random clips of 4-12 frames (NaN = a missing hand now and then) with 1000 distinct words."""
    from signclip.data.shards import Sample

    rng = np.random.default_rng(seed)
    base = rng.normal(0, 0.3, (16, points, dims)).astype(np.float32)
    for i in range(n):
        t = int(rng.integers(4, 13))
        a = base[:t] + rng.normal(0, 0.01, (t, points, dims)).astype(np.float32)
        if i % 7 == 0:
            a[:, -21:] = np.nan
        yield Sample(a, f"word{i % 1000}", f"synthetic/{i}.pose", "en", "ase",
                     "validation" if i % 1000 == 0 else "train")


def stream(clips: int, root: Path, workers: int, batch: int, buffer: int) -> dict:
    from signclip.config import AugmentConfig, TrainConfig, get_model_config
    from signclip.data.shards import ShardSplit, pack_samples
    from signclip.models.signclip import SignCLIP
    from signclip.pose.layout import get_layout
    from signclip.training.distributed import DistEnv
    from signclip.training.streaming import PromptMaker, ShardSource

    cfg = get_model_config("tiny")
    cfg.pose.dims = 2  # keeps the 100k-clip set around 1 GB on disk
    model = SignCLIP.create(cfg)
    start = time.perf_counter()
    meta = pack_samples(synthetic_samples(clips, len(get_layout(cfg.pose.layout)), cfg.pose.dims), root, model,
                        rows_per_shard=8192, rows_per_group=256)
    pack_s = time.perf_counter() - start
    disk = sum(p.stat().st_size for p in root.glob("*.parquet"))
    train_cfg = TrainConfig(batch_size=batch, num_workers=workers, shuffle_buffer=buffer,
                            augment=AugmentConfig(0, 0, 0, 0))
    source = ShardSource(ShardSplit(root), PromptMaker.for_model(model), train_cfg, DistEnv())
    del model
    n = source.n_batches()
    rss, samples = [], 0
    start = time.perf_counter()
    for i, (x, mask, prompts, ids) in enumerate(source.loader(0, 0, n)):
        samples += x.shape[0]
        if i % 20 == 0:
            rss.append((samples, *memory_tree()))
    stream_s = time.perf_counter() - start
    return {"clips": meta["rows"], "disk_gb": disk / 1e9, "pack_s": pack_s, "samples": samples,
            "samples_per_s": samples / stream_s, "rss": rss}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["tiny", "base"])
    ap.add_argument("--batch", type=int, default=8, help="per-process batch")
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--clips", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-stream", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--dir", type=Path, default=None, help="where to write the synthetic shards (deleted after)")
    args = ap.parse_args()

    if not args.skip_throughput:
        print(f"## training steps: synthetic poses of {args.frames} frames, {args.steps} timed steps after 1 warm-up\n")
        print("| model | device | processes x threads | per-process batch | global batch | samples/s "
              "| peak memory / process |")
        print("|---|---|---|---|---|---|---|")
        cores = os.cpu_count() or 2
        runs = [("cpu", "fp32", 1, 2 * args.batch, 1), ("cpu", "fp32", 1, 2 * args.batch, cores),
                ("cpu", "fp32", 2, args.batch, max(1, cores // 2))]
        if torch.cuda.is_available():
            runs += [("cuda", "fp32", 1, 8 * args.batch, 1), ("cuda", "bf16", 1, 8 * args.batch, 1)]
        for name in args.models:
            for device, precision, world, batch, threads in runs:
                r = throughput(name, world, batch, args.frames, args.steps, device, precision, threads)
                mem = "GPU" if device == "cuda" else "RSS"
                print(f"| {name} ({r['params_m']:.0f} M) | {device} {precision} | {world} x {threads} | {batch} "
                      f"| {batch * world} | {r['samples_per_s']:.1f} | {r['peak_bytes'] / 2**20:.0f} MiB {mem} |",
                      flush=True)

    if not args.skip_stream:
        root = Path(tempfile.mkdtemp(prefix="signclip-shards-", dir=args.dir))
        try:
            r = stream(args.clips, root, args.workers, 64, 1000)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        print(f"\n## streaming {r['clips']} synthetic clips ({r['disk_gb']:.2f} GB of shards, packed in "
              f"{r['pack_s']:.0f} s): {r['samples_per_s']:.0f} samples/s with {args.workers} workers, "
              f"shuffle buffer 1000, batch 64\n")
        print("| samples streamed | PSS (main + workers) | RSS sum (shared pages counted per process) |")
        print("|---|---|---|")
        marks = sorted({min(range(len(r["rss"])), key=lambda i: abs(r["rss"][i][0] - f * r["samples"]))
                        for f in (0, 0.1, 0.25, 0.5, 0.75, 1.0)})
        for i in marks:
            n, pss, rss = r["rss"][i]
            print(f"| {n:,} | {pss / 2**20:.0f} MiB | {rss / 2**20:.0f} MiB |")
        peak_a, peak_b = (max(m[i] for m in r['rss']) / 2**20 for i in (1, 2))
        print(f"| peak | {peak_a:.0f} MiB | {peak_b:.0f} MiB |")


if __name__ == "__main__":
    main()
