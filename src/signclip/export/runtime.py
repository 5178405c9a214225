"""Torch-free signclip inference: onnxruntime + numpy + pose-format + tokenizers only.

Reads a directory written by ``signclip export onnx MODEL OUT`` and gives the same embeddings as
``signclip.load(MODEL)`` (cosine >= 0.999)::

    from signclip.export.runtime import OnnxSignCLIP
    m = OnnxSignCLIP("OUT")              # or OnnxSignCLIP("OUT", int8=True)
    m.encode_text(["A"], "en", "ase")    # (N, E) float32, L2-normalised
    m.encode_pose(["sign.pose"])         # paths, .pose bytes or pose_format.Pose

Preprocessing, prompts, padding and the whole user API are the package's own (torch-free
:class:`~signclip.models.encoder.PoseTextEncoder`, shared with ``SignCLIP``), so both paths agree.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from signclip.config import ModelConfig
from signclip.models.encoder import PoseTextEncoder, l2_normalize
from signclip.pose.anonymize import resolve_appearance

__all__ = ["OnnxSignCLIP"]


class OnnxSignCLIP(PoseTextEncoder):
    """The exported encoders behind the user API of ``SignCLIP`` (:class:`PoseTextEncoder`: ``encode_pose``,
    ``encode_usable_poses``, ``encode_arrays``, ``encode_text``, ``prompts``, ``preprocess_pose``); numpy in,
    numpy out."""

    def __init__(self, path: str | Path, int8: bool = False, threads: int | None = None):
        path = Path(path)
        if not (path / "signclip_onnx.json").is_file():
            raise FileNotFoundError(f"{path}: not a signclip ONNX export (no signclip_onnx.json)")
        self.path = path
        self.spec = json.loads((path / "signclip_onnx.json").read_text())
        self.cfg = ModelConfig.from_dict(self.spec["model"])
        self.cfg.pose = resolve_appearance(self.cfg.pose, path)
        self.normalized_output = self.spec.get("normalized", True)  # exports before format 2 normalise inside
        suffix = ".int8.onnx" if int8 else ".onnx"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or int(os.environ.get("SIGNCLIP_ONNX_THREADS", "0"))
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        self.pose_session = ort.InferenceSession(str(path / f"pose_encoder{suffix}"), opts, providers=providers)
        self.text_session = ort.InferenceSession(str(path / f"text_encoder{suffix}"), opts, providers=providers)
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer" / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.cfg.text_max_tokens)
        self.tokenizer.enable_padding(pad_id=self.spec["pad_token_id"])
        self.embed_dim = self.cfg.embed_dim

    def pose_batch(self, x: np.ndarray, mask: np.ndarray, normalize: bool) -> np.ndarray:
        """(B, T, F) keypoints (NaN = missing) and (B, T) bool mask -> (B, E)."""
        return self._output(self.pose_session.run(None, {"keypoints": x, "mask": mask})[0], normalize)

    def text_batch(self, prompts: list[str], normalize: bool) -> np.ndarray:
        """B prompts -> (B, E)."""
        enc = self.tokenizer.encode_batch(prompts)
        ids = np.array([e.ids for e in enc], dtype=np.int64)  # (B, L)
        att = np.array([e.attention_mask for e in enc], dtype=np.int64)  # (B, L)
        return self._output(self.text_session.run(None, {"input_ids": ids, "attention_mask": att})[0], normalize)

    def _output(self, z: np.ndarray, normalize: bool) -> np.ndarray:
        if self.normalized_output:
            if not normalize:
                raise ValueError(f"{self.path}: this export gives normalised embeddings only; export the model "
                                 "again for normalize=False")
            return z
        return l2_normalize(z) if normalize else z
