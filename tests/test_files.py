"""Crash-safe writes: a failed or killed write leaves the previous version whole."""
from __future__ import annotations

import os

import pytest

from signclip.files import old_version, recover_dir, replacing_dir, write_text


def test_write_text_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / "a.json"
    write_text(path, "old")
    write_text(path, "new")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary left


def test_replacing_dir_keeps_the_old_folder_when_the_writer_fails(tmp_path):
    folder = tmp_path / "best"
    with replacing_dir(folder) as tmp:
        (tmp / "w").write_text("1")
    with pytest.raises(RuntimeError), replacing_dir(folder) as tmp:
        (tmp / "w").write_text("2")
        raise RuntimeError("killed half-way")
    assert (folder / "w").read_text() == "1" and sorted(p.name for p in tmp_path.iterdir()) == ["best"]


def test_replacing_dir_keeps_a_named_previous_version(tmp_path):
    last, previous = tmp_path / "last", tmp_path / "previous"
    for step in ("1", "2", "3"):
        with replacing_dir(last, keep_previous=previous) as tmp:
            (tmp / "step").write_text(step)
    assert (last / "step").read_text() == "3" and (previous / "step").read_text() == "2"


def test_recover_dir_after_a_crash_between_the_two_renames(tmp_path):
    folder = tmp_path / "best"
    with replacing_dir(folder) as tmp:
        (tmp / "w").write_text("1")
    os.replace(folder, old_version(folder))  # the crash: the old version moved aside, the new one not yet in
    assert (recover_dir(folder) / "w").read_text() == "1"


def test_temporaries_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    """A writer killed with SIGKILL leaves its temporary (a 204 MB `checkpoints/.last.tmp-<pid>` survived a
    successful resume): the next write into the folder deletes it; running writers' and other machines' stay."""
    import signal
    import subprocess
    import sys

    from signclip.files import HOST, temporary_path

    last, index = tmp_path / "last", tmp_path / "index.json"
    code = ("import os, signal, sys; from pathlib import Path; from signclip.files import atomic_file, replacing_dir\n"
            "with replacing_dir(Path(sys.argv[1])) as tmp, atomic_file(Path(sys.argv[2])) as f:\n"
            "    (tmp / 'weights').write_bytes(b'0' * 1000); f.write_text('{')\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    killed = subprocess.run([sys.executable, "-c", code, str(last), str(index)], timeout=120)
    assert killed.returncode == -signal.SIGKILL
    pid = next(tmp_path.glob(".last.tmp-*")).name.rsplit("-", 1)[1]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [f".index.json.tmp-{HOST}-{pid}", f".last.tmp-{HOST}-{pid}"]
    running = temporary_path(tmp_path / "other")  # this process: a writer that is still running
    older = tmp_path / f".x.tmp-{pid}"  # the name before the host was in it
    elsewhere = tmp_path / f".y.tmp-another-host-{pid}"
    for path in (running, older, elsewhere):
        path.write_text("")
    with replacing_dir(last) as tmp:
        (tmp / "weights").write_text("1")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["last", running.name, elsewhere.name])
