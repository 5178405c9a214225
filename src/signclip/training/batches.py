"""Training batches: examples (augmented pose, prompt, prompt id), the shuffled batches of an epoch, and
each rank's share of them. Every random draw is a pure function of (seed, epoch, index), so an epoch is
reproducible and a resumed run continues exactly."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from signclip.batching import pad_poses
from signclip.config import AugmentConfig, PoseConfig
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
        return training_sample(self.arrays[i], self.prompts[i], self.language_prompts[i], self.layout, self.cfg,
                               self.augment_cfg, self.language_prompt_p, (self.seed, self.epoch, i))


def collate(batch: list[tuple[np.ndarray, str, int]]) -> tuple[torch.Tensor, torch.Tensor, list[str], torch.Tensor]:
    """Examples -> (x (B, T, F), mask (B, T), prompts, prompt ids (B,))."""
    arrays, prompts, ids = zip(*batch)
    x, mask = pad_poses(arrays)
    return x, mask, list(prompts), torch.tensor(ids)


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i: i + size] for i in range(0, len(items), size)]


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int,
                  groups: Sequence[tuple[float, Sequence[str]]] = ()) -> list[list[int]]:
    """The shuffled batches of one epoch, a pure function of (seed, epoch) so resume is exact.

    ``groups``: (share, key of each sample) pairs for hard negatives: that share of the samples is
    batched in runs of equal key (e.g. the same text in other sign languages), the rest at random, and
    the batches are shuffled. A last batch of one example is dropped (a contrastive batch needs negatives)."""
    order = np.random.default_rng((seed, epoch)).permutation(n).tolist()
    if not groups:
        return [b for b in _chunks(order, batch_size) if len(b) > 1]
    shares = [share for share, _ in groups]
    if min(shares) < 0 or sum(shares) > 1:
        raise ValueError(f"grouped batches: shares {shares} must be >= 0 and sum to at most 1")
    rng = np.random.default_rng((seed, epoch, 1))
    batches, start = [], 0
    for share, keys in groups:
        size = round(share * n)
        runs: dict[str, list[int]] = {}
        for i in order[start: start + size]:
            runs.setdefault(keys[i], []).append(i)
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
                 groups: Sequence[tuple[float, Sequence[str]]] = ()):
        self.dataset, self.batch_size, self.seed, self.env = dataset, batch_size, seed, env
        self.num_workers, self.groups = num_workers, groups  # groups: hard-negative batching, see epoch_batches

    def _batches(self, epoch: int) -> list[list[int]]:
        world = self.env.world_size
        return rank_batches(epoch_batches(len(self.dataset), self.batch_size * world, self.seed, epoch, self.groups),
                            self.env.rank, world)

    def n_batches(self) -> int:
        """Batches per epoch (the same on every rank and in every epoch)."""
        return len(self._batches(0))

    def loader(self, epoch: int, start: int, stop: int) -> Iterable:
        """Batches ``start:stop`` of ``epoch`` as (x (B, T, F), mask (B, T), prompts, text ids (B,))."""
        self.dataset.epoch = epoch
        return DataLoader(self.dataset, batch_sampler=self._batches(epoch)[start:stop], collate_fn=collate,
                          num_workers=self.num_workers, pin_memory=self.env.device.type == "cuda")
