"""Reading an ordered list of files as one byte stream (split ``model.bin`` parts), and hashing."""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Sequence
from pathlib import Path

from ..errors import WeightsError

_CHUNK = 1 << 20


def describe_files(paths: Sequence[Path]) -> str:
    """One name for the files of one stream: ``a/model.bin`` or ``a/model.bin.part1 + ...part2``."""
    return " + ".join(str(p) for p in paths)


class ConcatenatedStream(io.RawIOBase):
    """Read-only stream over ``paths`` in order, as if they were one file (none joined on disk)."""

    def __init__(self, paths: Sequence[str | Path]) -> None:
        super().__init__()
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise WeightsError("no model file given")
        missing = [str(p) for p in self.paths if not p.is_file()]
        if missing:
            raise WeightsError(f"missing model file(s): {', '.join(missing)}")
        self.sizes = [p.stat().st_size for p in self.paths]
        self._index = 0
        self._file = open(self.paths[0], "rb")  # noqa: SIM115 - closed in close()

    @property
    def total_size(self) -> int:
        return sum(self.sizes)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        while self._file is not None:
            count = self._file.readinto(view)
            if count:
                return count
            self._file.close()
            self._index += 1
            if self._index < len(self.paths):
                self._file = open(self.paths[self._index], "rb")  # noqa: SIM115
            else:
                self._file = None
        return 0

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        super().close()


class HashingReader:
    """Exact reads from a stream, hashing every byte and counting the offset (for errors)."""

    def __init__(self, stream: io.RawIOBase, name: str, total_size: int | None = None) -> None:
        self.stream = io.BufferedReader(stream, buffer_size=_CHUNK)
        self.name = name
        self.total_size = total_size
        self.offset = 0
        self.hash = hashlib.sha256()
        self.on_progress = None  # optional callable(bytes_read)

    def read_exact(self, count: int, what: str) -> bytearray:
        """``count`` bytes, or :class:`WeightsError` naming ``what`` if the stream ends first."""
        if self.total_size is not None and self.offset + count > self.total_size:
            raise WeightsError(
                f"{self.name}: truncated: {what} needs {count} bytes at offset {self.offset}, "
                f"but the file ends at {self.total_size} (incomplete download or missing part?)"
            )
        data = bytearray(count)
        view = memoryview(data)
        done = 0
        while done < count:
            got = self.stream.readinto(view[done:])
            if not got:
                raise WeightsError(
                    f"{self.name}: truncated: {what} needs {count} bytes at offset {self.offset}, "
                    f"but the file ends after {self.offset + done}"
                )
            done += got
        self.hash.update(data)
        self.offset += count
        if self.on_progress is not None:
            self.on_progress(count)
        return data

    def read_rest(self) -> int:
        """Consume (and hash) whatever is left; return its length."""
        extra = 0
        while chunk := self.stream.read(_CHUNK):
            self.hash.update(chunk)
            extra += len(chunk)
        self.offset += extra
        return extra


def file_sha256(paths: Sequence[str | Path]) -> str:
    """SHA-256 of the files' concatenated bytes, as ``sha256:<hex>``."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()


_PART = re.compile(r"^(?P<stem>.+)\.part(?P<number>\d+)$")


def ordered_parts(folder: Path, stem: str = "model.bin") -> list[Path]:
    """``stem.part1``, ``stem.part2``, ... in ``folder``, ordered by number; error on a gap."""
    numbered = {}
    for path in folder.iterdir():
        match = _PART.match(path.name)
        if match and match["stem"] == stem and path.is_file():
            numbered[int(match["number"])] = path
    if not numbered:
        return []
    start = 0 if 0 in numbered else 1
    expected = range(start, max(numbered) + 1)
    gaps = [n for n in expected if n not in numbered]
    if gaps:
        absent = ", ".join(f"{stem}.part{n}" for n in gaps)
        raise WeightsError(f"{folder}: split model file lacks part(s): {absent}")
    return [numbered[n] for n in expected]
