"""ONNX int8 of trained BERT layers at the cosine we promise (issue 24): the reference pose tower with
MiniLM's trained layers (``reference_speed.trained_layers_model``), exported, and its pose graph quantised in
several ways; int8 / fp32 speed at batch 32 and min cosine to ONNX fp32 over lexicon poses.

    python benchmarks/int8_outliers.py --poses 32 --calibration 64

Rows: the quantisation without calibration poses (``signclip.export.onnx.quantize_int8``: BERT feed-forward
outputs kept in fp32); every feed-forward output quantised too; one layer's feed-forward output quantised at a time; and
every feed-forward output quantised after SmoothQuant-style smoothing (activation channel ``j`` divided by
``s_j = max|x_j|^a / max|w_j|^(1-a)``, weight row ``j`` multiplied by it, ``max|x_j|`` from calibration
poses, other than the measured ones); and what ``signclip.export.calibrate`` chooses from the calibration
poses (smoothing at a = 0.5, then fp32 again for the layers with the strongest token outliers until the
calibration poses' min cosine reaches 0.99). The activations are then summarised per channel and per token:
whether their outliers sit in a few channels (what smoothing moves into the weights) or in a few tokens (what
a per-tensor activation scale cannot avoid).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1] / "tests")]


class Recorder:
    """A pose session stand-in that runs the fp32 graph with the feed-forward outputs' inputs as extra outputs
    and keeps their max |x| per channel and every token's max |x|."""

    def __init__(self, model, names: list[str]):
        import onnx
        import onnxruntime as ort

        for name in names:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
        self.session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        self.names = names
        self.channels = {n: 0.0 for n in names}
        self.tokens: dict[str, list[np.ndarray]] = {n: [] for n in names}

    def run(self, _, feeds: dict) -> list:
        out = self.session.run(None, feeds)
        for name, x in zip(self.names, out[1:]):
            flat = np.abs(x).reshape(-1, x.shape[-1])  # (tokens, channels)
            self.channels[name] = np.maximum(self.channels[name], flat.max(0))
            self.tokens[name].append(flat.max(1))
        return out[:1]


def token_outliers(token_max: np.ndarray, ratio: float = 8.0) -> bool:
    """Whether some tokens' max |x| exceeds ``ratio`` x the median token's: one per-tensor int8 scale then
    spends its range on those tokens."""
    return bool((token_max > ratio * np.median(token_max)).any())


