"""Embedding speed on CPU: poses/s and texts/s of `tiny` and `base` at batch 1 and 32, beside a
paper-sized reference-style model (12-layer BERT-base pose tower on 609-d frames + BERT-base text
tower, random weights, no download) measured in the same run; plus peak memory (max RSS) per model.

Each model runs in its own subprocess so that ru_maxrss is that model's peak (Python + torch
included). Inputs are real lexicon poses (preprocessed once, model time only) and lexicon prompts.

    python benchmarks/embed.py [--threads 2] [--poses 64] [--texts 96] [--profile tiny]

``--profile NAME``: then where that model's pose batches of 32 spend their time (torch profiler: self time
per op, and the time outside torch ops: Python, padding, sorting).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

MODELS = ["tiny", "base", "reference"]
BATCHES = [1, 32]


class ReferenceModel:
    """The reference design's shapes with random weights: per-frame MLP 609 -> 768 (GELU, LayerNorm),
    12-layer BERT-base encoder over frames, mean pool; BERT-base text tower, mean pool."""

    def __init__(self):
        import torch
        from torch import nn
        from transformers import BertConfig, BertModel

        from signclip.models.text_encoder import load_tokenizer

        torch.manual_seed(0)
        self.tokenizer = load_tokenizer("default")  # a BERT WordPiece tokenizer shipped offline
        base = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                    max_position_embeddings=512)
        self.frame_mlp = nn.Sequential(nn.Linear(609, 768), nn.GELU(), nn.LayerNorm(768)).eval()
        self.pose_bert = BertModel(BertConfig(vocab_size=2, **base), add_pooling_layer=False).eval()
        self.text_bert = BertModel(BertConfig(vocab_size=self.tokenizer.vocab_size, **base),
                                   add_pooling_layer=False).eval()
        self.params = sum(p.numel() for m in (self.frame_mlp, self.pose_bert, self.text_bert) for p in m.parameters())

    def encode_arrays(self, arrays, batch_size):
        import torch

        from signclip.batching import pad_poses

        out = []
        with torch.no_grad():
            for s in range(0, len(arrays), batch_size):
                x, mask = pad_poses(arrays[s: s + batch_size])
                h = self.pose_bert(inputs_embeds=self.frame_mlp(torch.nan_to_num(x)),
                                   attention_mask=mask.long()).last_hidden_state
                m = mask.unsqueeze(-1).float()
                out.append((h * m).sum(1) / m.sum(1))
        return torch.cat(out)

    def encode_text(self, texts, batch_size):
        import torch

        out = []
        with torch.no_grad():
            for s in range(0, len(texts), batch_size):
                tok = self.tokenizer(texts[s: s + batch_size], padding=True, truncation=True, max_length=64,
                                     return_tensors="pt")
                h = self.text_bert(**tok).last_hidden_state
                m = tok["attention_mask"].unsqueeze(-1).float()
                out.append((h * m).sum(1) / m.sum(1))
        return torch.cat(out)


def throughput(fn, items: list, batch_size: int) -> float:
    """Items per second from the median time of one batch (robust to a shared, busy CPU)."""
    times = []
    for s in range(0, len(items) - batch_size + 1, batch_size):
        t = time.perf_counter()
        fn(items[s: s + batch_size], batch_size)
        times.append(time.perf_counter() - t)
    times.sort()
    return batch_size / times[len(times) // 2]


def worker(name: str, threads: int, n_poses: int, n_texts: int) -> dict:
    """Build one model, time it, and return its figures (runs in a subprocess)."""
    import torch

    torch.set_num_threads(threads)
    from signclip.config import PoseConfig
    from signclip.data.manifests import load_lexicon
    from signclip.pose.preprocess import preprocess

    lex = load_lexicon().sample(max(n_poses, n_texts), random_state=0)
    if name == "reference":
        model = ReferenceModel()
        pose_cfg = PoseConfig(layout="contour_holistic", max_frames=256)  # 203 points x 3 = 609-d frames
        params = model.params

        def enc_pose(arrays, b):
            return model.encode_arrays(arrays, b)

        def enc_text(texts, b):
            return model.encode_text(texts, b)
    else:
        import signclip

        model = signclip.create_model(name).eval()
        pose_cfg = model.cfg.pose
        params = sum(p.numel() for p in model.parameters())

        def enc_pose(arrays, b):
            return model.encode_arrays(arrays, b)

        def enc_text(texts, b):
            return model.encode_text(texts, batch_size=b, progress=False)

    arrays = [preprocess(p, pose_cfg) for p in lex["path"][:n_poses]]
    prompts = [f"<{s}> <{g}> {t}" for s, g, t in zip(lex["spoken_language"], lex["signed_language"], lex["text"])]
    prompts = prompts[:n_texts]
    result = {"model": name, "params_m": params / 1e6, "frames_mean": sum(a.shape[0] for a in arrays) / len(arrays)}
    for b in BATCHES:
        n_p = n_poses if b > 1 else max(8, n_poses // 4)
        n_t = n_texts if b > 1 else max(16, n_texts // 4)
        enc_pose(arrays[:b], b)  # warm-up
        enc_text(prompts[:b], b)
        result[f"poses_s_b{b}"] = throughput(enc_pose, arrays[:n_p], b)
        result[f"texts_s_b{b}"] = throughput(enc_text, prompts[:n_t], b)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return result


def profile(name: str, threads: int, n_poses: int, rounds: int = 5) -> str:
    """A markdown table of where ``name``'s pose batches of 32 spend their wall time (torch profiler)."""
    import torch

    import signclip
    from signclip.data.manifests import load_lexicon

    torch.set_num_threads(threads)
    model = signclip.create_model(name).eval()
    arrays = [model.preprocess_pose(p) for p in load_lexicon().sample(n_poses, random_state=0)["path"]]
    model.encode_arrays(arrays, 32, progress=False)  # warm-up
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(rounds):
            model.encode_arrays(arrays, 32, progress=False)
        wall = (time.perf_counter() - start) * 1e6  # µs
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    batches = rounds * -(-len(arrays) // 32)
    lines = [f"`{name}`, {len(arrays)} lexicon poses in batches of 32, {threads} thread(s): "
             f"{wall / batches / 1000:.2f} ms per batch (with the profiler on)\n",
             "| op | calls per batch | ms per batch | share of wall time |", "|---|---:|---:|---:|"]
    for e in events[:12]:
        lines.append(f"| {e.key} | {e.count / batches:.0f} | {e.self_cpu_time_total / batches / 1000:.3f} | "
                     f"{e.self_cpu_time_total / wall:.1%} |")
    outside = wall - sum(e.self_cpu_time_total for e in events)
    lines.append(f"| outside torch ops (Python, padding, sorting) | | {outside / batches / 1000:.3f} | "
                 f"{outside / wall:.1%} |")
    return "\n".join(lines)


def table(rows: list[dict]) -> str:
    ref = next(r for r in rows if r["model"] == "reference")
    head = ("| model | params (M) | poses/s b1 | poses/s b32 | texts/s b1 | texts/s b32 | peak RSS (MiB) |\n"
            "|---|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in rows:
        cells = [r["model"] + (" (BERT-base ×2, random)" if r["model"] == "reference" else ""), f"{r['params_m']:.1f}"]
        for key in ("poses_s_b1", "poses_s_b32", "texts_s_b1", "texts_s_b32"):
            ratio = "" if r is ref else f" ({r[key] / ref[key]:.1f}×)"
            cells.append(f"{r[key]:.1f}{ratio}")
        ratio = "" if r is ref else f" ({r['peak_rss_mib'] / ref['peak_rss_mib']:.2f}×)"
        cells.append(f"{r['peak_rss_mib']:.0f}{ratio}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--poses", type=int, default=64, help="poses timed at batch 32 (a quarter at batch 1)")
    ap.add_argument("--texts", type=int, default=96, help="texts timed at batch 32 (a quarter at batch 1)")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--profile", help="profile this model's pose batches of 32 after the table")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.threads, args.poses, args.texts)))
        return
    rows = []
    for name in args.models.split(","):
        cmd = [sys.executable, __file__, "--worker", name, "--threads", str(args.threads),
               "--poses", str(args.poses), "--texts", str(args.texts)]
        t = time.time()
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(f"{name}: done in {time.time() - t:.0f} s", file=sys.stderr)
    print(f"CPU, {args.threads} torch threads; (x) = times the reference-style model; throughput from the "
          f"median batch time; mean {rows[0]['frames_mean']:.0f} frames per lexicon pose\n")
    print(table(rows))
    if args.profile:
        print("\n" + profile(args.profile, args.threads, args.poses))


if __name__ == "__main__":
    main()
