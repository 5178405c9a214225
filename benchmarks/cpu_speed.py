"""CPU speed (issue 24): shared cores, bf16, int8. Every ratio is measured side by side in one run.

``threads``: ``signclip train lexicon --steps 60 --recipe quickstart`` (training time from log.csv) and tiny
pose embedding (poses/s for ``--embed-seconds``), alone, beside busy Python loops that this script starts,
and two trainings at once; under three policies: ``before`` (torch's default: one thread per core, OpenMP's
default spin-then-sleep waiting; torch is imported before signclip), ``passive`` (one thread per core,
``OMP_WAIT_POLICY=PASSIVE``) and ``default`` (signclip's: passive waiting only when a busy neighbour is seen
at start, thread count from the free cores, revisited every few seconds). The runs of one round alternate
between the policies, so that the load of other processes falls on all of them alike.

``bf16``: a converted E7.2 model (random weights at the released sizes, as ``reference_speed.py``), ``tiny``
and ``tiny-partwise``: ``encode_pose`` / ``encode_text`` at ``set_precision("fp32")`` and ``("bf16")``
(poses/s, min cosine to fp32 on lexicon poses), the reference tower with MiniLM's trained BERT layers (min
cosine), and training (``--steps 60`` quickstart, same seed) at precision fp32 / bf16: time and the last
validation metrics.

    python benchmarks/cpu_speed.py --parts threads bf16 [--rounds 2] [--threads 1] [--shared-policies default]

The machine's load average and the busiest other processes are printed before anything starts.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

POLICIES = ("before", "passive", "default")
POLICY_TEXT = {"before": "torch's default (1 thread per core, spin-then-sleep)",
               "passive": "1 thread per core, OMP_WAIT_POLICY=PASSIVE",
               "default": "signclip's default (passive beside a busy neighbour, threads = free cores, adapted)"}
BUSY_LOOP = "while True: pass"
RUNS: list[Path] = []  # the run folders of the trainings, in order


# ---- the machine before anything starts ----------------------------------------------------------
def machine_state() -> str:
    """Load average, cores and the busiest other processes (ps), for the header of the results."""
    load = os.getloadavg()
    ps = subprocess.run(["ps", "-eo", "pid,pcpu,etime,args", "--sort=-pcpu"], capture_output=True, text=True).stdout
    busy = [line[:160] for line in ps.splitlines()[1:] if float(line.split()[1]) >= 5.0
            and str(os.getpid()) != line.split()[0]]
    return (f"load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min), {os.cpu_count()} CPUs; "
            f"other processes at >= 5% CPU: {len(busy)}" + "".join(f"\n    {b}" for b in busy))


def policy_env(policy: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"),
                                         *filter(None, [os.environ.get("PYTHONPATH")])])
    if policy == "passive":  # "default": the signclip command chooses (signclip.cpu.set_wait_policy)
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


def cores() -> int:
    from signclip.cpu import usable_cores

    return usable_cores()


# ---- threads: training and embedding under each policy ----------------------------------------------
def train_command(policy: str, out: Path, steps: int, precision: str = "fp32") -> list[str]:
    """``signclip train`` as a user runs it under ``policy`` (``before``: torch imported first, so OpenMP
    starts with its own wait policy; one thread per core)."""
    entry = ([sys.executable, "-c", "import torch, sys; from signclip.cli import app; app(prog_name='signclip')"]
             if policy == "before" else [sys.executable, "-m", "signclip.cli"])
    cfg = out.with_suffix(".json")
    cfg.write_text(json.dumps({"precision": precision}))
    return [*entry, "train", "lexicon", "--steps", str(steps), "--recipe", "quickstart", "--seed", "0", "-o",
            str(out), "--config", str(cfg), *(["--threads", str(cores())] if policy != "default" else [])]


def training_time(out: Path) -> tuple[float, str]:
    """Seconds of training (the last ``time`` of log.csv) and the thread counts the run logged."""
    import pandas as pd

    log = pd.read_csv(out / "log.csv")
    threads = sorted(set(log["threads"].astype(int))) if "threads" in log else []
    return float(log["time"].iloc[-1]), "/".join(map(str, threads))


def validation(out: Path) -> dict[str, float]:
    """The last validation metrics of a run's log.csv (pose-to-text R@1, text-to-pose P@1)."""
    import pandas as pd

    last = pd.read_csv(out / "log.csv").dropna(subset=["val/pose_to_text/R@1"]).iloc[-1]
    return {"R@1": float(last["val/pose_to_text/R@1"]), "P@1": float(last["val/text_to_pose/P@1"])}


