"""Training on packed shards (:mod:`signclip.data.shards`) without loading them: a stream per rank and worker.

Each epoch the row groups are shuffled (seed, epoch), dealt to ranks (``[rank::world]``) and then to
DataLoader workers (``[worker::workers]``), and each worker shuffles through a buffer of
``shuffle_buffer`` samples, so memory stays flat however large the data set is.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice

import numpy as np
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from signclip.config import AugmentConfig, TrainConfig
from signclip.data.manifests import optional
from signclip.data.shards import ShardSplit
from signclip.pose.layout import get_layout
from signclip.text.prompts import language_prompt, make_prompt
from signclip.training.batches import collate, training_sample
from signclip.training.distributed import DistEnv


@dataclass
class PromptMaker:
    """Picklable ``(text, spoken, signed) -> prompt`` with a model's template and known languages."""

    template: str
    spoken: list[str]
    signed: list[str]

    @classmethod
    def for_model(cls, model) -> "PromptMaker":
        return cls(model.cfg.prompt_template, list(model.cfg.spoken_languages), list(model.cfg.signed_languages))

    def __call__(self, text: str, spoken: str | None, signed: str | None) -> str:
        return make_prompt(text, spoken, signed, self.template, self.spoken, self.signed)


class ShardStream(IterableDataset):
    """Samples (array, prompt, prompt id) of one rank's share of an epoch, endlessly (a rank whose
    shards run out starts them again, so every rank yields the same number of batches).

    Row groups are shuffled with (seed, epoch), dealt to ranks then workers; each worker shuffles its
    samples through a buffer; the first ``skip`` samples of each worker are dropped (exact resume)."""

    def __init__(self, split: ShardSplit, prompts: PromptMaker, epoch: int, rank: int, world: int, seed: int = 0,
                 shuffle_buffer: int = 1000, augment_cfg: AugmentConfig | None = None, skip_batches: int = 0,
                 batch_size: int = 1, endless: bool = True, language_prompt_p: float = 0.0):
        self.split, self.prompts, self.epoch, self.rank, self.world = split, prompts, epoch, rank, world
        self.seed, self.shuffle_buffer, self.augment_cfg = seed, shuffle_buffer, augment_cfg
        self.skip_batches, self.batch_size, self.endless = skip_batches, batch_size, endless
        self.language_prompt_p = language_prompt_p
        self.layout = get_layout(split.pose_cfg.layout)

    def partition(self, worker: int = 0, workers: int = 1) -> list:
        """The row groups of this (rank, worker) in this epoch: disjoint, together all of them."""
        order = np.random.default_rng((self.seed, self.epoch)).permutation(len(self.split.units))
        mine = order[self.rank::self.world][worker::workers]
        return [self.split.units[i] for i in mine]

    def __iter__(self) -> Iterator[tuple[np.ndarray, str, int]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        units = self.partition(worker, workers)
        if not units:
            return
        # the loader takes batches round-robin from its workers: this worker's share of the skipped ones
        skip = len(range(worker, self.skip_batches, workers)) * self.batch_size
        samples = islice(self._shuffled(units, worker), skip, None)
        for index, array, row in samples:
            spoken, signed = optional(row.spoken_language), optional(row.signed_language)
            yield training_sample(array, self.prompts(row.text, spoken, signed),
                                  language_prompt(spoken, signed, self.prompts.template), self.layout,
                                  self.split.pose_cfg, self.augment_cfg, self.language_prompt_p,
                                  (self.seed, self.epoch, index))

    def _shuffled(self, units: list, worker: int) -> Iterator:
        rng = np.random.default_rng((self.seed, self.epoch, self.rank, worker))
        buffer: list = []
        passes = 0
        while True:
            order = units if passes == 0 else [units[i] for i in rng.permutation(len(units))]
            for item in self.split.rows(order):
                if len(buffer) < self.shuffle_buffer:
                    buffer.append(item)
                    continue
                j = int(rng.integers(len(buffer)))
                buffer[j], item = item, buffer[j]
                yield item
            passes += 1
            if not self.endless:
                break
        rng.shuffle(buffer)
        yield from buffer


class ShardSource:
    """Training batches from shards for :func:`signclip.training.loop.train`: ``len // (batch_size x world)``
    batches per epoch on every rank."""

    def __init__(self, split: ShardSplit, prompts: PromptMaker, cfg: TrainConfig, env: DistEnv):
        self.split, self.prompts, self.cfg, self.env = split, prompts, cfg, env
        streams = env.world_size * max(1, cfg.num_workers)
        if len(split.units) < streams:
            raise ValueError(f"{split.root}: {len(split.units)} row group(s) with training rows for {streams} "
                             "streams (ranks x workers); pack with a smaller --rows-per-group")

    @classmethod
    def for_model(cls, split: ShardSplit, model, cfg: TrainConfig, env: DistEnv) -> "ShardSource":
        """The stream for ``model``, whose preprocessing must be the one the shards were packed with."""
        split.check(model.cfg.pose)
        return cls(split, PromptMaker.for_model(model), cfg, env)

    def n_batches(self) -> int:
        n = len(self.split) // (self.cfg.batch_size * self.env.world_size)
        if n == 0:
            raise ValueError(f"{self.split.root}: {len(self.split)} training rows, fewer than one global batch "
                             f"({self.cfg.batch_size} x {self.env.world_size})")
        return n

    def loader(self, epoch: int, start: int, stop: int) -> Iterable:
        stream = ShardStream(self.split, self.prompts, epoch, self.env.rank, self.env.world_size, self.cfg.seed,
                             self.cfg.shuffle_buffer, self.cfg.augment, start, self.cfg.batch_size,
                             language_prompt_p=self.cfg.language_prompt_p)
        loader = DataLoader(stream, batch_size=self.cfg.batch_size, collate_fn=collate,
                            num_workers=self.cfg.num_workers, pin_memory=self.env.device.type == "cuda")
        return islice(loader, stop - start)
