"""Atomic writes: a file appears complete or not at all, and failures leave nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from maxwhisper_lib.atomic import (
    PARTIAL_MARK,
    atomic_path,
    atomic_text_file,
    remove_stale_partials,
    write_bytes_atomically,
)


def test_a_text_file_appears_when_the_block_succeeds(tmp_path):
    path = tmp_path / "new" / "out.txt"
    with atomic_text_file(path) as file:
        file.write("héllo\n")
        assert not path.exists()  # not before the block ends
    assert path.read_text(encoding="utf-8") == "héllo\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.txt"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="writer failed"), atomic_text_file(path) as file:
        file.write("half")
        raise RuntimeError("writer failed")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_any_writer_can_fill_the_temporary_path(tmp_path):
    path = tmp_path / "model.bin"
    with atomic_path(path) as temporary:
        assert temporary.parent == path.parent and temporary.name.startswith(".model.bin")
        temporary.write_bytes(b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    write_bytes_atomically(path, b"new")
    assert path.read_bytes() == b"new"
    with pytest.raises(OSError), atomic_path(path) as temporary:
        temporary.write_bytes(b"partial")
        raise OSError("disk full")
    assert path.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)
    stale_file = tmp_path / f".a.mef{PARTIAL_MARK}{pid}-1234abcd"
    stale_folder = tmp_path / f".tiny.en{PARTIAL_MARK}{pid}-5678abcd"
    live_file = tmp_path / f".b.mef{PARTIAL_MARK}{os.getpid()}-1234abcd"
    stale_file.write_bytes(b"x")
    stale_folder.mkdir()
    (stale_folder / "inner").write_bytes(b"y")
    live_file.write_bytes(b"z")
    remove_stale_partials(tmp_path)
    assert not stale_file.exists() and not stale_folder.exists()
    assert live_file.exists()  # its writer (this process) still runs