def run_trainings(policy: str, root: Path, steps: int, together: int, busy: int, precision: str = "fp32"
                  ) -> list[tuple[float, str]]:
    """``together`` trainings started at once beside ``busy`` busy loops; their training times."""
    loops = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(busy)]
    try:
        outs = [root / f"{policy}-{precision}-{together}-{busy}-{i}-{time.monotonic_ns()}" for i in range(together)]
        procs = [subprocess.Popen(train_command(policy, out, steps, precision), env=policy_env(policy),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for out in outs]
        for p in procs:
            _, err = p.communicate()
            if p.returncode:
                raise RuntimeError(f"training failed: {err[-2000:]}")
        RUNS.extend(outs)
        return [training_time(out) for out in outs]
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def embed_worker(policy: str, seconds: float) -> dict:
    """Tiny pose embedding at batch 32 for ``seconds`` under ``policy`` (in its own process)."""
    if policy == "before":
        import torch

        torch.set_num_threads(cores())
    from signclip.cpu import set_wait_policy, use_threads

    if policy == "default":
        set_wait_policy()  # as the signclip command does, before torch loads OpenMP
    import signclip
    from signclip.data.manifests import load_lexicon

    if policy == "passive":
        use_threads(cores())
    elif policy == "default":
        use_threads(None)
    model = signclip.create_model("tiny")
    arrays = [model.preprocess_pose(p) for p in load_lexicon().sample(64, random_state=0)["path"]]
    model.encode_arrays(arrays, 32, progress=False)  # warm-up
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        model.encode_arrays(arrays, 32, progress=False)
        n += len(arrays)
    import torch

    return {"poses_s": n / (time.perf_counter() - start), "threads": torch.get_num_threads()}


def run_embedding(policy: str, seconds: float, busy: int) -> dict:
    loops = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(busy)]
    try:
        out = subprocess.run([sys.executable, __file__, "--worker", "embed", "--policy", policy, "--embed-seconds",
                              str(seconds)], env=policy_env(policy), capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def threads_part(args) -> None:
    """Training and embedding under each policy: alone, beside busy loops, two trainings at once."""
    scenarios = [("alone", 1, 0), ("beside 1 busy loop", 1, 1), ("2 trainings at once", 2, 0)]
    shared = args.shared_policies or args.policies  # the policies that also train beside others
    times: dict[tuple[str, str], list[float]] = {}
    threads: dict[tuple[str, str], set[str]] = {}
    embed: dict[tuple[str, int], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, together, busy in scenarios:
                for policy in args.policies:
                    if name != "alone" and policy not in shared:
                        continue
                    t0 = time.time()
                    for seconds, used in run_trainings(policy, Path(tmp), args.steps, together, busy):
                        times.setdefault((policy, name), []).append(seconds)
                        threads.setdefault((policy, name), set()).add(used)
                    print(f"round {r + 1}: {policy}, {name}: {times[(policy, name)][-together:]} s "
                          f"({time.time() - t0:.0f} s wall, load {os.getloadavg()[0]:.1f})", file=sys.stderr)
            for busy in (0, 1):
                for policy in args.policies:
                    got = run_embedding(policy, args.embed_seconds, busy)
                    embed.setdefault((policy, busy), []).append(got["poses_s"])
    print(f"\n### Threads: `signclip train lexicon --steps {args.steps} --recipe quickstart` (training time from "
          f"log.csv, median of {args.rounds} round(s); 2 at once: both runs), load average after "
          f"{os.getloadavg()[0]:.2f}\n")
    print("| policy | alone s | beside 1 busy loop s (× alone) | 2 trainings at once s (× alone) | threads logged "
          "(alone / busy / 2 at once) | × before, alone |")
    print("|---|---:|---:|---:|---|---:|")
    med = {k: float(np.median(v)) for k, v in times.items()}
    for policy in args.policies:
        alone = med[(policy, "alone")]
        cells = [f"{alone:.1f}"] + [f"{med[(policy, s)]:.1f} ({med[(policy, s)] / alone:.2f}×)" if (policy, s) in med
                                    else "–" for s in ("beside 1 busy loop", "2 trainings at once")]
        used = " / ".join(",".join(sorted(threads.get((policy, s), {"–"}))) for s, _, _ in scenarios)
        before = med.get(("before", "alone"))
        print(f"| {POLICY_TEXT[policy]} | " + " | ".join(cells) + f" | {used} | "
              + (f"{before / alone:.2f}×" if before else "–") + " |")
    print(f"\nTiny pose embedding, batch 32, {args.embed_seconds:g} s per cell (median of {args.rounds}):\n")
    print("| policy | poses/s alone | poses/s beside 1 busy loop (× alone) |")
    print("|---|---:|---:|")
    for policy in args.policies:
        a, b = (float(np.median(embed[(policy, busy)])) for busy in (0, 1))
        print(f"| {POLICY_TEXT[policy]} | {a:.0f} | {b:.0f} ({b / a:.2f}×) |")


# ---- bf16: inference and training ------------------------------------------------------------------
def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def compare_precisions(name: str, model_dir: Path, arrays: list, prompts: list[str], repeats: int) -> list[dict]:
    """fp32 against bf16 (``set_precision``) of one saved model: items/s and min cosine, the two alternating."""
    from signclip.models.signclip import load

    from reference_utils import cos_rows

    models = {p: load(model_dir) for p in ("fp32", "bf16")}
    models["bf16"].set_precision("bf16")
    n1 = max(4, len(arrays) // 4)
    work = {("pose", 1): lambda m: m.encode_arrays(arrays[:n1], 1, progress=False),
            ("pose", 32): lambda m: m.encode_arrays(arrays, 32, progress=False),
            ("text", 1): lambda m: m.encode_text(prompts[:n1], batch_size=1, progress=False),
            ("text", 32): lambda m: m.encode_text(prompts, batch_size=32, progress=False)}
    rows = []
    for (kind, batch), fn in work.items():
        out = {p: fn(m) for p, m in models.items()}  # warm-up, and the embeddings compared
        times = {p: [timed(lambda: fn(m)) for _ in range(repeats)] for p, m in models.items()}
        n = n1 if batch == 1 else len(arrays)
        rate = {p: n / float(np.median(t)) for p, t in times.items()}
        rows.append({"model": name, "input": kind, "batch": batch, "fp32": rate["fp32"], "bf16": rate["bf16"],
                     "cos": float(cos_rows(out["bf16"], out["fp32"]).min())})
    return rows


def fitted_model_dir(name: str, out: Path, lexicon) -> Path:
    """A fresh model of a named config with the lexicon's pose statistics and languages, saved to ``out``."""
    import signclip

    model = signclip.create_model(name).eval()
    model.fit_preprocessing([model.preprocess_pose(p) for p in lexicon["path"].iloc[::12]],
                            lexicon["spoken_language"], lexicon["signed_language"])
    return model.save(out)


def bf16_part(args) -> None:
    import torch

    from signclip.config import ModelConfig
    from signclip.cpu import cpu_has_bf16
    from signclip.data.manifests import load_lexicon
    from signclip.pose.preprocess import prepare_pose

    from reference_speed import converted_e72, trained_layers_model

    lexicon = load_lexicon()
    sample = lexicon.sample(args.poses, random_state=0)
    prompts = [f"<{s}> <{g}> {t}" for s, g, t in zip(sample["spoken_language"], sample["signed_language"],
                                                         sample["text"])]
    rows, train, quality = [], {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for _ in range(args.rounds):  # training time at each precision, alternating
            for precision in ("fp32", "bf16"):
                (seconds, _), = run_trainings("default", tmp, args.steps, 1, 0, precision)
                train.setdefault(precision, []).append(seconds)
                quality.setdefault(precision, []).append(validation(RUNS[-1]))
        trained = next(tmp.glob("default-fp32-*/best"))
        torch.set_num_threads(args.threads)
        models = [("E7.2 converted (random weights, released sizes)", lambda d: converted_e72(d) and d / "model"),
                  ("reference tower with MiniLM's trained layers", lambda d: trained_layers_model().save(d / "m")),
                  (f"tiny-partwise, trained {args.steps} steps (quickstart)", lambda d: trained),
                  ("tiny (untrained, lexicon statistics)", lambda d: fitted_model_dir("tiny", d / "m", lexicon))]
        for name, make in models:
            folder = tmp / f"model-{len(rows)}"
            folder.mkdir()
            model_dir = make(folder)
            pose_cfg = ModelConfig.from_dict(json.loads((model_dir / "config.json").read_text())).pose
            arrays = [prepare_pose(p, pose_cfg) for p in sample["path"]]
            rows += compare_precisions(name, model_dir, arrays, prompts, args.repeats)
            print(f"{name}: done (load {os.getloadavg()[0]:.1f})", file=sys.stderr)
    print(f"\n### bf16 (CPU bf16 instructions: {cpu_has_bf16()}), {args.threads} torch thread(s), {args.poses} "
          f"lexicon poses / prompts, median of {args.repeats}; load average after {os.getloadavg()[0]:.2f}\n")
    print("| model | input | batch | fp32 items/s | bf16 items/s | bf16 / fp32 | min cosine to fp32 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['input']} | {r['batch']} | {r['fp32']:.1f} | {r['bf16']:.1f} | "
              f"{r['bf16'] / r['fp32']:.2f}× | {r['cos']:.5f} |")
    fp32, bf16 = (float(np.median(train[p])) for p in ("fp32", "bf16"))
    print(f"\nTraining, `signclip train lexicon --steps {args.steps} --recipe quickstart --seed 0` (signclip's "
          f"thread default, median of {args.rounds}): fp32 {fp32:.1f} s, bf16 {bf16:.1f} s (bf16 {fp32 / bf16:.2f}× "
          "the fp32 speed); last validation pose-to-text R@1 / text-to-pose P@1 of each run: "
          + "; ".join(f"{p} " + ", ".join(f"{q['R@1']:.3f} / {q['P@1']:.3f}" for q in quality[p])
                      for p in ("fp32", "bf16")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="+", default=["threads", "bf16"], choices=["threads", "bf16"])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--steps", type=int, default=60, help="training steps of each timed training")
    ap.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    ap.add_argument("--shared-policies", nargs="+", choices=POLICIES,
                    help="the policies that also train beside a busy loop and two at once (default: --policies)")
    ap.add_argument("--embed-seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the bf16 inference timings")
    ap.add_argument("--poses", type=int, default=32, help="lexicon poses (and prompts) of the bf16 part")
    ap.add_argument("--repeats", type=int, default=3, help="timings per cell of the bf16 part (median)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--policy", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker == "embed":
        print(json.dumps(embed_worker(args.policy, args.embed_seconds)))
        return
    print(f"Before the run: {machine_state()}")
    if "threads" in args.parts:
        threads_part(args)
    if "bf16" in args.parts:
        bf16_part(args)


if __name__ == "__main__":
    main()
