"""Generalisation to unseen signers and sessions, with all clips or few clips per word.

    python benchmarks/generalisation.py                      # the default recipe: 5 folds x 2 regimes x 3 seeds
    python benchmarks/generalisation.py --quick              # one seed (exploring)
    python benchmarks/generalisation.py --variant paper-aug --train-args "--config aug.json"
    python benchmarks/generalisation.py --table              # print the tables from the cache, train nothing

Folds: traduttore signers ``dmohazab`` and ``TheCamNelson`` (../shared/data/traduttore, 14 ASL words) and ksl
sessions 0, 2 and 4 (../shared/data/ksl, 13 Korean SL words, one person in five recording sessions). The
held-out group's clips are marked ``test`` in the manifest and every other row is left blank, so
`signclip train MANIFEST -o RUN --seed S` applies its own split rules. Each fold also runs **few-shot**: 3
training clips per word per remaining signer / session, drawn with the seed (the test clips are the same).

Per run, on the held-out clips: **1-NN** (the nearest training or validation clip by cosine has the same word),
**zero-shot** top-1 over the words' prompts, the same network with **random weights** (feature statistics fitted
on the same training clips, seeded alike) and **raw keypoints** (nose, shoulders, elbows, wrists, both hands, x/y,
shoulder-normalised, 32 frames, 1-NN by cosine; data/*/SOURCE.md's figure), all in the same process.

Each run's result is a line of ``--cache`` (keyed by variant, fold, regime, seed), so the full table, hours on two
cores, can be built across sittings; a cached run is not trained again unless ``--rerun``. ``--jobs 2`` trains two
runs at once with one torch thread each.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("HF_HUB_OFFLINE", "1")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FOLDS = {  # name: (dataset, group column, held-out group)
    "traduttore/dmohazab": ("traduttore", "signer", "dmohazab"),
    "traduttore/TheCamNelson": ("traduttore", "signer", "TheCamNelson"),
    "ksl/session0": ("ksl", "session", "session0"),
    "ksl/session2": ("ksl", "session", "session2"),
    "ksl/session4": ("ksl", "session", "session4"),
}
REGIMES = ("full", "few-shot")
FEW_SHOT_CLIPS = 3  # training clips per word per remaining group
RAW_POINTS = ("NOSE", "LEFT_SHOULDER", "RIGHT_SHOULDER", "LEFT_ELBOW", "RIGHT_ELBOW", "LEFT_WRIST", "RIGHT_WRIST")
METRICS = ("nn1", "zero_shot", "random_nn1", "raw_nn1")


def fold_manifest(out: Path, fold: str, regime: str, seed: int) -> Path:
    """The fold's manifest: held-out clips marked test, the rest blank (few-shot: a draw of them)."""
    dataset, group, held_out = FOLDS[fold]
    df = pd.read_csv(SHARED / dataset / "manifest.csv")
    df["path"] = [str(SHARED / dataset / p) for p in df["path"]]
    df["split"] = np.where(df[group] == held_out, "test", None)
    if regime == "few-shot":
        rng = np.random.default_rng(seed)
        train = df[df["split"].isna()]
        keep = [i for _, g in train.groupby([group, "text"], sort=True)
                for i in rng.choice(g.index, min(FEW_SHOT_CLIPS, len(g)), replace=False)]
        df = pd.concat([df.loc[sorted(keep)], df[df["split"] == "test"]])
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "manifest.csv", index=False)
    return out / "manifest.csv"


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)


def nn1(gallery: np.ndarray, gallery_y: np.ndarray, queries: np.ndarray, y: np.ndarray) -> float:
    """1-nearest-neighbour accuracy by cosine."""
    return float((gallery_y[(unit(queries) @ unit(gallery).T).argmax(1)] == y).mean())


def raw_features(df: pd.DataFrame) -> np.ndarray:
    """The raw-keypoint baseline: nose, shoulders, elbows, wrists and both hands (x, y), shoulder-normalised,
    not mirrored, missing parts 0, resampled to 32 frames -> (N, 32 x 49 x 2)."""
    from signclip.config import PoseConfig
    from signclip.data.arrays import load_arrays
    from signclip.pose.layout import BODY, get_layout
    from signclip.pose.preprocess import resample_frames

    cfg = PoseConfig(layout="contour_holistic", dims=2, mirror_left_handed=False, require_hands=False)
    layout = get_layout(cfg.layout)
    keep = [layout.index(BODY, p) for p in RAW_POINTS] + [i for idx in layout.hand_slices.values() for i in idx]
    arrays, kept, _ = load_arrays(df, cfg, progress=False)
    assert len(kept) == len(df), "every clip must be readable"
    return np.stack([np.nan_to_num(resample_frames(a[:, keep], 32)).reshape(-1) for a in arrays])


