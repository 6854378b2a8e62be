"""Atomic writes: a file or a whole folder appears complete or not at all.

Each is built under a hidden temporary name beside its destination (same file system) and
renamed into place only when the writer succeeds; a failure removes the temporary and leaves
the destination as it was. Every writer of the suite goes through here: transcripts and
reports (:func:`atomic_text_file`), compiled models and converted checkpoints
(:func:`atomic_path`, :func:`write_bytes_atomically`), extracted weight folders
(:func:`atomic_folder`).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

PARTIAL_MARK = ".partial-"


def _hidden_sibling(target: Path, tag: str = "") -> Path:
    return target.parent / f".{target.name}{PARTIAL_MARK}{os.getpid()}-{tag}{uuid.uuid4().hex[:8]}"


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """``with atomic_path(path) as temporary:`` write the file ``temporary`` (with any writer:
    ``torch.save``, ``export_mef``, ``open``); it replaces ``path`` when the block succeeds.
    The parent folder is created if missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _hidden_sibling(path)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextmanager
def atomic_text_file(path: str | Path) -> Iterator[TextIO]:
    """``with atomic_text_file(path) as file:`` a UTF-8 text file that appears at ``path`` only
    when the block succeeds."""
    with atomic_path(path) as temporary, open(temporary, "x", encoding="utf-8") as file:
        yield file


def write_bytes_atomically(path: str | Path, data: bytes) -> None:
    """``path.write_bytes(data)``, atomically."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def remove_stale_partials(parent: Path) -> None:
    """Delete the temporary files and folders that writers no longer running left behind."""
    for path in parent.glob(f".*{PARTIAL_MARK}*"):
        try:
            pid = int(path.name.split(PARTIAL_MARK, 1)[1].split("-", 1)[0])
        except ValueError:
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        except PermissionError:
            pass


@contextmanager
def atomic_folder(
    folder: Path, overwrite: bool, is_complete: Callable[[Path], bool] = lambda p: True
) -> Iterator[Path]:
    """Yield an empty temporary folder; when the block succeeds, it becomes ``folder``.

    An existing complete ``folder`` is replaced only with ``overwrite`` (else the new one is
    dropped: another writer finished first); an existing empty folder is replaced. On any
    failure the temporary folder is removed and ``folder`` is left as it was.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(folder.parent)
    partial = _hidden_sibling(folder)
    partial.mkdir()
    try:
        yield partial
        _move_into_place(partial, folder, overwrite, is_complete)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _move_into_place(
    partial: Path, folder: Path, overwrite: bool, is_complete: Callable[[Path], bool]
) -> None:
    if folder.is_dir() and any(folder.iterdir()):
        if not overwrite:
            if is_complete(folder):
                return  # another writer finished first
            raise FileExistsError(f"{folder} exists and is not empty")
        old = _hidden_sibling(folder, "old-")
        os.rename(folder, old)
        try:
            os.rename(partial, folder)
        except OSError:
            os.rename(old, folder)
            raise
        shutil.rmtree(old, ignore_errors=True)
        return
    if folder.is_dir():
        folder.rmdir()
    try:
        os.rename(partial, folder)
    except OSError:
        if not is_complete(folder):  # lost a race only if the winner left a complete folder
            raise


__all__ = [
    "PARTIAL_MARK",
    "atomic_folder",
    "atomic_path",
    "atomic_text_file",
    "remove_stale_partials",
    "write_bytes_atomically",
]
