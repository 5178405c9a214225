"""Crash-safe writes: a file or a folder appears complete, or not at all.

Everything is written under a temporary name in the same folder, flushed to disk (fsync), then renamed
over the target. A folder that is replaced keeps its previous version under ``.NAME.old`` until the new
one is in place (or as a named fallback, e.g. ``checkpoints/previous``), and :func:`recover_dir` puts it
back when a crash fell between the two renames.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (new and renamed files) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """Flush every file and folder under ``path`` (and ``path`` itself) to disk."""
    for root, _, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(Path(root))


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; once the block has written it, it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Crash-safe ``Path.write_bytes``."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Crash-safe ``Path.write_text`` (UTF-8)."""
    return write_bytes(path, text.encode("utf-8"))


def old_version(path: Path) -> Path:
    """Where :func:`replacing_dir` keeps a folder's previous version while replacing it."""
    return path.with_name(f".{path.name}.old")


@contextmanager
def replacing_dir(path: str | Path, keep_previous: Path | None = None) -> Iterator[Path]:
    """Yield an empty temporary folder; once the block has filled it, it replaces the folder ``path``.

    The replaced folder is deleted, or kept as ``keep_previous`` (a fallback such as the previous
    checkpoint). A crash leaves either the old folder or the new one (:func:`recover_dir`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        fsync_tree(tmp)
        old = keep_previous or old_version(path)
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        fsync_dir(path.parent)
        if keep_previous is None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def recover_dir(path: str | Path) -> Path:
    """``path`` itself, or its previous version put back when a crash fell between the two renames of
    :func:`replacing_dir` (the folder is missing, ``.NAME.old`` is there)."""
    path = Path(path)
    old = old_version(path)
    if not path.exists() and old.is_dir():
        os.replace(old, path)
    return path
