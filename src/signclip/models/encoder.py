"""What every signclip model offers, torch or not: poses and texts in, embeddings out.

:class:`PoseTextEncoder` holds the user API of :class:`~signclip.models.signclip.SignCLIP` and of the ONNX
runtime's :class:`~signclip.export.runtime.OnnxSignCLIP`: preprocessing, prompts, batching by length,
single inputs, normalisation and skipping unusable poses. A subclass supplies two batch functions
(:meth:`PoseTextEncoder.pose_batch`, :meth:`PoseTextEncoder.text_batch`). Torch-free.
"""
from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import numpy as np

from signclip.batching import encode_by_length, pad_arrays
from signclip.config import ModelConfig
from signclip.errors import PoseInputError, TextInputError
from signclip.pose.io import PoseSource
from signclip.pose.preprocess import prepare_pose
from signclip.text.prompts import make_prompts

PoseInput = PoseSource | np.ndarray  # path, .pose bytes, Pose, or a preprocessed (T, P, D) array


@dataclass
class PoseEmbeddings:
    """:meth:`PoseTextEncoder.encode_usable_poses`: the embeddings of the usable poses, and why the others
    were left out."""

    embeddings: np.ndarray  # (N - len(skipped), E), the usable poses in input order
    kept: list[int] = field(default_factory=list)  # the input index of each embedding
    skipped: dict[int, str] = field(default_factory=dict)  # input index -> message naming the pose


class PoseTextEncoder:
    """Embeds poses and texts into one L2-normalised space; ``cfg`` holds preprocessing and prompts."""

    cfg: ModelConfig

    # ---- what a subclass supplies -----------------------------------------------------------------
    def pose_batch(self, x: np.ndarray, mask: np.ndarray, normalize: bool) -> np.ndarray:
        """(B, T, F) float32 keypoints (NaN = missing) and (B, T) bool mask -> (B, E) float32."""
        raise NotImplementedError

    def text_batch(self, prompts: list[str], normalize: bool) -> np.ndarray:
        """B prompts -> (B, E) float32."""
        raise NotImplementedError

    def inference(self) -> AbstractContextManager:
        """The context the batch functions run in (e.g. no gradients, eval mode)."""
        return nullcontext()

    # ---- poses ----------------------------------------------------------------------------------
    def preprocess_pose(self, pose: PoseInput, name: str | None = None) -> np.ndarray:
        """Any pose input -> (T, P, D) float32 array (NaN = missing) in this model's layout (max_frames enforced)."""
        return prepare_pose(pose, self.cfg.pose, name)

    def encode_pose(self, poses: PoseInput | Sequence[PoseInput], batch_size: int = 32, normalize: bool = True,
                    progress: bool | None = None) -> np.ndarray:
        """Embed poses (paths, ``.pose`` bytes, ``Pose`` objects or preprocessed arrays) -> (N, E) float32, or
        (E,) for one pose. Sorted by length and batched; padding changes no embedding. An unusable pose
        raises :class:`PoseInputError` naming it (:meth:`encode_usable_poses` leaves it out instead)."""
        single = not isinstance(poses, (list, tuple))
        items = [poses] if single else list(poses)
        out = self.encode_arrays([self.preprocess_pose(p) for p in items], batch_size, normalize, progress)
        return out[0] if single else out

    def encode_usable_poses(self, poses: Sequence[PoseInput], batch_size: int = 32, normalize: bool = True,
                            progress: bool | None = None) -> PoseEmbeddings:
        """Embed the usable poses of a list and say why each other one was left out."""
        arrays, result = [], PoseEmbeddings(np.zeros((0, self.cfg.embed_dim), dtype=np.float32))
        for i, pose in enumerate(poses):
            try:
                arrays.append(self.preprocess_pose(pose))
                result.kept.append(i)
            except PoseInputError as e:
                result.skipped[i] = str(e)
        if arrays:
            result.embeddings = self.encode_arrays(arrays, batch_size, normalize, progress)
        return result

    def encode_arrays(self, arrays: Sequence[np.ndarray], batch_size: int = 32, normalize: bool = True,
                      progress: bool | None = None) -> np.ndarray:
        """Embed preprocessed (T_i, P, D) arrays (:meth:`preprocess_pose`) -> (N, E) float32, batched by length."""
        def encode(idx: np.ndarray) -> np.ndarray:
            return self.pose_batch(*pad_arrays([arrays[i] for i in idx]), normalize)  # (B, T, F), (B, T)

        with self.inference():
            return encode_by_length([a.shape[0] for a in arrays], batch_size, encode, self.cfg.embed_dim, progress,
                                    "embedding poses")

    # ---- texts ----------------------------------------------------------------------------------
    def prompts(self, texts: Sequence[str], spoken_language=None, signed_language=None) -> list[str]:
        """The prompts this model embeds for these texts and languages (``<en> <ase> house``)."""
        return make_prompts(texts, spoken_language, signed_language, template=self.cfg.prompt_template,
                            known_spoken=self.cfg.spoken_languages, known_signed=self.cfg.signed_languages)

    def encode_text(self, texts: str | Sequence[str], spoken_language: str | Sequence[str | None] | None = None,
                    signed_language: str | Sequence[str | None] | None = None, batch_size: int = 64,
                    normalize: bool = True, progress: bool | None = None) -> np.ndarray:
        """Embed texts -> (N, E) float32, or (E,) for one text. With languages, each text becomes a prompt
        ``<en> <ase> text``; a language may be one code for all texts or one per text. Never runs the pose
        tower."""
        single = isinstance(texts, str)
        items = [texts] if single else list(texts)
        if not items:
            raise TextInputError("texts: empty list")
        prompts = self.prompts(items, spoken_language, signed_language)

        def encode(idx: np.ndarray) -> np.ndarray:
            return self.text_batch([prompts[i] for i in idx], normalize)

        with self.inference():
            out = encode_by_length([len(p) for p in prompts], batch_size, encode, self.cfg.embed_dim, progress,
                                   "embedding texts")
        return out[0] if single else out


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (as ``torch.nn.functional.normalize``: a zero row stays zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