def options(threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return opts


def smoothed(source: Path, target: Path, channels: dict[str, np.ndarray], alpha: float) -> Path:
    """The graph with each recorded MatMul input divided by ``s`` (a Mul) and its weight rows multiplied."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    inits = {i.name: i for i in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[0] in channels:
            w = numpy_helper.to_array(inits[node.input[1]])  # (K, N)
            s = (channels[node.input[0]] ** alpha / np.maximum(np.abs(w).max(1), 1e-5) ** (1 - alpha)).clip(1e-5)
            inits[node.input[1]].CopyFrom(numpy_helper.from_array((w * s[:, None]).astype(np.float32), node.input[1]))
            model.graph.initializer.append(numpy_helper.from_array((1 / s).astype(np.float32), node.name + "/inv_s"))
            nodes.append(helper.make_node("Mul", [node.input[0], node.name + "/inv_s"], [node.name + "/smoothed"]))
            node.input[0] = node.name + "/smoothed"
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(target))
    return target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--poses", type=int, default=32, help="lexicon poses measured")
    ap.add_argument("--calibration", type=int, default=64, help="other lexicon poses for the smoothing scales")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds (median)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from signclip.data.manifests import load_lexicon
    from signclip.export.calibrate import calibrated_int8
    from signclip.export.onnx import export_onnx
    from signclip.export.runtime import OnnxSignCLIP

    from reference_speed import trained_layers_model
    from reference_utils import cos_rows

    logging.getLogger().setLevel(logging.ERROR)  # quantize_dynamic's "consider pre-processing"
    lexicon = load_lexicon()
    rows = lexicon.sample(args.poses + args.calibration, random_state=0)
    model = trained_layers_model()
    arrays = [model.preprocess_pose(p) for p in rows["path"]]
    measured, calibration = arrays[:args.poses], arrays[args.poses:]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        export_onnx(model, tmp)
        runtime = OnnxSignCLIP(tmp, threads=args.threads)
        fp32 = runtime.encode_arrays(measured, 32)
        source = tmp / "pose_encoder.onnx"
        graph = onnx.load(str(source))
        matmuls = [n for n in graph.graph.node if n.op_type == "MatMul"]
        ffo = [n for n in matmuls if "/output/dense/" in n.name and "/attention/" not in n.name]
        kept = [n.name for n in matmuls if "frame_mlp" in n.name or n.name.split("/")[-2:-1] == ["proj"]]

        recorder = Recorder(graph, [n.input[0] for n in ffo])
        runtime.pose_session = recorder
        runtime.encode_arrays(calibration, 32)
        clean = [n.name for n in ffo if not token_outliers(np.concatenate(recorder.tokens[n.input[0]]))]
        every = [n.name for n in ffo]
        variants = {"uncalibrated (`quantize_int8` without poses): feed-forward outputs in fp32": (source, every),
                    "every feed-forward output int8": (source, [])}
        for i, name in enumerate(every):
            variants[f"only layer {i}'s feed-forward output int8"] = (source, [n for n in every if n != name])
        variants["the feed-forward outputs of layers without token outliers int8"] = (
            source, [n for n in every if n not in clean])
        for alpha in (0.5, 0.7, 0.85):
            path = smoothed(source, tmp / f"smooth{alpha}.onnx", recorder.channels, alpha)
            variants[f"every feed-forward output int8, smoothed (a = {alpha})"] = (path, [])
        variants["every feed-forward output but layer 0's int8, smoothed (a = 0.5)"] = (tmp / "smooth0.5.onnx",
                                                                                       every[:1])
        sessions = {"ONNX fp32": ort.InferenceSession(str(source), options(args.threads),
                                                     providers=["CPUExecutionProvider"])}
        cosines = {}
        left = calibrated_int8(source, tmp / "calibrated.onnx", calibration, kept)
        calibrated = (f"**calibrated (`export_onnx(..., int8=True, calibration=poses)`): fp32 kept for layer(s) "
                      f"{', '.join(str(every.index(n)) for n in left) or 'none'}**")
        for i, (name, (path, exclude)) in enumerate([*variants.items(), (calibrated, (None, None))]):
            target = tmp / f"q{i}.onnx" if path else tmp / "calibrated.onnx"
            if path:
                quantize_dynamic(str(path), str(target), weight_type=QuantType.QInt8, per_channel=True,
                                 op_types_to_quantize=["MatMul"], nodes_to_exclude=kept + exclude)
            sessions[name] = ort.InferenceSession(str(target), options(args.threads),
                                                  providers=["CPUExecutionProvider"])
            runtime.pose_session = sessions[name]
            cosines[name] = float(cos_rows(runtime.encode_arrays(measured, 32), fp32).min())
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for _ in range(args.repeats):  # alternating, so other processes' load falls on every variant alike
            for name, session in sessions.items():
                runtime.pose_session = session
                start = time.perf_counter()
                runtime.encode_arrays(measured, 32)
                times[name].append(time.perf_counter() - start)
    speed = {name: float(np.median(times["ONNX fp32"]) / np.median(t)) for name, t in times.items()}
    print(f"Reference pose tower with MiniLM's trained layers ({len(ffo)} layers), {args.poses} lexicon poses, "
          f"smoothing scales from {args.calibration} others; dynamic int8, per-channel weights\n")
    print(f"Batch 32, {args.threads} onnxruntime thread(s), median of {args.repeats} alternating rounds; load average "
          f"{os.getloadavg()[0]:.1f} after\n")
    print("| quantisation of the pose graph | int8 / fp32 speed | min cosine to ONNX fp32 |")
    print("|---|---:|---:|")
    for name, cos in cosines.items():
        print(f"| {name} | {speed[name]:.2f}× | {cos:.4f} |")
    print("\nInputs of the feed-forward output layers on the calibration poses (max |x| over channels, and over "
          "tokens):\n")
    print("| layer | max | median channel max | median token max | tokens with max > 8× median token max |")
    print("|---|---:|---:|---:|---:|")
    for i, node in enumerate(ffo):
        channels, tokens = recorder.channels[node.input[0]], np.concatenate(recorder.tokens[node.input[0]])
        print(f"| {i} | {channels.max():.1f} | {np.median(channels):.2f} | {np.median(tokens):.2f} | "
              f"{(tokens > 8 * np.median(tokens)).mean():.2%} |")


if __name__ == "__main__":
    main()
