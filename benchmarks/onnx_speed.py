"""ONNX (fp32, int8) vs torch on CPU: pose and text encoder latency at batch 1, throughput at batch 32,
and cosine of the embeddings, on real lexicon poses and prompts.

    python benchmarks/onnx_speed.py --threads 1 --iters 30 --model signclip-quickstart/best

On a CPU with bf16 instructions a ``torch bf16`` row (``SignCLIP.set_precision("bf16")``) stands beside
them: onnxruntime's CPU provider has no bf16 MatMul, so that is the bf16 path.

Without ``--model``: an untrained ``tiny`` model with lexicon pose statistics. Its transformer layers
start as copies of each other (``nn.TransformerEncoder`` clones the layer), the exporter stores the
identical weights once and the quantiser then converts only their first use, so int8 figures need a
trained model.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def timed(fn, iters: int) -> float:
    """Median ms per call."""
    fn()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--model", help="a saved model directory (default: an untrained tiny model)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from signclip.cpu import cpu_has_bf16
    from signclip.data.manifests import load_lexicon
    from signclip.export.onnx import export_onnx
    from signclip.export.runtime import OnnxSignCLIP
    from signclip.models.signclip import load

    from serve_utils import untrained_model_dir

    lexicon = load_lexicon()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or untrained_model_dir(Path(tmp) / "model", lexicon)
        model = load(model_dir).eval()
        bf16 = load(model_dir).eval() if cpu_has_bf16() else None
        if bf16 is not None:
            bf16.set_precision("bf16")
        export_onnx(model, Path(tmp) / "onnx", int8=True)
        fp32 = OnnxSignCLIP(Path(tmp) / "onnx", threads=args.threads)
        int8 = OnnxSignCLIP(Path(tmp) / "onnx", int8=True, threads=args.threads)
        rows = lexicon.sample(64, random_state=1)
        arrays = [model.preprocess_pose(p) for p in rows["path"]]
        prompts = model.prompts(rows["text"].tolist(), rows["spoken_language"].tolist(),
                                rows["signed_language"].tolist())
        one, batch = arrays[:1], arrays[:32]
        print(f"model {model.cfg.name} ({args.model or 'untrained'}); torch {torch.__version__}, "
              f"{args.threads} threads; pose batch 1 = {one[0].shape[0]} frames, "
              f"batch 32 = {np.mean([a.shape[0] for a in batch]):.0f} frames on average; median of {args.iters}")
        print("| encoder | runtime | batch 1 ms | batch 32 items/s | cosine to torch | cosine to fp32 |")
        print("|---|---|---:|---:|---:|---:|")
        ref_pose = model.encode_arrays(arrays, 32)
        ref_text = model.encode_text(prompts)
        runs = {
            "pose": {"torch": lambda a: model.encode_arrays(a, 32),
                     "onnx fp32": lambda a: fp32.encode_arrays(a), "onnx int8": lambda a: int8.encode_arrays(a)},
            "text": {"torch": lambda t: model.encode_text(t), "onnx fp32": lambda t: fp32.encode_text(t),
                     "onnx int8": lambda t: int8.encode_text(t)},
        }
        if bf16 is not None:
            runs["pose"]["torch bf16"] = lambda a: bf16.encode_arrays(a, 32)
            runs["text"]["torch bf16"] = lambda t: bf16.encode_text(t)
        for enc, fns in runs.items():
            inputs1, inputs32, ref = (one, batch, ref_pose) if enc == "pose" else (prompts[:1], prompts[:32], ref_text)
            full = arrays if enc == "pose" else prompts
            emb = {name: fn(full) for name, fn in fns.items()}
            for name, fn in fns.items():
                ms1 = timed(lambda: fn(inputs1), args.iters)
                ms32 = timed(lambda: fn(inputs32), max(5, args.iters // 3))
                cos_t = float((emb[name] * ref).sum(1).min())
                cos_f = float((emb[name] * emb["onnx fp32"]).sum(1).min())
                print(f"| {enc} | {name} | {ms1:.2f} | {32000 / ms32:.0f} | {cos_t:.5f} (min) | {cos_f:.5f} (min) |",
                      flush=True)


if __name__ == "__main__":
    main()
