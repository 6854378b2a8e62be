"""Whisper weights as a ggml model file for whisper.cpp (the benchmark's whisper.cpp peer).

The legacy ggml layout that whisper.cpp's loader reads, written from the canonical weights every
other engine uses:

* magic ``0x67676d6c`` ("ggml"), then eleven int32 hyper-parameters: ``n_vocab``,
  ``n_audio_ctx``, ``n_audio_state``, ``n_audio_head``, ``n_audio_layer``, ``n_text_ctx``,
  ``n_text_state``, ``n_text_head``, ``n_text_layer``, ``n_mels`` and the file type (1: float16;
  a quantized type ``t`` is written ``t + 1000 * 2``, ggml's quantization version 2);
* the mel filterbank: int32 ``n_mels``, int32 ``n_fft // 2 + 1``, then float32 rows;
* the vocabulary: int32 count, then per token an int32 length and its bytes (the tiktoken ranks,
  in order);
* the tensors, each: int32 ``n_dims``, name length, type (0 float32, 1 float16, 8 q8_0), the
  dimensions innermost first, the name, the data.

Which tensors keep which precision follows whisper.cpp's converter and its quantizer: vectors,
the conv biases (stored ``(n, 1)``) and the positional embeddings in float32; the conv kernels in
float16; every other matrix in the file's type. ``q8_0`` stores blocks of 32 values along each
row as one float16 scale ``max|x| / 127`` and 32 int8 values ``round(x / scale)``.
"""

from __future__ import annotations

import base64
import os
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..atomic import atomic_path
from ..errors import WeightsError
from .canonical import WhisperWeights

MAGIC = 0x67676D6C
FILE_TYPES = {"f16": 1, "q8_0": 7}
"""File kind -> ggml file type (``GGML_FTYPE_*``)."""
QUANTIZATION_VERSION = 2
QUANTIZATION_FACTOR = 1000
TENSOR_F32, TENSOR_F16, TENSOR_Q8_0 = 0, 1, 8
Q8_0_BLOCK = 32
FLOAT32_TENSORS = frozenset(
    {
        "encoder.conv1.bias",
        "encoder.conv2.bias",
        "encoder.positional_embedding",
        "decoder.positional_embedding",
    }
)


def mel_filters(n_mels: int) -> np.ndarray:
    """openai-whisper's mel filterbank ``(n_mels, 201)`` (the one every engine uses), a copy."""
    from ..audio.features import mel_filters as whisper_mel_filters

    return whisper_mel_filters(n_mels).astype(np.float32)


def vocabulary(n_vocab: int) -> list[bytes]:
    """The tiktoken vocabulary of a model with ``n_vocab`` tokens, in rank order."""
    from ..decoding.whisper_parts import asset

    name = "multilingual" if n_vocab >= 51865 else "gpt2"
    path = asset(f"{name}.tiktoken")
    ranked = []
    for line in path.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranked.append((int(rank), base64.b64decode(token)))
    return [token for _, token in sorted(ranked)]


def quantize_q8_0(matrix: np.ndarray) -> bytes:
    """ggml's q8_0 blocks of a float matrix whose rows are a multiple of 32 long."""
    values = np.ascontiguousarray(matrix, dtype=np.float32)
    if values.shape[-1] % Q8_0_BLOCK:
        raise WeightsError(f"q8_0 needs rows of a multiple of {Q8_0_BLOCK}, got {values.shape}")
    blocks = values.reshape(-1, Q8_0_BLOCK)
    scale = np.abs(blocks).max(axis=1) / 127.0
    inverse = np.divide(1.0, scale, out=np.zeros_like(scale), where=scale > 0)
    # ggml rounds half away from zero (roundf); NumPy's rint rounds half to even
    scaled = blocks * inverse[:, None]
    quantized = (np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)).astype(np.int8)
    packed = np.empty(len(blocks), dtype=[("d", "<f2"), ("qs", "i1", Q8_0_BLOCK)])
    packed["d"], packed["qs"] = scale.astype(np.float16), quantized
    return packed.tobytes()


