"""Torch-free signclip inference: onnxruntime + numpy + pose-format + tokenizers only.

Reads a directory written by ``signclip export onnx MODEL OUT`` and gives the same embeddings as
``signclip.load(MODEL)`` (cosine >= 0.999)::

    from signclip_onnx import OnnxSignCLIP
    m = OnnxSignCLIP("OUT")              # or OnnxSignCLIP("OUT", int8=True)
    m.encode_text(["A"], "en", "ase")    # (N, E) float32, L2-normalised
    m.encode_pose(["sign.pose"])         # paths, .pose bytes or pose_format.Pose

This is a separate top-level package because importing ``signclip`` loads torch. Preprocessing
mirrors :mod:`signclip.pose.preprocess` step by step (the layout comes from the exported JSON);
tests check the two agree on real poses.
"""
from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Union

import numpy as np
import onnxruntime as ort
from pose_format import Pose
from tokenizers import Tokenizer

PoseSource = Union[str, Path, bytes, Pose, np.ndarray]

__all__ = ["OnnxSignCLIP", "InputError", "read_pose", "preprocess"]


class InputError(ValueError):
    """Bad pose or text input; the message starts with the file or field name."""


def read_pose(source: str | Path | bytes | Pose, name: str | None = None) -> Pose:
    """A ``Pose`` from a path, ``.pose`` bytes or a ``Pose``; errors name the file."""
    if isinstance(source, Pose):
        pose, name = source, name or "<Pose>"
    else:
        if isinstance(source, (str, Path)):
            name = name or str(source)
            if not Path(source).is_file():
                raise InputError(f"{name}: no such pose file")
            data = Path(source).read_bytes()
        else:
            data, name = source, name or f"<{len(source)} bytes>"
        if not data:
            raise InputError(f"{name}: empty file (0 bytes), not a .pose file")
        try:
            pose = Pose.read(io.BytesIO(data))
        except Exception as e:
            raise InputError(f"{name}: not a readable .pose file ({type(e).__name__}: {e})") from None
    if pose.body.data.ndim != 4 or pose.body.data.shape[0] == 0:
        raise InputError(f"{name}: pose has zero frames")
    return pose


def _resample(x: np.ndarray, n: int) -> np.ndarray:
    """Linear resampling of (T, ...) to (n, ...); NaN in either neighbour stays NaN."""
    t = x.shape[0]
    if t == n:
        return x
    if t == 1:
        return np.repeat(x, n, axis=0)
    pos = np.linspace(0, t - 1, n)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, t - 1)
    w = (pos - lo).reshape(-1, *([1] * (x.ndim - 1))).astype(x.dtype)
    return x[lo] * (1 - w) + x[hi] * w


def preprocess(pose: Pose, spec: dict, name: str = "<Pose>") -> np.ndarray:
    """``Pose`` -> (T, P, D) float32: layout points, shoulder normalisation, mirroring, fps, max_frames."""
    lay, cfg = spec["layout"], spec["pose"]
    index, offset = {}, 0
    for comp in pose.header.components:
        for i, point in enumerate(comp.points):
            index[(comp.name, point)] = offset + i
        offset += len(comp.points)
    if (lay["body_component"], "LEFT_SHOULDER") not in index:
        raise InputError(f"{name}: not a MediaPipe Holistic pose")
    data = np.ma.getdata(pose.body.data)[:, 0].astype(np.float32)  # (T, P_header, D)
    missing = np.ma.getmaskarray(pose.body.data)[:, 0].any(-1) | (np.asarray(pose.body.confidence)[:, 0] <= 0)
    if data.shape[-1] < 3:
        data = np.concatenate([data, np.zeros_like(data[..., :1])], axis=-1)
    x = np.full((data.shape[0], len(lay["points"]), 3), np.nan, dtype=np.float32)  # (T, P, 3)
    for j, (comp, point) in enumerate(lay["points"]):
        i = index.get((comp, point))
        if i is not None:
            x[:, j] = np.where(missing[:, i, None], np.nan, data[:, i, :3])
    x[:, lay["missing_by_design"]] = np.nan
    x[~np.isfinite(x).all(-1)] = np.nan
    if not np.isfinite(x).any():
        raise InputError(f"{name}: every coordinate is missing or NaN")
    left, right = x[:, lay["shoulders"][0]], x[:, lay["shoulders"][1]]
    valid = np.isfinite(left).all(-1) & np.isfinite(right).all(-1)
    if not valid.any():
        raise InputError(f"{name}: no frame shows both shoulders, cannot normalise the pose")
    center = ((left[valid] + right[valid]) / 2).mean(0)
    width = np.linalg.norm((left[valid] - right[valid])[:, :2], axis=-1).mean()
    if not np.isfinite(width) or width <= 1e-6:
        raise InputError(f"{name}: shoulder width is zero, cannot normalise the pose")
    x = (x - center) / width
    has_left, has_right = (bool(np.isfinite(x[:, idx]).any()) for idx in lay["hands"])
    if cfg.get("require_hands", True) and not (has_left or has_right):
        raise InputError(f"{name}: no hand detected in any frame (require_hands=True)")
    if cfg.get("mirror_left_handed", True) and has_left and not has_right:
        x = x[:, lay["mirror"]].copy()
        x[..., 0] = -x[..., 0]
    fps = float(pose.body.fps) if pose.body.fps and pose.body.fps > 0 else cfg["fps"]
    if abs(fps - cfg["fps"]) > 1e-3:
        x = _resample(x, max(1, round(x.shape[0] * cfg["fps"] / fps)))
    if x.shape[0] > cfg["max_frames"]:
        x = _resample(x, cfg["max_frames"])
    return np.ascontiguousarray(x[..., : cfg["dims"]], dtype=np.float32)


