"""A run directory's files: the lock, the resumable checkpoints and the training log.

    train.lock           held while a trainer writes the folder (a second one is refused)
    checkpoints/last/    the model (as :meth:`SignCLIP.save`) + trainer_state.pt (optimiser, schedule,
                         step, best metric so far, EMA and training-only heads)
    checkpoints/previous/  the checkpoint before ``last``, the fallback when ``last`` is damaged
    log.jsonl            one JSON row per optimiser step (losses, learning rate, temperature, validation)

Checkpoints are written aside and swapped in (:mod:`signclip.files`), and read back with
``torch.load(weights_only=True)``: nothing in a run folder is unpickled.
"""
from __future__ import annotations

import json
import os
import pickle
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout

from signclip.errors import DamagedFileError, RunLockedError, refused_pickle
from signclip.files import recover_dir, replacing_dir
from signclip.models.signclip import SignCLIP

STATE = "trainer_state.pt"
LOCK = "train.lock"


@contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold ``out/train.lock`` for the block (re-entrant in one process); another holder is an error."""
    out.mkdir(parents=True, exist_ok=True)
    lock = FileLock(out / LOCK, is_singleton=True)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RunLockedError(f"{out}: another training run is writing this folder ({out / LOCK} is held); "
                             "wait for it to finish or train into another folder") from None
    try:
        yield
    finally:
        lock.release()


def save_checkpoint(model: SignCLIP, path: Path, state: dict) -> None:
    """Write the model (anything with ``write(folder)``, e.g. a task model) and the trainer state to ``path``
    crash-safely; the checkpoint it replaces stays as ``previous`` beside it."""
    with replacing_dir(path, keep_previous=path.with_name("previous")) as tmp:
        model.write(tmp)
        torch.save(state, tmp / STATE)


def has_checkpoint(path: Path) -> bool:
    recover_dir(path)
    return (path / STATE).exists() or (path.with_name("previous") / STATE).exists()


def load_checkpoint(path: Path, device: torch.device, loader: Callable[[Path], Any] = SignCLIP.load
                    ) -> tuple[Any, dict]:
    """The model (read by ``loader``) and trainer state of ``path`` (``checkpoints/last``), or of ``previous``
    beside it with a warning when ``last`` is missing or damaged."""
    errors = []
    for candidate in (path, path.with_name("previous")):
        if not (candidate / STATE).exists():
            errors.append(f"{candidate}: no {STATE}")
            continue
        try:
            state = load_trainer_state(candidate / STATE, device)
            model = loader(candidate)
        except DamagedFileError as e:
            errors.append(str(e))
            continue
        if errors:
            warnings.warn(f"{path} cannot be used ({'; '.join(errors)}); resuming from {candidate} "
                          f"at step {state['step']}", stacklevel=2)
        return model, state
    raise DamagedFileError(f"{path.parent}: no usable checkpoint ({'; '.join(errors)}); delete the folder "
                           "or train with --no-resume into another folder")


def load_trainer_state(path: Path, device: torch.device) -> dict:
    """``trainer_state.pt`` without unpickling arbitrary objects (tensors, numbers, strings, containers)."""
    try:
        return torch.load(path, weights_only=True, map_location=device)
    except pickle.UnpicklingError as e:
        raise DamagedFileError(f"{path}: refused: {refused_pickle(e)}, and signclip unpickles only tensors, "
                               "numbers, strings and containers") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DamagedFileError(f"{path}: not a trainer state signclip can read ({reason})") from None


def read_log(path: Path) -> list[dict]:
    """The rows of ``log.jsonl``; a last line cut short by a crash is dropped."""
    if not path.exists():
        return []
    rows = []
    for line in filter(str.strip, path.read_text().splitlines()):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def append_log(path: Path, row: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())
