"""Training batches: examples (augmented pose, prompt, prompt id), the shuffled batches of an epoch, and
each rank's share of them. Every random draw is a pure function of (seed, epoch, index), so an epoch is
reproducible and a resumed run continues exactly."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from signclip.batching import pad_poses
from signclip.config import AugmentConfig, PoseConfig
from signclip.data.manifests import SOURCE
from signclip.pose.augment import augment
from signclip.pose.layout import Layout, get_layout
from signclip.text.prompts import prompt_id
from signclip.training.distributed import DistEnv


def training_sample(array: np.ndarray, prompt: str, lang_prompt: str | None, layout: Layout, cfg: PoseConfig,
                    augment_cfg: AugmentConfig | None, language_prompt_p: float, rng_key: tuple
                    ) -> tuple[np.ndarray, str, int]:
    """One training example: the (augmented) pose, its prompt and the prompt's id.

    With probability ``language_prompt_p`` the prompt is the text-free ``<en> <ase>`` of its language,
    which teaches sign-language identification. Random draws come from ``rng_key`` (seed, epoch,
    index), so an epoch is reproducible, also after a resume."""
    rng = np.random.default_rng(rng_key)
    if augment_cfg is not None:
        array = augment(array, layout, augment_cfg, rng, cfg.max_frames)
    if lang_prompt is not None and language_prompt_p > 0 and rng.random() < language_prompt_p:
        prompt = lang_prompt
    return array, prompt, prompt_id(prompt)


class PoseTextDataset(Dataset):
    """In-memory preprocessed poses with their prompts; augments when ``augment_cfg`` is given."""

    def __init__(self, arrays: list[np.ndarray], prompts: list[str], cfg: PoseConfig,
                 augment_cfg: AugmentConfig | None = None, seed: int = 0,
                 language_prompts: list[str | None] | None = None, language_prompt_p: float = 0.0):
        self.arrays, self.prompts, self.cfg, self.augment_cfg, self.seed = arrays, prompts, cfg, augment_cfg, seed
        self.language_prompts = language_prompts or [None] * len(arrays)
        self.language_prompt_p = language_prompt_p
        self.layout = get_layout(cfg.layout)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, i: int) -> tuple[np.ndarray, str, int]:
        """Example ``i``; an index ``i + c * len(self)`` is the c-th extra copy of it in an epoch that repeats
        examples (:func:`weighted_order`), augmented with its own draws."""
        j = i % len(self.arrays)
        return training_sample(self.arrays[j], self.prompts[j], self.language_prompts[j], self.layout, self.cfg,
                               self.augment_cfg, self.language_prompt_p, (self.seed, self.epoch, i))


def collate(batch: list[tuple[np.ndarray, str, int]]) -> tuple[torch.Tensor, torch.Tensor, list[str], torch.Tensor]:
    """Examples -> (x (B, T, F), mask (B, T), prompts, prompt ids (B,))."""
    arrays, prompts, ids = zip(*batch)
    x, mask = pad_poses(arrays)
    return x, mask, list(prompts), torch.tensor(ids)


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i: i + size] for i in range(0, len(items), size)]


def weighted_order(weights: Sequence[float], rng: np.random.Generator) -> list[int]:
    """One epoch's samples when example ``i`` is drawn ``weights[i]`` times on average (per-source upsampling,
    as open_clip's): each group of equal weight contributes round(weight x its size) samples, whole copies of
    it and a random part; the c-th extra copy of example ``i`` is the index ``i + c * n``. Shuffled."""
    w = np.asarray(weights, dtype=float)
    n, picked = len(w), []
    for value in np.unique(w):
        idx = np.flatnonzero(w == value)
        copies, rest = divmod(round(value * len(idx)), len(idx))
        picked += [i + c * n for c in range(copies) for i in idx]
        picked += (rng.choice(idx, rest, replace=False) + copies * n).tolist()
    return [picked[j] for j in rng.permutation(len(picked))]


def source_weights(df: pd.DataFrame, weights: Mapping[str, float]) -> list[float] | None:
    """Each training row's draws per epoch from per-source ``weights`` (source name -> factor, others 1), or
    None when every factor is 1. Unknown names and factors <= 0 are refused."""
    if not weights:
        return None
    names = sorted(set(df[SOURCE])) if SOURCE in df.columns else []
    unknown = sorted(set(weights) - set(names))
    if unknown:
        known = names or "one, unnamed (give several data sources to weight them)"
        raise ValueError(f"source_weights: unknown source(s) {unknown}; the training sources are {known}")
    bad = {k: v for k, v in weights.items() if not v > 0}
    if bad:
        raise ValueError(f"source_weights: factors must be > 0, got {bad}")
    return [float(weights.get(name, 1.0)) for name in df[SOURCE]]


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int,
                  groups: Sequence[tuple[float, Sequence[str]]] = (),
                  weights: Sequence[float] | None = None) -> list[list[int]]:
    """The shuffled batches of one epoch, a pure function of (seed, epoch) so resume is exact.

    ``groups``: (share, key of each sample) pairs for hard negatives: that share of the samples is
    batched in runs of equal key (e.g. the same text in other sign languages), the rest at random, and
    the batches are shuffled. ``weights``: how often each example is drawn per epoch (:func:`weighted_order`).
    A last batch of one example is dropped (a contrastive batch needs negatives)."""
    rng_order = np.random.default_rng((seed, epoch))
    order = weighted_order(weights, rng_order) if weights is not None else rng_order.permutation(n).tolist()
    if not groups:
        return [b for b in _chunks(order, batch_size) if len(b) > 1]
    shares = [share for share, _ in groups]
    if min(shares) < 0 or sum(shares) > 1:
        raise ValueError(f"grouped batches: shares {shares} must be >= 0 and sum to at most 1")
    rng = np.random.default_rng((seed, epoch, 1))
    batches, start = [], 0
    for share, keys in groups:
        size = round(share * len(order))
        runs: dict[str, list[int]] = {}
        for i in order[start: start + size]:
            runs.setdefault(keys[i % n], []).append(i)
        start += size
        runs_list = list(runs.values())
        batches += _chunks([i for j in rng.permutation(len(runs_list)) for i in runs_list[j]], batch_size)
    batches += _chunks(order[start:], batch_size)
    return [batches[j] for j in rng.permutation(len(batches)) if len(batches[j]) > 1]


def rank_batches(batches: list[list[int]], rank: int, world: int) -> list[list[int]]:
    """This rank's part of each global batch: ``world`` equal contiguous parts (all_gather needs equal
    sizes), so a global batch is trimmed to a multiple of ``world``; empty ones are dropped."""
    if world == 1:
        return batches
    parts = []
    for b in batches:
        k = len(b) // world
        if k > 0:
            parts.append(b[rank * k: (rank + 1) * k])
    return parts


class MemorySource:
    """Training batches of an in-memory split: the epoch's global batches of :func:`epoch_batches`
    (``batch_size x world``), this rank's part of each; a pure function of (seed, epoch, rank)."""

    def __init__(self, dataset: PoseTextDataset, batch_size: int, seed: int, env: DistEnv, num_workers: int = 0,
                 groups: Sequence[tuple[float, Sequence[str]]] = (), weights: Sequence[float] | None = None):
        self.dataset, self.batch_size, self.seed, self.env = dataset, batch_size, seed, env
        # groups: hard-negative batching; weights: per-example draws per epoch (see epoch_batches)
        self.num_workers, self.groups, self.weights = num_workers, groups, weights

    def _batches(self, epoch: int) -> list[list[int]]:
        world = self.env.world_size
        return rank_batches(epoch_batches(len(self.dataset), self.batch_size * world, self.seed, epoch, self.groups,
                                          self.weights), self.env.rank, world)

    def n_batches(self) -> int:
        """Batches per epoch (the same on every rank and in every epoch)."""
        return len(self._batches(0))

    def loader(self, epoch: int, start: int, stop: int) -> Iterable:
        """Batches ``start:stop`` of ``epoch`` as (x (B, T, F), mask (B, T), prompts, text ids (B,))."""
        self.dataset.epoch = epoch
        return DataLoader(self.dataset, batch_sampler=self._batches(epoch)[start:stop], collate_fn=collate,
                          num_workers=self.num_workers, pin_memory=self.env.device.type == "cuda")
