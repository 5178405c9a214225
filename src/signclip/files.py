"""Crash-safe writes: a file or a folder appears complete, or not at all.

Everything is written under a temporary name in the same folder (``.NAME.tmp-HOST-PID``), flushed to disk
(fsync), then renamed over the target. A folder that is replaced keeps its previous version under
``.NAME.old`` until the new one is in place (or as a named fallback, e.g. ``checkpoints/previous``), and
:func:`recover_dir` puts it back when a crash fell between the two renames. The temporaries a killed writer
left are deleted by the next write into the same folder (:func:`remove_stale_temporaries`).
"""
from __future__ import annotations

import os
import re
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HOST = re.sub(r"[^\w.-]", "_", socket.gethostname())
TEMPORARY = re.compile(r"\..+\.tmp-(?:(?P<host>[\w.-]+)-)?(?P<pid>\d+)")  # HOST absent in older versions' names


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


def temporary_path(path: Path) -> Path:
    """Where a write of ``path`` goes first: ``.NAME.tmp-HOST-PID`` beside it (the writer's machine and process)."""
    return path.with_name(f".{path.name}.tmp-{HOST}-{os.getpid()}")


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporaries in ``folder`` that writers on this machine left when they were killed (their
    process is gone); those of running writers and of other machines stay. Returns what was deleted."""
    removed = []
    for entry in folder.glob(".*.tmp-*"):
        found = TEMPORARY.fullmatch(entry.name)
        if found and found["host"] in (None, HOST) and not process_alive(int(found["pid"])):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; once the block has written it, it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    tmp = temporary_path(path)
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
    remove_stale_temporaries(path.parent)
    tmp = temporary_path(path)
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