def dequantize_q8_0(data: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """The float32 values a q8_0 tensor of ``shape`` holds (for checks)."""
    packed = np.frombuffer(data, dtype=[("d", "<f2"), ("qs", "i1", Q8_0_BLOCK)])
    values = packed["qs"].astype(np.float32) * packed["d"].astype(np.float32)[:, None]
    return values.reshape(shape)


def tensor_type(name: str, array: np.ndarray, kind: str) -> int:
    """The ggml type ``name`` is stored in, in a file of ``kind``."""
    if array.ndim < 2 or name in FLOAT32_TENSORS:
        return TENSOR_F32
    if kind == "q8_0" and array.ndim == 2:
        return TENSOR_Q8_0
    return TENSOR_F16


def _write_tensor(out: BinaryIO, name: str, array: np.ndarray, kind: str) -> None:
    if name in ("encoder.conv1.bias", "encoder.conv2.bias"):
        array = array.reshape(-1, 1)
    ttype = tensor_type(name, array, kind)
    encoded = name.encode()
    out.write(struct.pack("<iii", array.ndim, len(encoded), ttype))
    out.write(struct.pack(f"<{array.ndim}i", *reversed(array.shape)))
    out.write(encoded)
    if ttype == TENSOR_Q8_0:
        out.write(quantize_q8_0(array))
    else:
        dtype = np.float32 if ttype == TENSOR_F32 else np.float16
        out.write(np.ascontiguousarray(array, dtype=dtype).tobytes())


def write_ggml(weights: WhisperWeights, path: str | Path, kind: str = "f16") -> Path:
    """Write ``weights`` as a whisper.cpp ggml file of ``kind`` (``f16`` or ``q8_0``) at
    ``path``, atomically (a temporary file beside it, renamed when complete)."""
    if kind not in FILE_TYPES:
        raise WeightsError(f"unknown ggml kind {kind!r}; choose from {', '.join(FILE_TYPES)}")
    dims = weights.dims
    file_type = FILE_TYPES[kind]
    if kind != "f16":
        file_type += QUANTIZATION_VERSION * QUANTIZATION_FACTOR
    path = Path(path)
    with atomic_path(path) as partial, partial.open("wb") as out:
        hparams = [
            dims.n_vocab,
            dims.n_audio_ctx,
            dims.n_audio_state,
            dims.n_audio_head,
            dims.n_audio_layer,
            dims.n_text_ctx,
            dims.n_text_state,
            dims.n_text_head,
            dims.n_text_layer,
            dims.n_mels,
            file_type,
        ]
        out.write(struct.pack("<12i", MAGIC, *hparams))
        filters = mel_filters(dims.n_mels)
        out.write(struct.pack("<ii", *filters.shape))
        out.write(filters.tobytes())
        tokens = vocabulary(dims.n_vocab)
        out.write(struct.pack("<i", len(tokens)))
        for token in tokens:
            out.write(struct.pack("<i", len(token)))
            out.write(token)
        for name, array in weights.tensors.items():
            _write_tensor(out, name, np.asarray(array), kind)
    return path


def read_ggml_header(path: str | Path) -> dict:
    """Hyper-parameters, vocabulary size and every tensor's (shape, type) of a ggml file (the
    shapes outermost first, as in the canonical weights), without loading the data."""
    with Path(path).open("rb") as f:
        magic, *hparams = struct.unpack("<12i", f.read(48))
        if magic != MAGIC:
            raise WeightsError(f"{path}: not a ggml file (magic {magic:#x})")
        n_mels, n_bins = struct.unpack("<ii", f.read(8))
        f.seek(4 * n_mels * n_bins, os.SEEK_CUR)
        (n_tokens,) = struct.unpack("<i", f.read(4))
        for _ in range(n_tokens):
            (length,) = struct.unpack("<i", f.read(4))
            f.seek(length, os.SEEK_CUR)
        tensors = {}
        while header := f.read(12):
            n_dims, name_length, ttype = struct.unpack("<iii", header)
            shape = tuple(reversed(struct.unpack(f"<{n_dims}i", f.read(4 * n_dims))))
            name = f.read(name_length).decode()
            count = int(np.prod(shape))
            size = {TENSOR_F32: 4 * count, TENSOR_F16: 2 * count}.get(ttype)
            if size is None:
                size = count // Q8_0_BLOCK * (2 + Q8_0_BLOCK)
            tensors[name] = (shape, ttype, f.tell())
            f.seek(size, os.SEEK_CUR)
    keys = ["n_vocab", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer"]
    keys += ["n_text_ctx", "n_text_state", "n_text_head", "n_text_layer", "n_mels", "ftype"]
    return {
        "hparams": dict(zip(keys, hparams, strict=True)),
        "mel_filters": (n_mels, n_bins),
        "n_tokens": n_tokens,
        "tensors": tensors,
    }