class OnnxSignCLIP:
    """The exported encoders behind ``encode_pose`` / ``encode_text`` (numpy in, numpy out)."""

    def __init__(self, path: str | Path, int8: bool = False, threads: int | None = None):
        path = Path(path)
        if not (path / "signclip_onnx.json").is_file():
            raise FileNotFoundError(f"{path}: not a signclip ONNX export (no signclip_onnx.json)")
        self.spec = json.loads((path / "signclip_onnx.json").read_text())
        suffix = ".int8.onnx" if int8 else ".onnx"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or int(os.environ.get("SIGNCLIP_ONNX_THREADS", "0"))
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        self.pose_session = ort.InferenceSession(str(path / f"pose_encoder{suffix}"), opts, providers=providers)
        self.text_session = ort.InferenceSession(str(path / f"text_encoder{suffix}"), opts, providers=providers)
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer" / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.spec["text_max_tokens"])
        self.tokenizer.enable_padding(pad_id=self.spec["pad_token_id"])
        self.embed_dim = int(self.spec["embed_dim"])

    # ---- poses ----------------------------------------------------------------------------------
    def preprocess_pose(self, source: PoseSource, name: str | None = None) -> np.ndarray:
        """Any pose input -> (T, P, D) float32 (NaN = missing)."""
        if isinstance(source, np.ndarray):
            x = source.astype(np.float32)
            max_frames = self.spec["pose"]["max_frames"]
            return _resample(x, max_frames) if x.shape[0] > max_frames else x
        pose = read_pose(source, name)
        return preprocess(pose, self.spec, name or (str(source) if isinstance(source, (str, Path)) else "<pose>"))

    def encode_pose(self, poses: PoseSource | Sequence[PoseSource], batch_size: int = 32) -> np.ndarray:
        """Poses -> (N, E) (or (E,) for one pose); sorted by length and padded like the torch model."""
        single = not isinstance(poses, (list, tuple))
        arrays = [self.preprocess_pose(p) for p in ([poses] if single else poses)]
        out = self.encode_arrays(arrays, batch_size)
        return out[0] if single else out

    def encode_arrays(self, arrays: list[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """Preprocessed (T_i, P, D) arrays -> (N, E)."""
        order = np.argsort([-a.shape[0] for a in arrays], kind="stable")
        out = np.zeros((len(arrays), self.embed_dim), dtype=np.float32)
        for s in range(0, len(arrays), batch_size):
            idx = order[s: s + batch_size]
            batch = [arrays[i] for i in idx]
            t_max = max(a.shape[0] for a in batch)
            x = np.zeros((len(batch), t_max, batch[0].shape[1] * batch[0].shape[2]), dtype=np.float32)  # (B, T, F)
            mask = np.zeros((len(batch), t_max), dtype=bool)  # (B, T)
            for i, a in enumerate(batch):
                x[i, : a.shape[0]] = a.reshape(a.shape[0], -1)
                mask[i, : a.shape[0]] = True
            out[idx] = self.pose_session.run(None, {"keypoints": x, "mask": mask})[0]
        return out

    # ---- texts ----------------------------------------------------------------------------------
    def prompts(self, texts: Sequence[str], spoken_language: str | None = None,
                signed_language: str | None = None) -> list[str]:
        """``<en> <ase> text`` prompts, as :func:`signclip.text.prompts.make_prompts`."""
        out = []
        for text in texts:
            if not isinstance(text, str):
                raise InputError(f"text: expected a string, got {type(text).__name__}")
            if spoken_language is None and signed_language is None:
                if not text.strip():
                    raise InputError("text: empty text")
                out.append(text.strip())
                continue
            for code, field, known in ((spoken_language, "spoken_language", self.spec["spoken_languages"]),
                                       (signed_language, "signed_language", self.spec["signed_languages"])):
                if code is not None and known and code not in known:
                    raise InputError(f"{field}: unknown language code {code!r}; this model knows {sorted(known)}")
            prompt = self.spec["prompt_template"].format(spoken=spoken_language or "", signed=signed_language or "",
                                                         text=text.strip())
            if not prompt.strip():
                raise InputError("text: empty text")
            out.append(" ".join(prompt.split()))
        return out

    def encode_text(self, texts: str | Sequence[str], spoken_language: str | None = None,
                    signed_language: str | None = None, batch_size: int = 64) -> np.ndarray:
        """Texts -> (N, E) (or (E,) for one text)."""
        single = isinstance(texts, str)
        prompts = self.prompts([texts] if single else list(texts), spoken_language, signed_language)
        if not prompts:
            raise InputError("texts: empty list")
        order = np.argsort([-len(p) for p in prompts], kind="stable")
        out = np.zeros((len(prompts), self.embed_dim), dtype=np.float32)
        for s in range(0, len(prompts), batch_size):
            idx = order[s: s + batch_size]
            enc = self.tokenizer.encode_batch([prompts[i] for i in idx])
            ids = np.array([e.ids for e in enc], dtype=np.int64)  # (B, L)
            att = np.array([e.attention_mask for e in enc], dtype=np.int64)  # (B, L)
            out[idx] = self.text_session.run(None, {"input_ids": ids, "attention_mask": att})[0]
        return out[0] if single else out
