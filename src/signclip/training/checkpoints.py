"""A run directory's files: the resumable checkpoint and the training log.

    checkpoints/last/   the model (as :meth:`SignCLIP.save`) + trainer_state.pt (optimiser, schedule,
                        step, best metric so far, EMA and training-only heads)
    log.jsonl           one JSON row per optimiser step (losses, learning rate, temperature, validation)
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from signclip.models.signclip import SignCLIP

STATE = "trainer_state.pt"


def save_checkpoint(model: SignCLIP, path: Path, state: dict) -> None:
    """Write the model and the trainer state to ``path`` (via ``path.tmp``, then renamed)."""
    tmp = path.with_name(path.name + ".tmp")
    model.save(tmp)
    torch.save(state, tmp / STATE)
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)


def has_checkpoint(path: Path) -> bool:
    return (path / STATE).exists()


def load_checkpoint(path: Path, device: torch.device) -> tuple[SignCLIP, dict]:
    """The model and trainer state saved by :func:`save_checkpoint`."""
    state = torch.load(path / STATE, weights_only=False, map_location=device)
    return SignCLIP.load(path), state


def read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_log(path: Path, row: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
