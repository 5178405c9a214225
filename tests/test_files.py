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