def measure(run: Path, seed: int) -> dict:
    """1-NN, zero-shot, random-weights and raw-keypoint figures of a finished run on its test split."""
    import torch

    import signclip as sc
    from signclip.data.arrays import load_arrays
    from signclip.data.manifests import load_manifest

    model = sc.load(run / "best")
    splits = load_manifest(run / "splits.csv")
    if "source" in splits.columns:  # trained with other sources too: measure on the fold's own rows
        splits = splits[splits["source"] == splits["source"].iloc[0]]
    test_arrays, test, _ = load_arrays(splits[splits["split"] == "test"], model.cfg.pose, progress=False)
    gal_arrays, gallery, _ = load_arrays(splits[splits["split"].isin(["train", "validation"])], model.cfg.pose,
                                         progress=False)
    y, gy = test["text"].to_numpy(), gallery["text"].to_numpy()
    words = sorted(set(gy))
    spoken, signed = test["spoken_language"].iloc[0], test["signed_language"].iloc[0]
    emb, gemb = model.encode_arrays(test_arrays), model.encode_arrays(gal_arrays)
    zs = (np.array(words)[(emb @ model.encode_text(words, spoken, signed).T).argmax(1)] == y).mean()
    torch.manual_seed(seed)
    random = sc.create_model(model.cfg).eval()
    random.fit_preprocessing(gal_arrays)
    raw = raw_features(test), raw_features(gallery)
    return {"n_test": len(y), "n_gallery": len(gy), "nn1": nn1(gemb, gy, emb, y), "zero_shot": float(zs),
            "random_nn1": nn1(random.encode_arrays(gal_arrays), gy, random.encode_arrays(test_arrays), y),
            "raw_nn1": nn1(raw[1], gy, raw[0], y)}


def run_one(fold: str, regime: str, seed: int, train_args: list[str], out: Path, threads: int | None) -> dict:
    """Train one run with `signclip train` in a subprocess and measure it in another; the result row."""
    run = out / fold.replace("/", "-") / regime / f"seed{seed}"
    if run.exists():
        shutil.rmtree(run)
    manifest = fold_manifest(run / "data", fold, regime, seed)
    dataset = FOLDS[fold][0]
    args = [a.format(dataset=dataset, fold=fold.replace("/", "-"), regime=regime, seed=seed) for a in train_args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    threads_args = ["--threads", str(threads)] if threads else []
    start = time.time()
    with (run / "data" / "train.log").open("w") as log:
        subprocess.run([sys.executable, "-m", "signclip.cli", "train", str(manifest), "-o", str(run / "run"),
                        "--seed", str(seed), *threads_args, *args], check=True, stdout=log, stderr=subprocess.STDOUT,
                       env=env)
    seconds = time.time() - start
    measured = subprocess.run([sys.executable, __file__, "--measure-run", str(run / "run"), "--seed", str(seed)],
                              check=True, capture_output=True, text=True,
                              env={**env, "OMP_NUM_THREADS": str(threads or 2)})
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    shutil.copy(run / "run" / "log.csv", logs / f"{fold.replace('/', '-')}-{regime}-seed{seed}.csv")
    log = pd.read_csv(run / "run" / "log.csv")
    best_step = best_step_of(log)
    return {"steps": int(log["step"].max()), "best_step": best_step, "seconds": round(seconds, 1),
            "plan": plan_line(run / "data" / "train.log"), **json.loads(measured.stdout.strip().splitlines()[-1])}


def best_step_of(log: pd.DataFrame) -> int | None:
    """The step whose validation metric was kept (the last of the best, as the trainer's tie rule), if logged."""
    col = "val/pose_to_text/R@1"
    if col not in log:
        return None
    val = log.dropna(subset=[col])
    kept = val.get("kept")
    if kept is not None and kept.fillna(False).astype(bool).any():
        return int(val.loc[kept.fillna(False).astype(bool), "step"].iloc[-1])
    return int(val.loc[val[col] == val[col].max(), "step"].iloc[-1])


def plan_line(log: Path) -> str:
    """What `signclip train` said it chose (its recipe / regime lines), for the record."""
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines()]
    return " | ".join(ln for ln in lines if ln.startswith(("recipe ", "regime", "training ", "validation")))[:600]


def git_commit() -> str:
    root = Path(__file__).resolve().parents[1]
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "src"], cwd=root, capture_output=True, text=True).stdout
    return sha.strip() + ("+dirty" if dirty.strip() else "")


