"""What a corpus run transcribes: a manifest, a folder or a glob, as items with unique ids.

An item's id names its outputs (``<output_dir>/<id>.txt``, ``.srt``, ...; a folder's sub-folders
are kept) and its line in ``results.jsonl``, so ids must be unique and stay inside the output
folder.
"""

from __future__ import annotations

import csv
import glob
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import MaxWhisperError

AUDIO_SUFFIXES = frozenset(
    [
        ".wav",
        ".flac",
        ".mp3",
        ".m4a",
        ".ogg",
        ".opus",
        ".webm",
        ".mp4",
        ".aac",
        ".wma",
        ".aiff",
        ".aif",
        ".mkv",
        ".mov",
    ]
)
"""File name endings a folder input picks up (case-insensitive)."""


class CorpusInputError(MaxWhisperError):
    """An input that names no audio, a manifest that can't be read, or ids that collide."""


@dataclass(frozen=True)
class CorpusItem:
    """One file to transcribe: its id (output name), path and reference text ('' if none)."""

    id: str
    path: str
    reference: str = ""


def collect_inputs(source: str | Path) -> list[CorpusItem]:
    """Items of a manifest (``.csv`` with ``file`` and optional ``id``, ``reference_text``
    columns, files relative to it), a folder (its audio files, recursively) or a glob pattern;
    sorted by id. CorpusInputError when nothing is found or ids collide."""
    text = str(source)
    path = Path(source)
    if path.is_file() and path.suffix.lower() == ".csv":
        items = _manifest_items(path)
    elif path.is_dir():
        items = _folder_items(path)
    elif path.is_file():
        items = [CorpusItem(path.stem, str(path))]
    elif glob.has_magic(text):
        files = sorted(Path(f) for f in glob.glob(text, recursive=True) if Path(f).is_file())
        items = [CorpusItem(f.stem, str(f)) for f in files]
    else:
        raise CorpusInputError(f"{text}: no such file, folder or matching files")
    if not items:
        raise CorpusInputError(f"{text}: no audio files found")
    return _checked(items, text)


def _manifest_items(manifest: Path) -> list[CorpusItem]:
    try:
        with open(manifest, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise CorpusInputError(f"{manifest}: unreadable manifest ({error})") from error
    if rows and "file" not in rows[0]:
        raise CorpusInputError(f"{manifest}: no 'file' column (columns: {', '.join(rows[0])})")
    items = []
    for row in rows:
        file = manifest.parent / row["file"]
        items.append(
            CorpusItem(
                id=(row.get("id") or "").strip() or Path(row["file"]).with_suffix("").as_posix(),
                path=str(file),
                reference=row.get("reference_text") or "",
            )
        )
    return items


def _folder_items(folder: Path) -> list[CorpusItem]:
    files = sorted(
        f for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES
    )
    return [CorpusItem(f.relative_to(folder).with_suffix("").as_posix(), str(f)) for f in files]


def _checked(items: list[CorpusItem], source: str) -> list[CorpusItem]:
    seen: dict[str, str] = {}
    for item in items:
        parts = PurePosixPath(item.id).parts
        if not item.id or item.id.startswith("/") or ".." in parts:
            raise CorpusInputError(f"{source}: id {item.id!r} would leave the output folder")
        if item.id in seen:
            raise CorpusInputError(
                f"{source}: {seen[item.id]} and {item.path} share the id {item.id!r} "
                "(their outputs would overwrite each other)"
            )
        seen[item.id] = item.path
    return sorted(items, key=lambda item: item.id)


__all__ = ["AUDIO_SUFFIXES", "CorpusInputError", "CorpusItem", "collect_inputs"]
