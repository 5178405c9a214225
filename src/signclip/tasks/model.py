"""TaskModel: a signclip pose tower with a task head (ISLR, CSLR or SLT), saved and loaded like SignCLIP.

A saved task model is a directory::

    task.json            {"task": TaskConfig, "encoder": the pose tower's ModelConfig, "vocab": [...]}
    model.safetensors    the tower's and the head's weights (incl. the pose feature mean/std)

:func:`load` (``signclip.load``) returns a TaskModel for such a directory and a SignCLIP otherwise.
``recognize(poses)`` gives, per pose: ISLR the top-k classes with their probabilities; CSLR the gloss
sequence; SLT the sentence.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from signclip.batching import pad_poses
from signclip.config import ModelConfig
from signclip.errors import DamagedFileError
from signclip.files import recover_dir, replacing_dir
from signclip.models.encoder import PoseInput
from signclip.models.hub import resolve_model_dir
from signclip.models.signclip import POSE_ENCODERS, WEIGHTS, SignCLIP, evaluating
from signclip.models.statistics import FeatureStatistics
from signclip.pose.layout import get_layout
from signclip.pose.preprocess import prepare_pose
from signclip.tasks.config import TaskConfig
from signclip.tasks.heads import ClassifierHead, CTCHead, TranslationHead

TASK_FILE = "task.json"


class TaskModel(nn.Module):
    """A pose tower (``pose``, any of signclip's) and a task head (``head``) with the task's vocabulary."""

    def __init__(self, cfg: TaskConfig, encoder_cfg: ModelConfig, vocab: Sequence[str]):
        super().__init__()
        if len(vocab) < 2:
            raise ValueError(f"{cfg.task}: the training data has {len(vocab)} distinct {cfg.target}; need at least 2")
        self.cfg, self.encoder_cfg, self.vocab = cfg, encoder_cfg, list(vocab)
        tower = POSE_ENCODERS[encoder_cfg.pose_encoder]
        self.pose = tower.from_config(encoder_cfg, get_layout(encoder_cfg.pose.layout))
        if cfg.task == "islr":
            self.head = ClassifierHead(encoder_cfg.embed_dim, len(vocab), cfg)
        elif cfg.task == "cslr":
            self.head = CTCHead(self.pose.width, len(vocab), cfg)
        else:
            self.head = TranslationHead(self.pose.width, self.vocab, cfg)
        self.index = {v: i for i, v in enumerate(self.vocab)}

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def create(cls, cfg: TaskConfig, vocab: Sequence[str], encoder: "SignCLIP | TaskModel | ModelConfig"
               ) -> "TaskModel":
        """A new task model: the pose tower of ``encoder`` (a SignCLIP or another task model, weights and
        feature statistics copied) or a fresh one of a ModelConfig; a new head."""
        encoder_cfg = encoder if isinstance(encoder, ModelConfig) else (
            encoder.cfg if isinstance(encoder, SignCLIP) else encoder.encoder_cfg)
        model = cls(cfg, ModelConfig.from_dict(encoder_cfg.to_dict()), vocab)
        if not isinstance(encoder, ModelConfig):
            model.pose.load_state_dict(encoder.pose.state_dict())
        return model

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "TaskModel":
        """A task model saved with :meth:`save` (a directory)."""
        path = recover_dir(Path(path))
        if not (path / TASK_FILE).is_file():
            raise FileNotFoundError(f"{path}: not a saved signclip task model (no {TASK_FILE})")
        try:
            meta = json.loads((path / TASK_FILE).read_text())
            model = cls(TaskConfig.from_dict(meta["task"]), ModelConfig.from_dict(meta["encoder"]), meta["vocab"])
            model.load_state_dict(load_file(str(path / WEIGHTS)))
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as e:
            raise DamagedFileError(f"{path}: cannot read the saved task model ({type(e).__name__}: "
                                   f"{str(e).splitlines()[0] if str(e) else ''})") from None
        return model.to(device).eval()

    def save(self, path: str | Path, state: dict[str, torch.Tensor] | None = None) -> Path:
        """Write ``task.json`` and the weights (safetensors) crash-safely (a folder written aside, then swapped
        in). ``state``: weights to write instead of the current ones (e.g. the best seen in training)."""
        path = Path(path)
        with replacing_dir(path) as tmp:
            self.write(tmp, state)
        return path

    def write(self, folder: Path, state: dict[str, torch.Tensor] | None = None) -> None:
        """The files of :meth:`save` into an existing folder (not crash-safe by itself)."""
        meta = {"task": self.cfg.to_dict(), "encoder": self.encoder_cfg.to_dict(), "vocab": self.vocab}
        (folder / TASK_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False))
        state = {k: v.detach().cpu().contiguous() for k, v in (state or self.state_dict()).items()}
        save_file(state, str(folder / WEIGHTS))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def fit_statistics(self, arrays: Sequence[np.ndarray]) -> "TaskModel":
        """Standardise the pose features with the mean/std of preprocessed training ``arrays`` (a tower that
        reads unstandardised features keeps its own)."""
        if self.pose.learns_statistics and len(arrays):
            mean, std = FeatureStatistics(self.pose.featurize).add_poses(arrays).result()
            self.pose.feature_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
            self.pose.feature_std.copy_(torch.as_tensor(std, dtype=torch.float32))
        return self

    # ---- training ---------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, mask: torch.Tensor, targets: Sequence[str]) -> torch.Tensor:
        """The task loss of a batch: (B, T, F) keypoints, (B, T) real frames, each pose's target (its class,
        gloss sequence or sentence) as text."""
        device = x.device
        if self.cfg.task == "islr":
            labels = torch.tensor([self.index[t] for t in targets], device=device)
            return self.head.loss(self.pose, x, mask, labels)
        if self.cfg.task == "cslr":
            seqs = [[self.index[g] for g in t.split()] for t in targets]
            lengths = torch.tensor([len(s) for s in seqs], device=device)
            flat = torch.zeros((len(seqs), int(lengths.max())), dtype=torch.long)
            for i, s in enumerate(seqs):
                flat[i, : len(s)] = torch.tensor(s)
            return self.head.loss(self.pose, x, mask, flat.to(device), lengths)
        return self.head.loss(self.pose, x, mask, self.head.encode_text(list(targets), device))

    def known(self, target: str) -> bool:
        """Whether a target can be learned: a known class (ISLR) or glosses (CSLR); any sentence (SLT)."""
        if self.cfg.task == "islr":
            return target in self.index
        if self.cfg.task == "cslr":
            return bool(target.split()) and all(g in self.index for g in target.split())
        return True

    # ---- inference ----------------------------------------------------------------------------------
    @torch.no_grad()
    def predict_batch(self, x: torch.Tensor, mask: torch.Tensor) -> list:
        """A padded batch -> per pose: ISLR (C,) class probabilities; CSLR the gloss list; SLT the sentence."""
        if self.cfg.task == "islr":
            return list(self.head.logits(self.pose, x, mask).float().softmax(-1).cpu().numpy())
        if self.cfg.task == "cslr":
            return [[self.vocab[i] for i in seq] for seq in self.head.decode(*self.head.log_probs(self.pose, x, mask))]
        memory, frames = self.head.memory(self.pose, x, mask)
        return [self.head.translate(memory[i: i + 1], frames[i: i + 1]) for i in range(len(x))]

    @torch.no_grad()
    def predict_arrays(self, arrays: Sequence[np.ndarray], batch_size: int = 32) -> list:
        """Preprocessed (T, P, D) arrays -> :meth:`predict_batch` of each, in input order (batched by length)."""
        order = np.argsort([-len(a) for a in arrays], kind="stable")
        out: list = [None] * len(arrays)
        with evaluating(self):
            for s in range(0, len(order), batch_size):
                idx = order[s: s + batch_size]
                x, mask = pad_poses([arrays[i] for i in idx])
                for i, p in zip(idx, self.predict_batch(x.to(self.device), mask.to(self.device))):
                    out[i] = p
        return out

    def recognize(self, poses: PoseInput | Sequence[PoseInput], top_k: int | None = None, batch_size: int = 32):
        """Recognise poses (paths, ``.pose`` bytes, ``Pose`` objects or preprocessed arrays): ISLR the ``top_k``
        (default the config's) (class, probability) pairs, best first; CSLR the gloss sequence (a list);
        SLT the sentence. One pose in, one result out; a list in, a list out."""
        single = not isinstance(poses, (list, tuple))
        arrays = [prepare_pose(p, self.encoder_cfg.pose) for p in ([poses] if single else poses)]
        out = self.predict_arrays(arrays, batch_size)
        if self.cfg.task == "islr":
            k = min(top_k or self.cfg.top_k, len(self.vocab))
            out = [[(self.vocab[i], float(p[i])) for i in np.argsort(-p)[:k]] for p in out]
        return out[0] if single else out


def load(path: str | Path, device: str | torch.device = "cpu", cache_dir: str | Path | None = None
         ) -> "SignCLIP | TaskModel":
    """Load a saved model directory or a Hugging Face Hub id ``hf-hub:ORG/NAME[@REVISION]``: a
    :class:`TaskModel` where it holds ``task.json``, else a :class:`~signclip.models.signclip.SignCLIP`."""
    local = recover_dir(resolve_model_dir(path, cache_dir))
    if (local / TASK_FILE).is_file():
        return TaskModel.load(local, device)
    return SignCLIP.load(local, device)
