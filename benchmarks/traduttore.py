"""Real word-level signs: the default `signclip train` on ../shared/data/traduttore, signer held out.

    python benchmarks/traduttore.py                          # both folds, seeds 0 1 2, the default recipe
    python benchmarks/traduttore.py --transfer               # + lexicon pre-training, then --init fine-tuning

For each held-out signer (its clips marked `test` in the manifest, every other row left to the default
split rules) and seed, runs `signclip train MANIFEST -o RUN --seed S` with no other option, then measures
on the held-out signer's clips:

* 1-NN accuracy: the nearest training clip (cosine of pose embeddings) has the same word;
* zero-shot top-1: the best of the 14 prompts `<en> <ase> word`;
* the same network with random weights (feature statistics fitted on the same training clips), 1-NN;
* raw keypoints (data/traduttore/SOURCE.md's figure): nose, shoulders, elbows, wrists and both hands
  (x, y), shoulder-normalised, missing parts 0, resampled to 32 frames, flattened; 1-NN by cosine.

``--transfer`` also measures fine-tuning: a model trained on the fingerspelling lexicon alone (it has
never seen these signs) and one trained on lexicon + the fold's training clips, each fine-tuned with
`signclip train MANIFEST --init MODEL` for the same number of steps as a model trained from scratch.
Prints markdown tables (figures for benchmarks/RESULTS.md) and writes every row to a JSONL file.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("HF_HUB_OFFLINE", "1")
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "traduttore"
RAW_POINTS = ("NOSE", "LEFT_SHOULDER", "RIGHT_SHOULDER", "LEFT_ELBOW", "RIGHT_ELBOW", "LEFT_WRIST", "RIGHT_WRIST")


def fold_manifest(out: Path, held_out: str) -> Path:
    """The traduttore manifest with the held-out signer's clips marked test (the rest left unsplit)."""
    df = pd.read_csv(DATA / "manifest.csv")
    df["path"] = [str(DATA / p) for p in df["path"]]
    df["split"] = np.where(df["signer"] == held_out, "test", None)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "manifest.csv", index=False)
    return out / "manifest.csv"


def signclip(*args: str) -> float:
    """Run the `signclip` command line; returns its wall time in seconds."""
    start = time.time()
    subprocess.run([sys.executable, "-m", "signclip.cli", *args], check=True, stdout=subprocess.DEVNULL)
    return time.time() - start


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)


def nn1(gallery: np.ndarray, gallery_y: np.ndarray, queries: np.ndarray, y: np.ndarray) -> float:
    """1-nearest-neighbour accuracy by cosine."""
    return float((gallery_y[(unit(queries) @ unit(gallery).T).argmax(1)] == y).mean())


def raw_features(df: pd.DataFrame) -> np.ndarray:
    """SOURCE.md's raw-keypoint baseline: nose, shoulders, elbows, wrists and both hands (x, y),
    shoulder-normalised, not mirrored, missing parts 0, resampled to 32 frames -> (N, 32 x 49 x 2)."""
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
    test_arrays, test, _ = load_arrays(splits[splits["split"] == "test"], model.cfg.pose, progress=False)
    gal_arrays, gallery, _ = load_arrays(splits[splits["split"].isin(["train", "validation"])], model.cfg.pose,
                                         progress=False)
    y, gy = test["text"].to_numpy(), gallery["text"].to_numpy()
    words = sorted(set(gy))
    emb, gemb = model.encode_arrays(test_arrays), model.encode_arrays(gal_arrays)
    zs = (np.array(words)[(emb @ model.encode_text(words, "en", "ase").T).argmax(1)] == y).mean()
    torch.manual_seed(seed)
    random = sc.create_model(model.cfg).eval()
    random.fit_preprocessing(gal_arrays)
    raw = raw_features(test), raw_features(gallery)
    return {"n_test": len(y), "n_gallery": len(gy), "nn1": nn1(gemb, gy, emb, y), "zero_shot": float(zs),
            "random_nn1": nn1(random.encode_arrays(gal_arrays), gy, random.encode_arrays(test_arrays), y),
            "raw_nn1": nn1(raw[1], gy, raw[0], y)}


