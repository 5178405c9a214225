"""Ablation of issue 6: which objective / encoder helps on the fingerspelling lexicon?

Variants (same budget, same data split, the quickstart's training hyperparameters; only the
training seed varies):

* ``contrastive``  tiny, global pose encoder, contrastive loss only (the current default)
* ``+mpm``         + masked pose modelling (lambda = 1, 40 % of frames)
* ``+fine``        + fine-grained window x token contrast (weight 1, s = 4); reported twice: ranked
                   by the global similarity, and by the mean of global and fine-grained similarity
* ``partwise``     tiny-partwise (manual + non-manual streams), contrastive only
* ``partwise-joint`` the same with body and face through one non-manual input layer (split_non_manual off)
* ``frozen-text``  tiny with the text backbone frozen, contrastive only

Metrics on the lexicon's test split: pose->text R@1 / R@10 against the unique test prompts, and
sign-language identification top-1 (each test pose ranks the 19 ``<spoken> <signed>`` prompts with
empty text). Runs go seed by seed over all variants, each result is appended to a JSONL file as it
finishes (so an interrupted benchmark still gives a table), and the table replaces the section
``## Ablation`` of ``benchmarks/RESULTS.md``.

    python benchmarks/ablation.py --epochs 3 --seeds 0 1 2
    python benchmarks/ablation.py --table-only          # rewrite the table from the JSONL
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from signclip.config import TrainConfig, get_model_config, get_recipe  # noqa: E402
from signclip.data.manifests import load_lexicon
from signclip.data.splits import split_dataset
from signclip.eval.recognition import language_identification, spoken_for_signed  # noqa: E402
from signclip.eval.retrieval import combined_similarity, fine_grained_similarity, pose_to_text, unique_texts  # noqa: E402
from signclip.training import fit

HERE = Path(__file__).parent
QUICKSTART_TRAIN = get_recipe("quickstart").train
SECTION = "## Ablation"
# name -> (model config, model overrides, train overrides)
VARIANTS: dict[str, tuple[str, dict, dict]] = {
    "contrastive": ("tiny", {}, {}),
    "+mpm": ("tiny", {}, {"mpm_weight": 1.0}),
    "+fine": ("tiny", {}, {"fine_grained_weight": 1.0}),
    "partwise": ("tiny-partwise", {}, {}),
    "partwise-joint": ("tiny-partwise", {"split_non_manual": False}, {}),
    "frozen-text": ("tiny", {"freeze_text": True}, {}),
}


def run_one(variant: str, seed: int, args: argparse.Namespace, data, spoken) -> list[dict]:
    """Train one variant with one training seed; test metrics (one row, two for ``+fine``)."""
    cfg_name, model_over, train_over = VARIANTS[variant]
    model_cfg = get_model_config(cfg_name, pose_layers=args.pose_layers, **model_over)
    train_cfg = TrainConfig.from_dict({**QUICKSTART_TRAIN, **train_over, "epochs": args.epochs})
    train_cfg.seed = seed  # training seed only: the split is fixed beforehand (split column set)
    out = Path(tempfile.mkdtemp(prefix=f"ablation-{variant}-{seed}-"))
    start = time.time()
    model, splits, summary = fit(data, model_cfg, train_cfg, out, resume=False, progress=False)
    test = splits["test"]
    texts, index = unique_texts(test.prompts)
    pose_emb = model.encode_arrays(test.arrays, 64)  # (N, E)
    global_sim = pose_emb @ model.encode_text(texts, progress=False).T  # (N, M)
    lang = language_identification(model, pose_emb, test.df["signed_language"].astype(str).tolist(), spoken=spoken)
    base = {"variant": variant, "seed": seed, "epochs": args.epochs, "steps": summary["steps"],
            "seconds": round(time.time() - start, 1), "n_test": len(test.arrays), "n_texts": len(texts),
            "lang_top1": lang.metrics["top-1"]}
    rows = [{**base, **_p2t(global_sim, index)}]
    if variant == "+fine":
        fine = fine_grained_similarity(model, test.arrays, texts, train_cfg.fine_grained_window)
        rows.append({**base, "variant": "+fine (global+fine ranking)",
                     **_p2t(combined_similarity(global_sim, fine, 0.5), index)})
    shutil.rmtree(out, ignore_errors=True)
    return rows


def _p2t(sim: np.ndarray, index: np.ndarray) -> dict[str, float]:
    m = pose_to_text(sim, index)
    return {"R@1": m["R@1"], "R@10": m["R@10"]}


def table(rows: list[dict], args: argparse.Namespace) -> str:
    """Markdown section: mean ± std over seeds per variant."""
    order = list(VARIANTS) + ["+fine (global+fine ranking)"]
    order.insert(order.index("+fine") + 1, order.pop())
    first = rows[0] if rows else {}
    lines = [SECTION, "",
             f"Budget per run: model `tiny` / `tiny-partwise` with pose_layers={args.pose_layers}, "
             f"{first.get('epochs', args.epochs)} epochs ({first.get('steps', '?')} optimiser steps) of the lexicon "
             f"training split, quickstart hyperparameters `{QUICKSTART_TRAIN}`, other TrainConfig fields default "
             f"(augmentation on). Same split (seed {args.split_seed}: {first.get('n_test', '?')} test poses, "
             f"{first.get('n_texts', '?')} unique test prompts); training seeds vary. The best validation "
             "checkpoint is tested. 2 shared CPU cores. Written by `benchmarks/ablation.py`.", "",
             "| variant | runs | pose→text R@1 | pose→text R@10 | language id top-1 | s / run |",
             "|---|---|---|---|---|---|"]
    for v in order:
        rs = [r for r in rows if r["variant"] == v]
        if not rs:
            lines.append(f"| {v} | 0 | not run | | | |")
            continue

        def ms(key: str) -> str:
            a = np.array([r[key] for r in rs]) * 100
            return f"{a.mean():.1f} ± {a.std():.1f}"
        secs = np.mean([r["seconds"] for r in rs])
        lines.append(f"| {v} | {len(rs)} (seeds {', '.join(str(r['seed']) for r in rs)}) | {ms('R@1')} | "
                     f"{ms('R@10')} | {ms('lang_top1')} | {secs:.0f} |")
    n = first.get("n_texts")
    chance = f"R@1 {100 / n:.1f}, R@10 {1000 / n:.1f}" if n else "R@k = k / unique prompts"
    lines += ["", f"Percent, mean ± std (population) over training seeds. Chance: {chance}, language id top-1 "
              f"{100 / 19:.1f} (19 languages).", ""]
    if args.note:
        lines += [args.note, ""]
    return "\n".join(lines)


def write_section(text: str, path: Path) -> None:
    """Replace (or append) only the ablation section of RESULTS.md."""
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    if SECTION in old:
        head, rest = old.split(SECTION, 1)
        nxt = rest.find("\n## ")
        tail = rest[nxt + 1:] if nxt >= 0 else ""
        new = head + text + ("\n" + tail if tail else "")
    else:
        new = old.rstrip("\n") + "\n\n" + text
    path.write_text(new)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--pose-layers", type=int, default=2)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--split-seed", type=int, default=42)
    p.add_argument("--results", type=Path, default=HERE / "ablation_runs.jsonl")
    p.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    p.add_argument("--table-only", action="store_true")
    p.add_argument("--note", default="", help="a paragraph added under the table")
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("SIGNCLIP_THREADS", "2")))
    if not args.table_only:
        lex = load_lexicon()
        quickstart = get_recipe("quickstart").train_config()
        data = split_dataset(lex, quickstart.val_fraction, quickstart.test_fraction, args.split_seed)
        spoken = spoken_for_signed(lex)
        for seed in args.seeds:
            for variant in args.variants:
                rows = run_one(variant, seed, args, data, spoken)
                with args.results.open("a") as f:
                    f.writelines(json.dumps(r) + "\n" for r in rows)
                print(json.dumps(rows), flush=True)
                write_section(table(_read(args.results), args), args.out)
    write_section(table(_read(args.results), args), args.out)
    print(table(_read(args.results), args))


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


if __name__ == "__main__":
    main()
