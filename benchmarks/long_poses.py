"""Long poses: time and peak memory of one pose through the pose tower against its length, today's tower
(`tiny-partwise`, one transformer position per frame) beside the same tower with frame patches (`tiny-long`:
`pose_patch_frames` 8, and 4), in one run.

The input is a real pose: lexicon poses (preprocessed) one after the other up to the length. Every tower is
allowed the longest length (`max_frames` 4096, so nothing is resampled) and has random weights; only the pose
tower runs (no text tower). Each (tower, length, mode) runs in its own subprocess, so that its peak memory is
its own: the growth of the peak RSS (ru_maxrss) over the same tower after an 8-frame pose. `inference` is
`eval()` under `no_grad` (embedding); `training` is a forward and backward pass in train mode (what one
pose adds to a training batch). Times are the median of several runs after a warm-up.

    python benchmarks/long_poses.py [--threads 1] [--modes inference training] [--lengths 64 128 ... 4096]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

MODELS = {"tiny-partwise": {}, "tiny-long": {}, "tiny-long/4": {"pose_patch_frames": 4}}
LENGTHS = [64, 128, 256, 512, 1024, 2048, 4096]
MAX_FRAMES = 4096


def measure(model: str, frames: int, mode: str, threads: int) -> dict:
    """Build the tower and time one pose of ``frames`` frames (runs in the subprocess)."""
    import numpy as np
    import torch

    from signclip.batching import pad_poses
    from signclip.config import get_model_config
    from signclip.data.manifests import load_lexicon
    from signclip.models.signclip import POSE_ENCODERS
    from signclip.pose.layout import get_layout
    from signclip.pose.preprocess import prepare_pose

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    name, overrides = model.split("/")[0], MODELS[model]
    cfg = get_model_config(name, **overrides)
    cfg.pose.max_frames = MAX_FRAMES
    tower = POSE_ENCODERS[cfg.pose_encoder].from_config(cfg, get_layout(cfg.pose.layout))
    lexicon = load_lexicon().sample(64, random_state=0)
    joined = np.concatenate([prepare_pose(p, cfg.pose) for p in lexicon["path"]])  # (T, P, D), ~1,700 frames
    pose = np.concatenate([joined] * (frames // len(joined) + 1))[:frames]

    def run(array: np.ndarray) -> None:
        x, mask = pad_poses([array])  # (1, T, F), (1, T)
        if mode == "inference":
            with torch.no_grad():
                tower(x, mask)
        else:
            tower.zero_grad(set_to_none=True)
            tower(x, mask).sum().backward()

    tower.train(mode == "training")
    run(pose[:8])
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run(pose)  # warm-up at this length; sets the peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    repeats = max(3, min(30, 4096 // frames))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(pose)
        times.append(time.perf_counter() - start)
    return {"ms": 1000 * statistics.median(times), "peak_mb": max(0, peak - base) / 1024, "repeats": repeats,
            "params": sum(p.numel() for p in tower.parameters())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lengths", type=int, nargs="+", default=LENGTHS)
    parser.add_argument("--modes", nargs="+", default=["inference", "training"], choices=["inference", "training"])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--one", nargs=3, metavar=("MODEL", "FRAMES", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.one[2], args.threads)))
        return

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    results = {}
    for mode in args.modes:
        for model in args.models:
            for frames in args.lengths:
                out = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--one", model,
                                      str(frames), mode], capture_output=True, text=True, env=env)
                if out.returncode:
                    sys.exit(f"{model} {frames} {mode} failed:\n{out.stderr[-2000:]}")
                results[mode, model, frames] = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"  {mode:9s} {model:13s} {frames:5d} frames: {results[mode, model, frames]['ms']:9.1f} ms "
                      f"{results[mode, model, frames]['peak_mb']:8.1f} MB", file=sys.stderr, flush=True)

    ref = 256 if 256 in args.lengths else args.lengths[0]
    for mode in args.modes:
        params = ", ".join(f"{m} {results[mode, m, args.lengths[0]]['params'] / 1e6:.2f} M" for m in args.models)
        print(f"\n{mode}, one pose, {args.threads} thread(s); pose-tower parameters: {params}")
        print(f"time in ms (x = that time / the time at {ref} frames) and peak memory growth in MB\n")
        head = ["frames"] + [f"{m} {c}" for m in args.models for c in ("ms", "x", "MB")]
        if len(args.models) > 1:
            head += [f"{args.models[0]} / {m}" for m in args.models[1:]]
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("---:" for _ in head) + "|")
        for frames in args.lengths:
            row = [str(frames)]
            for m in args.models:
                r = results[mode, m, frames]
                row += [f"{r['ms']:.1f}", f"{r['ms'] / results[mode, m, ref]['ms']:.1f}", f"{r['peak_mb']:.0f}"]
            row += [f"{results[mode, args.models[0], frames]['ms'] / results[mode, m, frames]['ms']:.1f}x"
                    for m in args.models[1:]]
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
