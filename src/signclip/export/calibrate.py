"""Calibrated int8 for BERT pose towers: which feed-forward output layers dynamic int8 can take.

Trained BERT layers feed outliers into their feed-forward output layers (the 4×-wide GELU activations), so
one int8 scale per tensor loses the small values there: :func:`signclip.export.onnx.quantize_int8` keeps those
layers in fp32, a third of the tower's matrix products, which holds int8 to ~1.4-1.7× fp32. Given
calibration poses, :func:`calibrated_int8`

1. smooths each of these layers SmoothQuant-style: input channel ``j`` divided by
   ``s_j = sqrt(max|x_j| / max|w_j|)`` (a ``Mul`` before the ``MatMul``) and weight row ``j`` multiplied by it,
   the same product in fp32;
2. quantises them all, then puts back into fp32 the layers whose inputs have the strongest token outliers (a
   few tokens far above the rest, which no per-channel smoothing removes), one at a time, until the minimum
   cosine to fp32 over the calibration poses reaches :data:`FLOOR`.

Measured on a reference tower with trained (MiniLM) layers in ``benchmarks/int8_outliers.py``.
"""
from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from signclip.batching import pad_arrays

ALPHA = 0.5  # SmoothQuant's migration strength
FLOOR = 0.99  # min cosine to fp32 over the calibration poses: the cosine promised for int8


def is_feed_forward_output(name: str) -> bool:
    """A BERT feed-forward output MatMul (``.../layer.N/output/dense/MatMul``, not the attention output's)."""
    return "/output/dense/" in name and "/attention/" not in name


def batches(arrays: Sequence[np.ndarray], size: int = 32) -> list[dict[str, np.ndarray]]:
    """Pose graph feeds of ``arrays`` in batches of similar length."""
    order = np.argsort([a.shape[0] for a in arrays], kind="stable")
    feeds = []
    for i in range(0, len(order), size):
        x, mask = pad_arrays([arrays[j] for j in order[i: i + size]])
        feeds.append({"keypoints": x, "mask": mask})
    return feeds


def session(model_or_path):
    import onnxruntime as ort

    source = model_or_path.SerializeToString() if hasattr(model_or_path, "SerializeToString") else str(model_or_path)
    return ort.InferenceSession(source, providers=["CPUExecutionProvider"])


def embed(sess, feeds: list[dict]) -> np.ndarray:
    """(N, E) unit embeddings of the pose graph over ``feeds``."""
    z = np.concatenate([sess.run(["embedding"], f)[0] for f in feeds])
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def record(model, names: list[str], feeds: list[dict]) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Per MatMul input in ``names``: max |x| per channel, and how far the largest token's max |x| stands
    above the median token's (token outliers)."""
    import onnx

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in names:
        probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    sess = session(probe)
    channels, tokens = {n: 0.0 for n in names}, {n: [] for n in names}
    for f in feeds:
        for name, x in zip(names, sess.run(names, f)):
            flat = np.abs(x).reshape(-1, x.shape[-1])  # (tokens, channels)
            channels[name] = np.maximum(channels[name], flat.max(0))
            tokens[name].append(flat.max(1))
    ratio = {n: float(np.max(np.concatenate(t)) / max(np.median(np.concatenate(t)), 1e-12))
             for n, t in tokens.items()}
    return channels, ratio


def smooth(model, channels: dict[str, np.ndarray], alpha: float = ALPHA) -> None:
    """Divide each recorded MatMul input by ``s`` (a new ``Mul``) and multiply its weight rows by ``s``."""
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[0] in channels and node.input[1] in inits:
            w = numpy_helper.to_array(inits[node.input[1]])  # (K, N)
            s = (channels[node.input[0]] ** alpha / np.maximum(np.abs(w).max(1), 1e-5) ** (1 - alpha)).clip(1e-5)
            inits[node.input[1]].CopyFrom(numpy_helper.from_array((w * s[:, None]).astype(np.float32), node.input[1]))
            model.graph.initializer.append(numpy_helper.from_array((1 / s).astype(np.float32), node.name + "/inv_s"))
            nodes.append(helper.make_node("Mul", [node.input[0], node.name + "/inv_s"], [node.name + "/smoothed"],
                                          name=node.name + "/smooth"))
            node.input[0] = node.name + "/smoothed"
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def calibrated_int8(source: Path, target: Path, arrays: Sequence[np.ndarray], exclude: list[str],
                    floor: float = FLOOR) -> list[str]:
    """Quantise the pose graph ``source`` into ``target`` (MatMuls but ``exclude``), its feed-forward outputs
    smoothed and quantised where the calibration poses ``arrays`` allow (module docstring); returns the
    feed-forward outputs left in fp32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(source))
    ffo = [n for n in model.graph.node if n.op_type == "MatMul" and is_feed_forward_output(n.name)]
    feeds = batches(arrays)
    fp32 = embed(session(model), feeds)
    channels, ratio = record(model, [n.input[0] for n in ffo], feeds)
    worst_first = [n.name for n in sorted(ffo, key=lambda n: -ratio[n.input[0]])]
    smooth(model, channels)
    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(logging.ERROR)  # quantize_dynamic warns "consider pre-processing" on the root logger
    try:
        with tempfile.TemporaryDirectory() as tmp:
            smoothed = Path(tmp) / "smoothed.onnx"
            onnx.save(model, str(smoothed))
            for kept in range(len(worst_first) + 1):
                quantize_dynamic(str(smoothed), str(target), weight_type=QuantType.QInt8, per_channel=True,
                                 op_types_to_quantize=["MatMul"], nodes_to_exclude=exclude + worst_first[:kept])
                if (embed(session(target), feeds) * fp32).sum(1).min() >= floor:
                    return worst_first[:kept]
    finally:
        root.setLevel(level)
    return worst_first
