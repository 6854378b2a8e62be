"""CTranslate2's ``model.bin`` container, parsed without CTranslate2.

Layout (little-endian), as ``ctranslate2.specs.model_spec.ModelSpec._serialize`` writes it::

    u32 binary_version
    [version >= 2] string spec_name, u32 spec_revision
    u32 num_variables, then per variable:
        string name, u8 rank, u32 dims[rank],
        [version >= 4] u8 dtype_id, u32 num_bytes   | [older] u8 item_size, u32 num_items
        bytes data
    [version >= 3] u32 num_aliases, then per alias: string alias, string target

where ``string`` is a u16 length (counting a final NUL), the UTF-8 bytes and the NUL.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..errors import WeightsError
from .streams import ConcatenatedStream, HashingReader, describe_files

SUPPORTED_BINARY_VERSIONS = range(1, 7)
MAX_RANK = 8
MAX_VARIABLES = 1_000_000

# CTranslate2's DataType enum (include/ctranslate2/types.h); bfloat16 is widened to float32.
DTYPES: dict[int, str] = {
    0: "float32",
    1: "int8",
    2: "int16",
    3: "int32",
    4: "float16",
    5: "bfloat16",
}
_DTYPE_BY_ITEM_SIZE = {4: 0, 2: 2, 1: 1}  # binary versions < 4 only stored the item size
_ITEM_SIZES = {"float32": 4, "int8": 1, "int16": 2, "int32": 4, "float16": 2, "bfloat16": 2}


@dataclass
class Ct2Model:
    """The variables of one ``model.bin`` (aliases resolved to the arrays they name)."""

    source: str
    binary_version: int
    spec_name: str
    spec_revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)
    checksum: str = ""
    stored_dtypes: dict[str, str] = field(default_factory=dict)


def _to_array(data: bytearray, dtype_name: str, shape: tuple[int, ...]) -> np.ndarray:
    if dtype_name == "bfloat16":
        wide = np.frombuffer(data, dtype="<u2").astype(np.uint32) << 16
        return wide.view(np.float32).reshape(shape)
    return np.frombuffer(data, dtype=np.dtype(dtype_name).newbyteorder("<")).reshape(shape)


class _Parser:
    def __init__(self, reader: HashingReader) -> None:
        self.reader = reader

    def fail(self, problem: str) -> WeightsError:
        return WeightsError(
            f"{self.reader.name}: corrupt at offset {self.reader.offset}: {problem}"
        )

    def unpack(self, fmt: str, what: str):
        size = struct.calcsize("<" + fmt)
        return struct.unpack("<" + fmt, self.reader.read_exact(size, what))

    def string(self, what: str) -> str:
        (length,) = self.unpack("H", f"length of {what}")
        if length == 0:
            raise self.fail(f"{what} has length 0")
        raw = self.reader.read_exact(length, what)
        if raw[-1] != 0:
            raise self.fail(f"{what} is not NUL-terminated")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as error:
            raise self.fail(f"{what} is not UTF-8 text") from error

    def variable(self, binary_version: int) -> tuple[str, np.ndarray, str]:
        name = self.string("variable name")
        (rank,) = self.unpack("B", f"rank of {name}")
        if rank > MAX_RANK:
            raise self.fail(f"variable {name!r} claims rank {rank}")
        shape = tuple(int(d) for d in self.unpack(f"{rank}I", f"shape of {name}")) if rank else ()
        if binary_version >= 4:
            type_id, num_bytes = self.unpack("BI", f"dtype of {name}")
        else:
            item_size, num_items = self.unpack("BI", f"dtype of {name}")
            if item_size not in _DTYPE_BY_ITEM_SIZE:
                raise self.fail(f"variable {name!r} has item size {item_size}")
            type_id, num_bytes = _DTYPE_BY_ITEM_SIZE[item_size], num_items * item_size
        if type_id not in DTYPES:
            raise self.fail(f"variable {name!r} has unknown dtype id {type_id}")
        dtype_name = DTYPES[type_id]
        expected = int(np.prod(shape, dtype=np.int64)) * _ITEM_SIZES[dtype_name]
        if num_bytes != expected:
            raise self.fail(
                f"variable {name!r} of shape {shape} and dtype {dtype_name} should take "
                f"{expected} bytes but claims {num_bytes}"
            )
        data = self.reader.read_exact(num_bytes, f"data of {name}")
        return name, _to_array(data, dtype_name, shape), dtype_name


def read_ct2_binary(paths: Sequence[str | Path], progress: bool = False) -> Ct2Model:
    """Parse ``model.bin`` (or its ordered parts, read as one stream) into named arrays.

    Raises :class:`WeightsError` naming the file(s) on a missing part, truncation, trailing bytes
    or any header field that cannot be right.
    """
    paths = [Path(p) for p in paths]
    name = describe_files(paths)
    stream = ConcatenatedStream(paths)
    reader = HashingReader(stream, name, total_size=stream.total_size)
    bar = tqdm(
        total=stream.total_size, unit="B", unit_scale=True, desc="model.bin", disable=not progress
    )
    reader.on_progress = bar.update
    parser = _Parser(reader)
    try:
        (binary_version,) = parser.unpack("I", "binary version")
        if binary_version not in SUPPORTED_BINARY_VERSIONS:
            raise WeightsError(
                f"{name}: not a CTranslate2 model.bin this reader knows (binary version "
                f"{binary_version}; supported: 1-{SUPPORTED_BINARY_VERSIONS[-1]})"
            )
        spec_name, spec_revision = "", 1
        if binary_version >= 2:
            spec_name = parser.string("spec name")
            (spec_revision,) = parser.unpack("I", "spec revision")
        (count,) = parser.unpack("I", "variable count")
        if count > MAX_VARIABLES:
            raise parser.fail(f"claims {count} variables")
        variables: dict[str, np.ndarray] = {}
        stored: dict[str, str] = {}
        for _ in range(count):
            var_name, array, dtype_name = parser.variable(binary_version)
            if var_name in variables:
                raise parser.fail(f"variable {var_name!r} appears twice")
            variables[var_name], stored[var_name] = array, dtype_name
        aliases: dict[str, str] = {}
        if binary_version >= 3:
            (alias_count,) = parser.unpack("I", "alias count")
            if alias_count > MAX_VARIABLES:
                raise parser.fail(f"claims {alias_count} aliases")
            for _ in range(alias_count):
                alias, target = parser.string("alias name"), parser.string("alias target")
                if target not in variables:
                    raise parser.fail(f"alias {alias!r} names unknown variable {target!r}")
                aliases[alias] = target
        extra = reader.read_rest()
        if extra:
            raise WeightsError(
                f"{name}: {extra} unexpected bytes after the last record at offset "
                f"{reader.offset - extra} (corrupt, or parts joined in the wrong order?)"
            )
    finally:
        bar.close()
        stream.close()
    for alias, target in aliases.items():
        # as CTranslate2 does: an alias also covers the target's quantization scale
        variables[alias], stored[alias] = variables[target], stored[target]
        if f"{target}_scale" in variables:
            variables[f"{alias}_scale"] = variables[f"{target}_scale"]
    return Ct2Model(
        source=name,
        binary_version=binary_version,
        spec_name=spec_name,
        spec_revision=spec_revision,
        variables=variables,
        aliases=aliases,
        checksum="sha256:" + reader.hash.hexdigest(),
        stored_dtypes=stored,
    )


def write_ct2_binary(
    path: str | Path,
    variables: dict[str, np.ndarray],
    aliases: dict[str, str] | None = None,
    spec_name: str = "WhisperSpec",
    spec_revision: int = 3,
) -> Path:
    """Serialize ``variables`` (sorted by name) and ``aliases`` as a version-6 ``model.bin``."""
    type_ids = {name: type_id for type_id, name in DTYPES.items() if name != "bfloat16"}

    def string(text: str) -> bytes:
        raw = text.encode("utf-8") + b"\0"
        return struct.pack("<H", len(raw)) + raw

    path = Path(path)
    with open(path, "wb") as out:
        out.write(struct.pack("<I", 6) + string(spec_name) + struct.pack("<I", spec_revision))
        out.write(struct.pack("<I", len(variables)))
        for name in sorted(variables):
            array = np.require(variables[name], requirements="C")
            if str(array.dtype) not in type_ids:
                raise WeightsError(f"{name}: dtype {array.dtype} has no CTranslate2 type")
            out.write(string(name) + struct.pack("<B", array.ndim))
            out.write(struct.pack(f"<{array.ndim}I", *array.shape))
            out.write(struct.pack("<BI", type_ids[str(array.dtype)], array.nbytes))
            out.write(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())
        out.write(struct.pack("<I", len(aliases or {})))
        for alias, target in sorted((aliases or {}).items()):
            out.write(string(alias) + string(target))
    return path
