"""Downstream tasks on composed continuous data (issue 21's targets): CSLR word error rate from a signclip
model trained on the isolated words and from scratch, gloss-free SLT beside a perfect gloss recogniser, and
continuous fingerspelling's letter error rate per sign language.

    python benchmarks/tasks.py                                # everything (~1 h on 2 shared cores)
    python benchmarks/tasks.py --pretrained RUN/best          # reuse a model trained on the isolated words
    python benchmarks/tasks.py --only spelling --lexicon-pretrained RUN/best   # one part, a lexicon model given

What it runs (every step a `signclip` command, one torch thread each):

1. traduttore's clips with signer dmohazab marked test (benchmarks/generalisation.py's fold_manifest);
   `signclip compose FOLD --sentences orders --count 1500`: 1,200 ordering sentences composed from the
   other signers' clips (train) and 300 from dmohazab's (test), 200 ms transitions;
2. `signclip train FOLD` (the default recipe): a signclip model of the isolated words, dmohazab held out;
3. `signclip finetune cslr ORDERS --init PRETRAINED` and the same from scratch (`--model`, the same
   tiny-partwise tower), the same steps (160 and 800): the task config below (Table III's CSLR head and loss, a higher
   learning rate and a cosine schedule so that the run fits in the time budget);
4. `signclip finetune slt ORDERS --init PRETRAINED` (gloss-free), beside translations made from glosses: the
   test set's true glosses (a perfect gloss recogniser) and the CSLR model's, each turned into a sentence by
   the training sentence seen with those glosses (gloss2text by lookup), and the true glosses lower-cased;
5. `signclip compose lexicon --sentences spelling --count 60`: 60 random 3-7-letter words per sign language of
   the lexicon (80 % of the distinct words train, 20 % test: unseen words, but the same letter clips, as the
   lexicon has one clip per letter); `signclip train lexicon` (the default recipe: a signclip model of the
   isolated letters), then `signclip finetune cslr` from it, 1,800 steps, all languages in one model; the
   letter error rate of each language (`signclip eval`'s by_language WER over letters); and one model per
   language of `--spelling-languages` (default ASL): 400 words of its letters, 300 steps.

Composed sequences lack real co-articulation: the figures are an upper bound, not a claim about real
continuous signing. Prints markdown tables (benchmarks/RESULTS.md) and writes every run to a JSONL file.
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

import pandas as pd

from signclip.data.manifests import load_lexicon

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generalisation import fold_manifest  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
# the benchmark's task configs: Table III's heads and losses; learning rates and schedules for short runs
CSLR = {"train": {"lr": 1e-3, "batch_size": 8, "warmup_fraction": 0.05, "weight_decay": 1e-5, "ema_decay": 0.0},
        "lr_schedule": "cosine"}
SLT = {"train": {"lr": 1e-3, "batch_size": 16, "warmup_fraction": 0.1, "weight_decay": 1e-4, "ema_decay": 0.0},
       "lr_schedule": "cosine"}


def signclip(*args: str) -> float:
    """Run the `signclip` command line; returns its wall time in seconds."""
    start = time.time()
    subprocess.run([sys.executable, "-m", "signclip.cli", *args], check=True, stdout=subprocess.DEVNULL)
    return time.time() - start


def task_config(out: Path, task: str, changes: dict, steps: int) -> Path:
    """The named task config with the benchmark's changes, as a JSON file for `--config`."""
    from signclip.tasks.config import get_task_config

    d = get_task_config(task).to_dict()
    d.update({k: v for k, v in changes.items() if k != "train"})
    d["train"].update({**changes["train"], "steps": steps, "eval_every": max(1, min(160, steps // 5))})
    d["name"] = f"{task}-benchmark"
    path = out / f"{task}-benchmark-{steps}.json"
    path.write_text(json.dumps(d, indent=2))
    return path


def finetune(out: Path, name: str, task: str, data: Path, config: Path, *init: str) -> dict:
    """Fine-tune (a finished run is reused), then evaluate the best model on the test split; the run's row."""
    run = out / name
    seconds = signclip("finetune", task, str(data), "-o", str(run), "--config", str(config), "--threads", "1", *init)
    signclip("eval", str(run / "best"), str(data / "manifest.csv"), "--report", str(run / "test"))
    metrics = json.loads((run / "test" / "metrics.json").read_text())[task]
    log = pd.read_csv(run / "log.csv")
    row = {"run": name, "task": task, "init": init[1] if init else "scratch", "steps": int(log["step"].max()),
           "train_seconds": float(log["time"].max()), "wall_seconds": seconds, **metrics}
    record(row)
    return row


JSONL: list[Path] = []  # where record() appends (set by main)


def record(row: dict) -> None:
    """Append a finished row to the JSONL file at once (a later failure keeps it)."""
    for path in JSONL:
        with path.open("a") as f:
            f.write(json.dumps(row) + "\n")


def gloss_rows(data: Path, cslr_run: Path | None) -> list[dict]:
    """Translations from glosses on the test set, scored like SLT: the true glosses (a perfect gloss
    recogniser) and the CSLR model's glosses, each turned into text by a lookup of the training sentences
    (the sentence seen most often with those glosses; unseen glosses: the glosses lower-cased), and the true
    glosses lower-cased with no translation step."""
    from signclip.tasks.metrics import translation_metrics

    table = pd.read_csv(data / "manifest.csv")
    train, test = table.query("split != 'test'"), table.query("split == 'test'")
    lookup = train.groupby("glosses")["text"].agg(lambda t: t.value_counts().index[0]).to_dict()

    def as_text(glosses: str) -> str:
        glosses = "" if pd.isna(glosses) else str(glosses)
        return lookup.get(glosses, glosses.lower().replace("-", " "))

    refs = test["text"].tolist()
    rows = [{"run": "perfect glosses + lookup of training sentences",
             **translation_metrics(refs, [as_text(g) for g in test["glosses"]])},
            {"run": "perfect glosses, lower-cased (no translation)",
             **translation_metrics(refs, [g.lower().replace("-", " ") for g in test["glosses"]])}]
    if cslr_run is not None:
        predicted = pd.read_csv(cslr_run / "test" / "predictions.csv", keep_default_na=False)
        by_path = dict(zip(predicted["path"], predicted["prediction"]))
        hyps = [as_text(by_path[str((data / p).resolve())]) for p in test["path"]]
        rows.insert(1, {"run": f"{cslr_run.name} glosses + lookup", **translation_metrics(refs, hyps)})
    return [{"task": "slt", "init": "-", **r} for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="tasks-")))
    parser.add_argument("--pretrained", help="a signclip model trained on the isolated words, dmohazab held out")
    parser.add_argument("--lexicon-pretrained", help="a signclip model trained on the lexicon's letters")
    parser.add_argument("--cslr-steps", type=int, nargs="+", default=[160, 800], help="step budgets compared")
    parser.add_argument("--slt-steps", type=int, default=800)
    parser.add_argument("--spelling-steps", type=int, default=1800, help="all sign languages in one model")
    parser.add_argument("--spelling-languages", nargs="*", default=["ase"], help="also one model per language")
    parser.add_argument("--language-steps", type=int, default=300)
    parser.add_argument("--only", nargs="+", default=["cslr", "slt", "spelling"])
    parser.add_argument("--jsonl", type=Path, default=Path(__file__).with_name("tasks_runs.jsonl"))
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    JSONL.append(args.jsonl)
    fold = fold_manifest(out / "fold", "traduttore/dmohazab", "full", 0)
    orders = out / "orders"
    if not (orders / "manifest.csv").exists():
        signclip("compose", str(fold), "-o", str(orders), "--sentences", "orders", "--count", "1500")
    pretrained = args.pretrained
    if pretrained is None and {"cslr", "slt"} & set(args.only):
        seconds = signclip("train", str(fold), "-o", str(out / "pretrain"), "--threads", "1")
        pretrained = str(out / "pretrain" / "best")
        print(f"pre-trained on the isolated words (dmohazab held out) in {seconds:.0f} s: {pretrained}")
    rows = []
    if "cslr" in args.only:
        for steps in args.cslr_steps:
            cfg = task_config(out, "cslr", CSLR, steps)
            rows.append(finetune(out, f"cslr-init-{steps}", "cslr", orders, cfg, "--init", pretrained))
            rows.append(finetune(out, f"cslr-scratch-{steps}", "cslr", orders, cfg, "--model", "tiny-partwise"))
    if "slt" in args.only:
        cfg = task_config(out, "slt", SLT, args.slt_steps)
        rows.append(finetune(out, "slt-init", "slt", orders, cfg, "--init", pretrained))
        cslr_run = out / f"cslr-init-{max(args.cslr_steps)}"
        rows += gloss_rows(orders, cslr_run if (cslr_run / "test").exists() else None)
    if "spelling" in args.only:
        spelling = out / "spelling"
        if not (spelling / "manifest.csv").exists():
            signclip("compose", "lexicon", "-o", str(spelling), "--sentences", "spelling", "--count", "60")
        letters = args.lexicon_pretrained
        if letters is None:
            seconds = signclip("train", "lexicon", "-o", str(out / "pretrain-lexicon"), "--threads", "1")
            letters = str(out / "pretrain-lexicon" / "best")
            print(f"pre-trained on the lexicon's isolated letters in {seconds:.0f} s: {letters}")
        cfg = task_config(out, "cslr", CSLR, args.spelling_steps)
        rows.append(finetune(out, "spelling-init", "cslr", spelling, cfg, "--init", letters))
        for lang in args.spelling_languages:  # one language's letters alone, more words
            clips = load_lexicon().query("signed_language == @lang")
            clips.to_csv(out / f"letters-{lang}.csv", index=False)
            words = out / f"spelling-{lang}"
            if not (words / "manifest.csv").exists():
                signclip("compose", str(out / f"letters-{lang}.csv"), "-o", str(words), "--sentences", "spelling",
                         "--count", "400", "--seed", "3")
            cfg = task_config(out, "cslr", CSLR, args.language_steps)
            rows.append(finetune(out, f"spelling-{lang}-init", "cslr", words, cfg, "--init", letters))
    for row in rows:
        if "steps" not in row:  # the translations from glosses (fine-tuning rows are recorded as they finish)
            record(row)
    print_tables(rows)


def print_tables(rows: list[dict]) -> None:
    cslr = [r for r in rows if r["task"] == "cslr" and not r["run"].startswith("spelling")]
    if cslr:
        print("\n| CSLR, composed orders, dmohazab held out | steps | training s | WER % | sub | del | ins |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for r in cslr:
            print(f"| {r['run']} | {r['steps']} | {r['train_seconds']:.0f} | {r['wer']:.1f} | {r['sub']:.1f} | "
                  f"{r['del']:.1f} | {r['ins']:.1f} |")
    slt = [r for r in rows if r["task"] == "slt"]
    if slt:
        print("\n| SLT, composed orders, dmohazab held out | BLEU-1 | BLEU-2 | BLEU-4 | ROUGE-L |")
        print("|---|---:|---:|---:|---:|")
        for r in slt:
            print(f"| {r['run']} | {r['bleu1']:.1f} | {r['bleu2']:.1f} | {r['bleu4']:.1f} | {r['rougeL']:.1f} |")
    spelling = [r for r in rows if r["run"].startswith("spelling")]
    if spelling:
        langs = sorted({k.split("/")[1] for r in spelling for k in r if k.startswith("by_language/")})
        print("\n| letter error rate %, composed lexicon words | steps | training s | " + " | ".join(langs)
              + " | all |")
        print("|---|---:|---:|" + "---:|" * (len(langs) + 1))
        for r in spelling:
            by_language = {lang: r.get(f"by_language/{lang}/wer", r["wer"] if r["run"] == f"spelling-{lang}-init"
                                       else None) for lang in langs}
            print(f"| {r['run']} | {r['steps']} | {r['train_seconds']:.0f} | "
                  + " | ".join("-" if v is None else f"{v:.1f}" for v in by_language.values()) + f" | {r['wer']:.1f} |")


if __name__ == "__main__":
    main()
