"""Writing a whole folder atomically: build it in a hidden temporary folder beside, then rename."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

PARTIAL_MARK = ".partial-"


def remove_stale_partials(parent: Path) -> None:
    """Delete temporary folders that writers which are no longer running left behind."""
    for path in parent.glob(f".*{PARTIAL_MARK}*"):
        try:
            pid = int(path.name.split(PARTIAL_MARK, 1)[1].split("-", 1)[0])
        except ValueError:
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            pass


def _hidden_sibling(folder: Path, tag: str = "") -> Path:
    return folder.parent / f".{folder.name}{PARTIAL_MARK}{os.getpid()}-{tag}{uuid.uuid4().hex[:8]}"


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
