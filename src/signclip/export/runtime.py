"""Torch-free signclip inference: onnxruntime + numpy + pose-format + tokenizers only.

Reads a directory written by ``signclip export onnx MODEL OUT`` and gives the same embeddings as
``signclip.load(MODEL)`` (cosine >= 0.999)::

    from signclip.export.runtime import OnnxSignCLIP
    m = OnnxSignCLIP("OUT")              # or OnnxSignCLIP("OUT", int8=True)
    m.encode_text(["A"], "en", "ase")    # (N, E) float32, L2-normalised
    m.encode_pose(["sign.pose"])         # paths, .pose bytes or pose_format.Pose

Preprocessing, prompts and padding are the package's own (torch-free) functions, so both paths agree.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from signclip.batching import encode_by_length, pad_arrays
from signclip.config import ModelConfig
from signclip.errors import TextInputError
from signclip.pose.anonymize import resolve_appearance
from signclip.pose.io import PoseSource
from signclip.pose.preprocess import prepare_pose
from signclip.text.prompts import make_prompts

__all__ = ["OnnxSignCLIP"]


class OnnxSignCLIP:
    """The exported encoders behind ``encode_pose`` / ``encode_text`` (numpy in, numpy out)."""

    def __init__(self, path: str | Path, int8: bool = False, threads: int | None = None):
        path = Path(path)
        if not (path / "signclip_onnx.json").is_file():
            raise FileNotFoundError(f"{path}: not a signclip ONNX export (no signclip_onnx.json)")
        self.spec = json.loads((path / "signclip_onnx.json").read_text())
        self.cfg = ModelConfig.from_dict(self.spec["model"])
        self.cfg.pose = resolve_appearance(self.cfg.pose, path)
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

    # ---- poses ----------------------------------------------------------------------------------
    def preprocess_pose(self, source: PoseSource | np.ndarray, name: str | None = None) -> np.ndarray:
        """Any pose input -> (T, P, D) float32 (NaN = missing), as ``SignCLIP.preprocess_pose``."""
        return prepare_pose(source, self.cfg.pose, name)

    def encode_pose(self, poses: PoseSource | Sequence[PoseSource], batch_size: int = 32) -> np.ndarray:
        """Poses -> (N, E) (or (E,) for one pose); sorted by length and padded like the torch model."""
        single = not isinstance(poses, (list, tuple))
        arrays = [self.preprocess_pose(p) for p in ([poses] if single else poses)]
        out = self.encode_arrays(arrays, batch_size)
        return out[0] if single else out

    def encode_arrays(self, arrays: list[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """Preprocessed (T_i, P, D) arrays -> (N, E), batched by length."""
        def encode(idx: np.ndarray) -> np.ndarray:
            x, mask = pad_arrays([arrays[i] for i in idx])  # (B, T, F), (B, T)
            return self.pose_session.run(None, {"keypoints": x, "mask": mask})[0]

        return encode_by_length([a.shape[0] for a in arrays], batch_size, encode, self.embed_dim, progress=False)

    # ---- texts ----------------------------------------------------------------------------------
    def prompts(self, texts: Sequence[str], spoken_language=None, signed_language=None) -> list[str]:
        """``<en> <ase> text`` prompts, as :meth:`signclip.SignCLIP.prompts`."""
        return make_prompts(texts, spoken_language, signed_language, template=self.cfg.prompt_template,
                            known_spoken=self.cfg.spoken_languages, known_signed=self.cfg.signed_languages)

    def encode_text(self, texts: str | Sequence[str], spoken_language: str | None = None,
                    signed_language: str | None = None, batch_size: int = 64) -> np.ndarray:
        """Texts -> (N, E) (or (E,) for one text)."""
        single = isinstance(texts, str)
        prompts = self.prompts([texts] if single else list(texts), spoken_language, signed_language)
        if not prompts:
            raise TextInputError("texts: empty list")

        def encode(idx: np.ndarray) -> np.ndarray:
            enc = self.tokenizer.encode_batch([prompts[i] for i in idx])
            ids = np.array([e.ids for e in enc], dtype=np.int64)  # (B, L)
            att = np.array([e.attention_mask for e in enc], dtype=np.int64)  # (B, L)
            return self.text_session.run(None, {"input_ids": ids, "attention_mask": att})[0]

        out = encode_by_length([len(p) for p in prompts], batch_size, encode, self.embed_dim, progress=False)
        return out[0] if single else out