def steps_of(run: Path) -> int:
    return int(pd.read_csv(run / "log.csv")["step"].max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", nargs="+", default=["dmohazab", "TheCamNelson"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--transfer", action="store_true", help="also lexicon pre-training + --init fine-tuning")
    parser.add_argument("--steps", type=int, default=None, help="override the default recipe's steps (smoke test)")
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="traduttore-")))
    parser.add_argument("--jsonl", type=Path, default=Path(__file__).with_name("traduttore_runs.jsonl"))
    args = parser.parse_args()
    extra = ["--steps", str(args.steps)] if args.steps else []
    rows = []
    for fold in args.folds:
        manifest = fold_manifest(args.out / fold, fold)
        for seed in args.seeds:
            run = args.out / fold / f"default-{seed}"
            seconds = signclip("train", str(manifest), "-o", str(run), "--seed", str(seed), *extra)
            rows.append({"fold": fold, "variant": "default", "seed": seed, "steps": steps_of(run),
                         "seconds": round(seconds, 1), "load": os.getloadavg()[0], **measure(run, seed)})
            print(json.dumps(rows[-1]), flush=True)
        if args.transfer:
            rows += transfer(args, fold, manifest, extra)
    with args.jsonl.open("a") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    report(rows)


def transfer(args, fold: str, manifest: Path, extra: list[str]) -> list[dict]:
    """Fine-tuning from a lexicon-only model and from a lexicon + fold pre-trained model (seed 0), with as
    many steps as the default run from scratch took."""
    rows = []
    seed = args.seeds[0]
    steps = str(steps_of(args.out / fold / f"default-{seed}"))
    lexicon_run = args.out / "lexicon"
    if not (lexicon_run / "best").exists():
        signclip("train", "lexicon", "-o", str(lexicon_run), "--seed", str(seed), *extra)
    table = pd.concat([pd.read_csv(manifest).assign(split=lambda d: d["split"].fillna("train")),
                       lexicon_table().assign(split="train")], ignore_index=True)
    table.to_csv(args.out / fold / "with_lexicon.csv", index=False)
    both = args.out / fold / "pretrain-lexicon+fold"
    signclip("train", str(args.out / fold / "with_lexicon.csv"), "-o", str(both), "--seed", str(seed), *extra)
    for name, init in (("lexicon -> fine-tune", lexicon_run), ("lexicon+fold -> fine-tune", both)):
        run = args.out / fold / name.replace(" ", "_").replace(">", "")
        seconds = signclip("train", str(manifest), "-o", str(run), "--init", str(init / "best"), "--steps", steps,
                           "--seed", str(seed))
        rows.append({"fold": fold, "variant": name, "seed": seed, "steps": steps_of(run), "seconds": round(seconds, 1),
                     "load": os.getloadavg()[0], **measure(run, seed)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def lexicon_table() -> pd.DataFrame:
    from signclip.data.manifests import load_lexicon

    return load_lexicon()


def report(rows: list[dict]) -> None:
    df = pd.DataFrame(rows)
    print("\n| fold | variant | seeds | steps | s / run | 1-NN | zero-shot | random weights 1-NN "
          "| raw keypoints 1-NN |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for (fold, variant), g in df.groupby(["fold", "variant"], sort=False):
        def cell(col: str) -> str:
            return f"{g[col].mean():.3f}" + (f" ± {g[col].std(ddof=0):.3f}" if len(g) > 1 else "")
        print(f"| {fold} | {variant} | {', '.join(map(str, g['seed']))} | {int(g['steps'].mean())} | "
              f"{g['seconds'].mean():.0f} | {cell('nn1')} | {cell('zero_shot')} | {cell('random_nn1')} | "
              f"{cell('raw_nn1')} |")


if __name__ == "__main__":
    main()