def read_cache(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def key(row: dict) -> tuple:
    return row["variant"], row["fold"], row["regime"], row["seed"]


def report(rows: list[dict], variants: list[str]) -> None:
    """Per variant: a table of every fold and regime (mean over seeds), the mean and the worst fold."""
    df = pd.DataFrame(rows)
    if df.empty:
        print("no cached runs")
        return
    for variant in variants:
        v = df[df["variant"] == variant]
        if v.empty:
            continue
        print(f"\n### {variant}: `signclip train MANIFEST --seed S {v['train_args'].iloc[-1]}`".rstrip() + "\n")
        print("| fold | regime | seeds | steps (kept) | train s | 1-NN | zero-shot | random weights 1-NN "
              "| raw keypoints 1-NN |")
        print("|---|---|---|---:|---:|---:|---:|---:|---:|")
        means = []
        for regime in REGIMES:
            for fold in FOLDS:
                g = v[(v["fold"] == fold) & (v["regime"] == regime)].sort_values("seed")
                if g.empty:
                    continue
                means.append({"regime": regime, **{m: g[m].mean() for m in METRICS}})

                def cell(col: str) -> str:
                    return f"{g[col].mean():.3f}" + (f" ± {g[col].std(ddof=0):.3f}" if len(g) > 1 else "")
                kept = g["best_step"].dropna()
                steps = f"{int(g['steps'].mean())}" + (f" ({int(kept.mean())})" if len(kept) else "")
                print(f"| {fold} | {regime} | {', '.join(map(str, g['seed']))} | {steps} | {g['seconds'].mean():.0f} "
                      f"| {cell('nn1')} | {cell('zero_shot')} | {cell('random_nn1')} | {cell('raw_nn1')} |")
        m = pd.DataFrame(means)
        for regime, g in m.groupby("regime", sort=False):
            print(f"| **mean** | {regime} | | | | {g['nn1'].mean():.3f} | {g['zero_shot'].mean():.3f} | "
                  f"{g['random_nn1'].mean():.3f} | {g['raw_nn1'].mean():.3f} |")
            print(f"| **worst fold** | {regime} | | | | {g['nn1'].min():.3f} | {g['zero_shot'].min():.3f} | "
                  f"{g['random_nn1'].min():.3f} | {g['raw_nn1'].min():.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="default", help="name of what is measured (the cache key)")
    parser.add_argument("--train-args", default="", help="extra `signclip train` options of this variant; "
                        "{dataset}, {fold}, {regime}, {seed} are filled in per run")
    parser.add_argument("--folds", nargs="+", default=list(FOLDS), choices=list(FOLDS))
    parser.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="one seed (0): for exploring")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (each with --threads 1 when > 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run")
    parser.add_argument("--rerun", action="store_true", help="train again even when the run is cached")
    parser.add_argument("--table", action="store_true", help="only print the tables of the cached runs")
    parser.add_argument("--show", nargs="*", default=None, help="variants to tabulate (default: this one)")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "signclip-generalisation")
    parser.add_argument("--keep-runs", action="store_true", help="keep each run's folder (models are ~100 MB)")
    parser.add_argument("--cache", type=Path, default=Path(__file__).with_name("generalisation_runs.jsonl"))
    parser.add_argument("--measure-run", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_run:
        print(json.dumps(measure(args.measure_run, args.seed)))
        return
    cache = read_cache(args.cache)
    show = args.show or [args.variant]
    if args.table:
        report(cache, show)
        return
    seeds = [0] if args.quick else args.seeds
    done = {key(r) for r in cache}
    todo = [(f, r, s) for r in args.regimes for f in args.folds for s in seeds
            if args.rerun or (args.variant, f, r, s) not in done]
    for row in cache:
        if row["variant"] == args.variant and row["train_args"] != args.train_args:
            sys.exit(f"variant {args.variant!r} is cached with other train args ({row['train_args']!r}): "
                     "give it a new name, or --rerun")
    threads = args.threads or (1 if args.jobs > 1 else None)
    commit = git_commit()
    cached = len(seeds) * len(args.folds) * len(args.regimes) - len(todo)
    print(f"{len(todo)} runs to train for {args.variant!r} ({cached} cached)", flush=True)

    def one(item: tuple[str, str, int]) -> dict:
        fold, regime, seed = item
        result = run_one(fold, regime, seed, shlex.split(args.train_args), args.out / args.variant, threads)
        row = {"variant": args.variant, "fold": fold, "regime": regime, "seed": seed, "train_args": args.train_args,
               "commit": commit, "threads": threads, "jobs": args.jobs, "load": round(os.getloadavg()[0], 1), **result}
        with args.cache.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps({k: row[k] for k in ("fold", "regime", "seed", "steps", "best_step", "seconds", *METRICS)}),
              flush=True)
        if not args.keep_runs:
            shutil.rmtree(args.out / args.variant / fold.replace("/", "-") / regime / f"seed{seed}", ignore_errors=True)
        return row

    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        list(pool.map(one, todo))
    report(read_cache(args.cache), show)


if __name__ == "__main__":
    main()
