"""The speech clips the suite tests and benchmarks on: ``data/manifest.csv``."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from .. import paths
from ..errors import MaxWhisperError


@dataclass(frozen=True)
class Clip:
    """One manifest row: an audio file, its length and (when known) its reference transcript."""

    id: str
    path: Path
    duration: float
    reference: str
    license: str

    @property
    def has_reference(self) -> bool:
        return bool(self.reference.strip())


def load_manifest(manifest: str | Path | None = None) -> list[Clip]:
    """Clips of ``manifest`` (default ``data/manifest.csv``), files resolved beside it."""
    manifest = Path(manifest) if manifest else paths.data_dir() / "manifest.csv"
    if not manifest.is_file():
        raise MaxWhisperError(f"{manifest}: no such manifest")
    with open(manifest, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    required = {"id", "file", "duration_s", "reference_text"}
    if rows and not required <= set(rows[0]):
        raise MaxWhisperError(f"{manifest}: columns {sorted(required - set(rows[0]))} missing")
    return [
        Clip(
            id=row["id"],
            path=manifest.parent / row["file"],
            duration=float(row["duration_s"]),
            reference=row.get("reference_text", "") or "",
            license=row.get("license", "") or "",
        )
        for row in rows
    ]


def clip(clip_id: str, manifest: str | Path | None = None) -> Clip:
    """The clip named ``clip_id``."""
    for item in load_manifest(manifest):
        if item.id == clip_id:
            return item
    raise MaxWhisperError(f"no clip {clip_id!r} in the manifest")
