"""Where a corpus run's results go: one JSON line per file in ``results.jsonl``, transcript files
beside it, and what a re-run may skip.

Only the driver writes. Each line is written with one ``write`` to a file opened for appending
and flushed to disk before the next, so an interrupted run leaves at most one incomplete last
line, which :meth:`ResultStore.load` ignores. A file counts as done once its ``ok`` line is in;
files whose line is an error are tried again on a re-run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..decoding.writers import json_safe, write_result

RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "summary.json"


class ResultStore:
    """The output folder of a corpus run."""

    def __init__(self, output_dir: str | Path) -> None:
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.results_path = self.output_dir / RESULTS_FILE
        self._end_torn_line()

    def load(self) -> dict[str, dict[str, Any]]:
        """The last complete line of each id written so far (a torn last line is skipped)."""
        rows: dict[str, dict[str, Any]] = {}
        if not self.results_path.exists():
            return rows
        with open(self.results_path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict) and isinstance(row.get("id"), str):
                    rows[row["id"]] = row
        return rows

    def done_ids(self) -> set[str]:
        """Ids whose transcription succeeded in an earlier run."""
        return {id_ for id_, row in self.load().items() if row.get("status") == "ok"}

    def write_outputs(
        self,
        item_id: str,
        result: Mapping[str, Any],
        formats: Iterable[str],
        writer_options: Mapping[str, Any] | None = None,
    ) -> list[Path]:
        """The transcript files of ``item_id`` (each written atomically)."""
        target = self.output_dir / item_id
        target.parent.mkdir(parents=True, exist_ok=True)
        # the writers name files after the audio's stem: give them one whose stem is the whole
        # last part of the id, dots included ("talk.v2" -> talk.v2.txt, not talk.txt)
        audio_name = target.with_name(f"{target.name}.audio")
        return write_result(result, audio_name, target.parent, formats, writer_options)

    def append(self, row: Mapping[str, Any]) -> None:
        """Add one result line, durably, before the next one is written."""
        self._write((json.dumps(json_safe(dict(row)), ensure_ascii=False) + "\n").encode())

    def _end_torn_line(self) -> None:
        """End a last line an interrupted run left incomplete, so the next line stands alone."""
        if not self.results_path.exists():
            return
        with open(self.results_path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            if not handle.tell():
                return
            handle.seek(-1, os.SEEK_END)
            torn = handle.read(1) != b"\n"
        if torn:
            self._write(b"\n")

    def _write(self, data: bytes) -> None:
        descriptor = os.open(self.results_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(descriptor, data)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


__all__ = ["RESULTS_FILE", "SUMMARY_FILE", "ResultStore"]
