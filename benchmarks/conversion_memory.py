"""Memory of converting a reference SignCLIP checkpoint of the released E7.2 size with its full Adam state.

    python benchmarks/conversion_memory.py [--checkpoint /tmp/signclip-e72-adam/checkpoint_best.pt] [--remove]

The released ``checkpoint_best.pt`` files are fairseq trainer dicts that keep the optimiser state (about 2.6 GB
for E7.2 ``baseline_temporal``). The checkpoint written here has that format and size: ``model`` with the
217,681,152 ``mmmodel.*`` weights in fp32 (609 features, 12 + 12 BERT-base layers, vocabulary 28,996; random,
written by ``tests/reference_utils``), ``cfg`` / ``args`` as ``argparse.Namespace`` objects, and
``last_optimizer_state`` as fairseq's ``FP16Optimizer`` saves it: Adam's ``exp_avg`` and ``exp_avg_sq`` over
the one flat fp32 copy of all parameters (2 x 217,681,152 fp32). It is written once (a minute, 2.6 GB of
memory for a moment) and reused.

``signclip.convert_reference`` runs in a fresh process (1 torch thread) while this one samples its
``/proc/PID/status`` every 10 ms; the child reports its own peak resident set (``VmHWM``) before exiting.
Resident memory counts the pages of the memory-mapped checkpoint that were read (``RssFile``, page cache
the kernel can drop) as well as the process's own (``RssAnon``); the table gives both, and what the imports
alone take.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

DEFAULT = Path(tempfile.gettempdir()) / "signclip-e72-adam" / "checkpoint_best.pt"
GB = 1e9


def write_checkpoint(path: Path) -> None:
    """The E7.2-size checkpoint with full Adam state (see the module docstring), and its tokenizer folder."""
    import torch

    from reference_utils import fairseq_checkpoint, random_weights, reference_shapes, sized_tokenizer

    path.parent.mkdir(parents=True, exist_ok=True)
    weights = random_weights(reference_shapes(609, 28996, 12, 12, hidden=768, intermediate=3072), seed=0)
    ckpt = fairseq_checkpoint(weights)
    n = sum(v.numel() for k, v in weights.items() if not k.endswith("position_ids"))
    ckpt["last_optimizer_state"]["state"][0] = {"step": 25_000, "exp_avg": torch.zeros(n),
                                                "exp_avg_sq": torch.zeros(n)}
    torch.save(ckpt, path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)
    if not (path.parent / "tokenizer").exists():
        sized_tokenizer(path.parent / "tokenizer", 28996).save_pretrained(str(path.parent / "tokenizer"))


def status() -> dict[str, int]:
    """This process's memory figures from /proc/self/status, in bytes."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            fields[name] = int(value.split()[0]) * 1024
    return fields


def convert(checkpoint: Path, out: Path) -> None:
    """The child: convert, then report its memory as one JSON line."""
    import torch

    import signclip

    torch.set_num_threads(1)
    imports = status()
    start = time.perf_counter()
    signclip.convert_reference(checkpoint, out, tokenizer=str(checkpoint.parent / "tokenizer"))
    seconds = time.perf_counter() - start
    print(json.dumps({"imports": imports, "end": status(), "seconds": seconds}))


def sample(pid: int, peaks: dict[str, int], done: threading.Event) -> None:
    """Keep the highest RssAnon / RssFile / VmRSS of process ``pid`` until ``done``."""
    while not done.is_set():
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile"):
                peaks[name] = max(peaks.get(name, 0), int(value.split()[0]) * 1024)
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT, help="written there when missing")
    parser.add_argument("--remove", action="store_true", help="delete the checkpoint afterwards")
    parser.add_argument("--convert", type=Path, help=argparse.SUPPRESS)  # the child: output folder
    args = parser.parse_args()
    if args.convert:
        convert(args.checkpoint, args.convert)
        return
    if not args.checkpoint.is_file():
        print(f"writing {args.checkpoint} ...", flush=True)
        write_checkpoint(args.checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        child = subprocess.Popen([sys.executable, __file__, "--checkpoint", str(args.checkpoint), "--convert",
                                  str(Path(tmp) / "model")], stdout=subprocess.PIPE, text=True, env=env)
        peaks: dict[str, int] = {}
        done = threading.Event()
        sampler = threading.Thread(target=sample, args=(child.pid, peaks, done))
        sampler.start()
        stdout, _ = child.communicate()
        done.set()
        sampler.join()
        if child.returncode:
            sys.exit(f"conversion failed (exit status {child.returncode})")
        report = json.loads(stdout.strip().splitlines()[-1])
        weights = (Path(tmp) / "model" / "model.safetensors").stat().st_size
    if args.remove:
        args.checkpoint.unlink()
    size = args.checkpoint.stat().st_size if args.checkpoint.exists() else None
    print(f"\ncheckpoint: {size / GB:.2f} GB" if size else "", f"(converted weights {weights / GB:.2f} GB); "
          f"conversion {report['seconds']:.1f} s, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    print("| memory (GB) | after imports | peak |")
    print("|---|---:|---:|")
    print(f"| resident (VmHWM, incl. mapped checkpoint pages) | {report['imports']['VmRSS'] / GB:.2f} "
          f"| {report['end']['VmHWM'] / GB:.2f} |")
    print(f"| anonymous (RssAnon, sampled every 10 ms) | {report['imports']['RssAnon'] / GB:.2f} "
          f"| {peaks.get('RssAnon', 0) / GB:.2f} |")
    print(f"| mapped files (RssFile, sampled) | {report['imports']['RssFile'] / GB:.2f} "
          f"| {peaks.get('RssFile', 0) / GB:.2f} |")


if __name__ == "__main__":
    main()
