"""Export a SignCLIP model to ONNX for torch-free inference (see :mod:`signclip.export.runtime`).

The output directory::

    pose_encoder.onnx        (B, T, F) keypoints (NaN = missing) + (B, T) bool mask -> (B, E) unnormalised;
                             the training mean/std standardisation is inside the graph
    text_encoder.onnx        (B, L) input_ids + attention_mask (int64) -> (B, E) unnormalised (the runtime
                             normalises, unless ``normalize=False``)
    *.int8.onnx              dynamically quantised (int8 weights) copies, with ``int8=True``
    tokenizer/tokenizer.json the text tokenizer (Hugging Face ``tokenizers`` format)
    signclip_onnx.json       the model config (preprocessing, prompt template, languages) and pad token id
    pose_statistics.npz      the feature mean/std also stored in the pose graph (for inspection)
"""
from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from signclip.files import replacing_dir
from signclip.pose.anonymize import bundle_appearance
from signclip.pose.layout import get_layout

OPSET = 17


class _PoseGraph(nn.Module):
    """The pose tower written with plain tensor ops, using the model's own weights.

    ``nn.MultiheadAttention`` traces with its batch and length frozen into reshapes, so the
    pre-norm encoder layers are spelled out here with dynamic shapes (same maths, eval mode). The
    reference tower's Hugging Face BERT traces as it is, like the text tower."""

    def __init__(self, model):
        super().__init__()
        self.pose = model.pose

    def attention(self, layer: nn.TransformerEncoderLayer, y: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        attn = layer.self_attn
        heads, width = attn.num_heads, attn.embed_dim
        hd = width // heads
        qkv = nn.functional.linear(y, attn.in_proj_weight, attn.in_proj_bias)  # (B, T, 3W)
        q, k, v = (t.reshape(t.shape[0], -1, heads, hd).transpose(1, 2) for t in qkv.chunk(3, dim=-1))  # (B, H, T, hd)
        scores = torch.matmul(q, k.transpose(-1, -2)) / float(hd) ** 0.5  # (B, H, T, T)
        scores = scores.masked_fill(padding[:, None, None, :], float("-inf"))
        out = torch.matmul(scores.softmax(-1), v).transpose(1, 2)  # (B, T, H, hd)
        return attn.out_proj(out.reshape(out.shape[0], -1, width))  # (B, T, W)

    def run_transformer(self, transformer: nn.TransformerEncoder, h: torch.Tensor, padding: torch.Tensor
                        ) -> torch.Tensor:
        """:meth:`PoseEncoder.run_transformer` spelled out: (B, T, W), (B, T) padding -> (B, T, W)."""
        for layer in transformer.layers:
            if not layer.norm_first:
                raise NotImplementedError("ONNX export supports pre-norm (norm_first=True) pose encoders")
            h = h + self.attention(layer, layer.norm1(h), padding)
            h = h + layer.linear2(layer.activation(layer.linear1(layer.norm2(h))))
        return transformer.norm(h)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # (B, T, F), (B, T) -> (B, E)
        self.pose.run_transformer = self.run_transformer  # any pose encoder, with exportable layers
        try:
            return self.pose(x, mask)  # (B, E)
        finally:
            del self.pose.run_transformer


class _TextGraph(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B, E)
        return self.model.forward_text(input_ids, attention_mask, normalize=False)


def quantize_int8(source: Path, target: Path, calibration: Sequence[np.ndarray] | None = None) -> Path:
    """Dynamic int8 quantisation of the MatMul weights (per output channel).

    Kept in fp32: the final projections, the pose tower's input layers (``frame_mlp``, or the part-wise
    ``manual_embed`` / ``non_manual_embed``: standardised keypoints have outliers; minimum cosine to fp32
    on 128 lexicon poses 0.986 -> 0.99999) and BERT's feed-forward output layers (activation outliers;
    cosine 0.986 -> 0.992 on MiniLM prompts), unless ``calibration`` poses (preprocessed arrays, for a pose
    graph) show which of those int8 can take after smoothing (:mod:`signclip.export.calibrate`)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from signclip.export.calibrate import calibrated_int8, is_feed_forward_output

    nodes = [n.name for n in onnx.load(str(source), load_external_data=False).graph.node if n.op_type == "MatMul"]
    exclude = [n for n in nodes if n.split("/")[-2:-1] == ["proj"] or "frame_mlp" in n or "_embed/" in n]
    feed_forward = [n for n in nodes if is_feed_forward_output(n)]
    if calibration is not None and len(calibration) and feed_forward:
        calibrated_int8(source, target, calibration, exclude)
        return target
    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(logging.ERROR)  # quantize_dynamic warns "consider pre-processing" on the root logger
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"], nodes_to_exclude=exclude + feed_forward)
    finally:
        root.setLevel(level)
    return target


def export_onnx(model, out: str | Path, int8: bool = False, opset: int = OPSET,
                calibration: Sequence[np.ndarray] | None = None) -> dict[str, Path]:
    """Write the ONNX encoders, tokenizer and preprocessing description into the folder ``out`` (written
    aside and swapped in: an interrupted export leaves the previous one whole); returns the written files.
    ``calibration``: preprocessed poses that choose what int8 quantises in a BERT pose tower
    (:func:`quantize_int8`)."""
    out = Path(out)
    with replacing_dir(out) as tmp:
        files = write_export(model, tmp, int8, opset, calibration)
    return {name: out / path.name for name, path in files.items()}


def write_export(model, out: Path, int8: bool = False, opset: int = OPSET,
                 calibration: Sequence[np.ndarray] | None = None) -> dict[str, Path]:
    """The files of :func:`export_onnx`, written into the existing folder ``out``."""
    model = model.eval().cpu()
    cfg = model.cfg
    layout = get_layout(cfg.pose.layout)
    feat = len(layout) * cfg.pose.dims
    x = torch.randn(2, 7, feat)
    x[0, 2, :5] = float("nan")
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 5:] = False
    tok = model.tokenize(["<en> <ase> house", "A"])
    files = {"pose": out / "pose_encoder.onnx", "text": out / "text_encoder.onnx"}
    # grad mode on: keeps nn.TransformerEncoderLayer off its fused fast path, which ONNX cannot export
    with warnings.catch_warnings(), torch.enable_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(_PoseGraph(model), (x, mask), str(files["pose"]), input_names=["keypoints", "mask"],
                          output_names=["embedding"], opset_version=opset, dynamo=False,
                          dynamic_axes={"keypoints": {0: "batch", 1: "frames"}, "mask": {0: "batch", 1: "frames"},
                                        "embedding": {0: "batch"}})
        torch.onnx.export(_TextGraph(model), (tok["input_ids"], tok["attention_mask"]), str(files["text"]),
                          input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                          opset_version=opset, dynamo=False,
                          dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                        "attention_mask": {0: "batch", 1: "tokens"}, "embedding": {0: "batch"}})
    if int8:
        for name in ("pose", "text"):
            files[f"{name}_int8"] = quantize_int8(files[name], out / f"{name}_encoder.int8.onnx",
                                                  calibration if name == "pose" else None)
    model.tokenizer.save_pretrained(str(out / "tokenizer"))
    if not (out / "tokenizer" / "tokenizer.json").is_file():
        raise RuntimeError("the tokenizer has no fast (tokenizers) version; cannot export it for onnxruntime")
    np.savez(out / "pose_statistics.npz", mean=model.pose.feature_mean.cpu().numpy(),
             std=model.pose.feature_std.cpu().numpy())
    cfg = replace(cfg, pose=bundle_appearance(cfg.pose, out))  # a given appearance travels with the export
    spec = {"format": "signclip-onnx/2", "model": cfg.to_dict(), "embed_dim": cfg.embed_dim,
            "pad_token_id": int(model.tokenizer.pad_token_id or 0), "int8": bool(int8), "normalized": False}
    (out / "signclip_onnx.json").write_text(json.dumps(spec, indent=2, default=str))
    files["config"] = out / "signclip_onnx.json"
    return files
