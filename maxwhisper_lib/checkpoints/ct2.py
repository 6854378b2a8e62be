"""CTranslate2 Whisper folders (faster-whisper's format) -> canonical weights, and copying them.

A folder holds ``model.bin`` (or ``model.bin.part1``, ``.part2``... that concatenate to it),
``config.json`` (alignment heads, suppressed tokens), ``tokenizer.json`` and ``vocabulary.txt``.
Variable names follow ``ctranslate2.specs.whisper_spec.WhisperSpec``: fused QKV self-attention
(``linear_0``), cross-attention query (``linear_0``) plus fused KV (``linear_1``), layer norms as
``gamma``/``beta``, the output projection aliased to the token embedding.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..dims import ModelDimensions
from ..errors import WeightsError
from .canonical import WhisperWeights, sinusoids
from .catalog import guess_model_name
from .ct2_binary import Ct2Model, read_ct2_binary, write_ct2_binary
from .streams import ConcatenatedStream, describe_files, ordered_parts

MODEL_FILE = "model.bin"
WHISPER_SPEC = "WhisperSpec"
DEFAULT_AUDIO_CTX = 1500  # Whisper's encoder always sees 30 s = 1500 frames
SIDE_FILES = (
    "config.json",
    "tokenizer.json",
    "vocabulary.txt",
    "vocabulary.json",
    "preprocessor_config.json",
)
HEAD_DIM = 64  # every official Whisper uses 64-wide heads (fallback when num_heads is not stored)


@dataclass(frozen=True)
class Ct2Folder:
    """Where one CTranslate2 Whisper model lies: its model file(s) in order, and its side files."""

    model_files: tuple[Path, ...]
    folder: Path | None  # None for a lone model file: no config or tokenizer known

    @classmethod
    def from_path(cls, path: str | Path) -> Ct2Folder:
        """A folder with ``model.bin`` or numbered parts of it, or a ``model.bin`` file."""
        path = Path(path)
        if path.is_file():
            return cls((path,), path.parent if path.name == MODEL_FILE else None)
        if (path / MODEL_FILE).is_file():
            return cls((path / MODEL_FILE,), path)
        parts = ordered_parts(path, MODEL_FILE) if path.is_dir() else []
        if not parts:
            raise WeightsError(f"{path}: no {MODEL_FILE} (nor {MODEL_FILE}.part1, ...) there")
        return cls(tuple(parts), path)

    @property
    def description(self) -> str:
        return describe_files(self.model_files)

    def config(self) -> dict:
        """``config.json`` (empty when absent)."""
        if self.folder is None or not (self.folder / "config.json").is_file():
            return {}
        path = self.folder / "config.json"
        try:
            config = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as error:
            raise WeightsError(f"{path}: not valid JSON ({error})") from error
        if not isinstance(config, dict):
            raise WeightsError(f"{path}: expected a JSON object")
        return config

    @property
    def runnable(self) -> bool:
        """Whether faster-whisper can load it offline (it needs the tokenizer beside the model)."""
        return self.folder is not None and (self.folder / "tokenizer.json").is_file()

    def side_files(self) -> list[Path]:
        """The faster-whisper files beside the model: config, tokenizer, vocabulary..."""
        if self.folder is None:
            return []
        return [self.folder / n for n in SIDE_FILES if (self.folder / n).is_file()]


class _Variables:
    """Lookup of CT2 variables by name, dequantizing and naming the file in every error."""

    def __init__(self, model: Ct2Model) -> None:
        self.model = model
        self.values = model.variables

    def has(self, name: str) -> bool:
        return name in self.values

    def array(self, name: str) -> np.ndarray:
        if name not in self.values:
            raise WeightsError(f"{self.model.source}: missing tensor {name!r}")
        value = self.values[name]
        scale = self.values.get(f"{name}_scale")
        if value.dtype.kind in "iu" and scale is not None:  # int8/int16 quantized: dequantize
            scale = np.asarray(scale, np.float32)
            if scale.ndim:
                scale = scale.reshape((-1,) + (1,) * (value.ndim - 1))
            value = value.astype(np.float32) / scale
        if value.dtype.kind != "f":
            raise WeightsError(f"{self.model.source}: tensor {name!r} is {value.dtype}, not float")
        if not np.isfinite(value).all():
            raise WeightsError(f"{self.model.source}: tensor {name!r} holds NaN or infinite values")
        return value

    def scalar(self, name: str) -> int | None:
        if name not in self.values:
            return None
        value = self.values[name]
        if value.size != 1:
            raise WeightsError(
                f"{self.model.source}: {name!r} should be a scalar, has {value.shape}"
            )
        return int(value.reshape(-1)[0])

    def layer_count(self, stack: str) -> int:
        pattern = re.compile(rf"^{stack}/layer_(\d+)/")
        indices = {int(m[1]) for n in self.values if (m := pattern.match(n))}
        missing = sorted(set(range(max(indices, default=-1) + 1)) - indices)
        if missing:
            raise WeightsError(f"{self.model.source}: {stack} layer(s) {missing} are missing")
        return len(indices)


def _split(array: np.ndarray, parts: int, source: str, name: str) -> list[np.ndarray]:
    if array.shape[0] % parts:
        raise WeightsError(
            f"{source}: fused tensor {name!r} of shape {array.shape} cannot split in {parts}"
        )
    return [np.ascontiguousarray(p) for p in np.split(array, parts, axis=0)]


def _check_zero_key_bias(bias: np.ndarray, source: str, name: str) -> None:
    if np.any(bias != 0):
        raise WeightsError(
            f"{source}: the key slot of fused bias {name!r} is not zero (max |b| = "
            f"{float(np.abs(bias).max()):.3g}); Whisper's key projections have no bias, "
            "so this is not a Whisper model or the file is corrupt"
        )


def _dims(v: _Variables, source: str) -> ModelDimensions:
    conv1 = v.array("encoder/conv1/weight")
    embedding = v.array("decoder/embeddings/weight")
    n_audio_state, n_text_state = conv1.shape[0], embedding.shape[1]
    audio_ctx = (
        v.array("encoder/position_encodings/encodings").shape[0]
        if v.has("encoder/position_encodings/encodings")
        else DEFAULT_AUDIO_CTX
    )
    if conv1.ndim != 3:
        raise WeightsError(f"{source}: encoder/conv1/weight has shape {conv1.shape}, expected 3-D")
    return ModelDimensions(
        n_mels=conv1.shape[1],
        n_audio_ctx=audio_ctx,
        n_audio_state=n_audio_state,
        n_audio_head=v.scalar("encoder/num_heads") or n_audio_state // HEAD_DIM,
        n_audio_layer=v.layer_count("encoder"),
        n_vocab=embedding.shape[0],
        n_text_ctx=v.array("decoder/position_encodings/encodings").shape[0],
        n_text_state=n_text_state,
        n_text_head=v.scalar("decoder/num_heads") or n_text_state // HEAD_DIM,
        n_text_layer=v.layer_count("decoder"),
    )


def ct2_to_canonical(model: Ct2Model, config: dict, name: str | None = None) -> WhisperWeights:
    """Rename, unfuse and check CT2 Whisper variables into :class:`WhisperWeights`."""
    source = model.source
    if model.spec_name and model.spec_name != WHISPER_SPEC:
        raise WeightsError(f"{source}: a CTranslate2 {model.spec_name} model, not {WHISPER_SPEC}")
    v = _Variables(model)
    dims = _dims(v, source)
    out: dict[str, np.ndarray] = {}

    def linear(ct2: str, canonical: str, bias: bool = True) -> None:
        out[f"{canonical}.weight"] = v.array(f"{ct2}/weight")
        if bias:
            out[f"{canonical}.bias"] = v.array(f"{ct2}/bias")

    def norm(ct2: str, canonical: str) -> None:
        out[f"{canonical}.weight"] = v.array(f"{ct2}/gamma")
        out[f"{canonical}.bias"] = v.array(f"{ct2}/beta")

    def self_attention(ct2: str, canonical: str) -> None:
        fused_w, fused_b = f"{ct2}/linear_0/weight", f"{ct2}/linear_0/bias"
        q, k, w = _split(v.array(fused_w), 3, source, fused_w)
        qb, kb, vb = _split(v.array(fused_b), 3, source, fused_b)
        _check_zero_key_bias(kb, source, fused_b)
        out.update({f"{canonical}.query.weight": q, f"{canonical}.query.bias": qb})
        out.update({f"{canonical}.key.weight": k, f"{canonical}.value.weight": w})
        out[f"{canonical}.value.bias"] = vb
        linear(f"{ct2}/linear_1", f"{canonical}.out")
        norm(f"{ct2}/layer_norm", f"{canonical}_ln")

    def cross_attention(ct2: str, canonical: str) -> None:
        linear(f"{ct2}/linear_0", f"{canonical}.query")
        fused_w, fused_b = f"{ct2}/linear_1/weight", f"{ct2}/linear_1/bias"
        k, w = _split(v.array(fused_w), 2, source, fused_w)
        kb, vb = _split(v.array(fused_b), 2, source, fused_b)
        _check_zero_key_bias(kb, source, fused_b)
        out.update({f"{canonical}.key.weight": k, f"{canonical}.value.weight": w})
        out[f"{canonical}.value.bias"] = vb
        linear(f"{ct2}/linear_2", f"{canonical}.out")
        norm(f"{ct2}/layer_norm", f"{canonical}_ln")

    def mlp(ct2: str, canonical: str) -> None:
        linear(f"{ct2}/linear_0", f"{canonical}.mlp.0")
        linear(f"{ct2}/linear_1", f"{canonical}.mlp.2")
        norm(f"{ct2}/layer_norm", f"{canonical}.mlp_ln")

    linear("encoder/conv1", "encoder.conv1")
    linear("encoder/conv2", "encoder.conv2")
    if v.has("encoder/position_encodings/encodings"):
        out["encoder.positional_embedding"] = v.array("encoder/position_encodings/encodings")
    else:
        out["encoder.positional_embedding"] = sinusoids(dims.n_audio_ctx, dims.n_audio_state)
    for i in range(dims.n_audio_layer):
        self_attention(f"encoder/layer_{i}/self_attention", f"encoder.blocks.{i}.attn")
        mlp(f"encoder/layer_{i}/ffn", f"encoder.blocks.{i}")
    norm("encoder/layer_norm", "encoder.ln_post")

    out["decoder.token_embedding.weight"] = v.array("decoder/embeddings/weight")
    out["decoder.positional_embedding"] = v.array("decoder/position_encodings/encodings")
    for i in range(dims.n_text_layer):
        self_attention(f"decoder/layer_{i}/self_attention", f"decoder.blocks.{i}.attn")
        cross_attention(f"decoder/layer_{i}/attention", f"decoder.blocks.{i}.cross_attn")
        mlp(f"decoder/layer_{i}/ffn", f"decoder.blocks.{i}")
    norm("decoder/layer_norm", "decoder.ln")
    _check_tied_projection(v, source)

    # one dtype for the whole model: float16 only when every tensor was stored as float16
    dtypes = {a.dtype for a in out.values()}
    if len(dtypes) > 1:
        out = {k: a.astype(np.float32) for k, a in out.items()}
    heads = config.get("alignment_heads")
    stored = {model.stored_dtypes[k] for k, a in model.variables.items() if a.ndim}
    return WhisperWeights(
        name=name or guess_model_name(dims) or "whisper",
        dims=dims,
        tensors=out,
        alignment_heads=[(int(a), int(b)) for a, b in heads] if heads else None,
        source=source,
        metadata={
            "format": "ctranslate2",
            "source_checksum": model.checksum,
            "source_dtype": ",".join(sorted(stored)),
            "ct2_binary_version": str(model.binary_version),
            "ct2_spec_revision": str(model.spec_revision),
        },
    )


def _check_tied_projection(v: _Variables, source: str) -> None:
    """openai-whisper ties the output projection to the token embedding: refuse anything else."""
    if not v.has("decoder/projection/weight"):
        return
    if not np.array_equal(
        v.array("decoder/projection/weight"), v.array("decoder/embeddings/weight")
    ):
        raise WeightsError(
            f"{source}: decoder/projection/weight differs from the token embedding; "
            "openai-whisper ties them, so these weights cannot be represented"
        )
    if v.has("decoder/projection/bias") and np.any(v.array("decoder/projection/bias") != 0):
        raise WeightsError(
            f"{source}: decoder/projection/bias is not zero; Whisper has no output bias"
        )


def read_ct2(
    source: str | Path | Ct2Folder, name: str | None = None, progress: bool = False
) -> WhisperWeights:
    """Canonical weights from a CTranslate2 Whisper folder, ``model.bin`` file, or split parts."""
    folder = source if isinstance(source, Ct2Folder) else Ct2Folder.from_path(source)
    model = read_ct2_binary(folder.model_files, progress=progress)
    return ct2_to_canonical(model, folder.config(), name=name)


def read_ct2_parts(parts: Sequence[str | Path], name: str | None = None) -> WhisperWeights:
    """Canonical weights from ``model.bin`` split in ``parts`` (in order; side files by part 1)."""
    paths = tuple(Path(p) for p in parts)
    return read_ct2(Ct2Folder(paths, paths[0].parent), name=name)


def copy_ct2_folder(source: Ct2Folder, target: Path) -> Path:
    """A faster-whisper-ready copy of ``source`` in ``target``: side files and one ``model.bin``.

    Files are copied, never linked: writing into the copy must not touch the installed package.
    Parts are joined into one ``model.bin``.
    """
    target.mkdir(parents=True, exist_ok=True)
    for path in source.side_files():
        shutil.copyfile(path, target / path.name)
    if len(source.model_files) == 1:
        shutil.copyfile(source.model_files[0], target / MODEL_FILE)
    else:
        with (
            ConcatenatedStream(source.model_files) as stream,
            open(target / MODEL_FILE, "wb") as out,
        ):
            shutil.copyfileobj(stream, out, length=1 << 22)
    return target


def canonical_to_ct2(weights: WhisperWeights) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The inverse mapping: CT2 ``WhisperSpec`` variables and aliases holding ``weights``.

    Fuses QKV and KV (zero key bias slots) and adds the scalar attributes faster-whisper reads.
    """
    t = weights.tensors
    dims = weights.dims
    out: dict[str, np.ndarray] = {}

    def linear(canonical: str, ct2: str) -> None:
        out[f"{ct2}/weight"] = t[f"{canonical}.weight"]
        out[f"{ct2}/bias"] = t[f"{canonical}.bias"]

    def norm(canonical: str, ct2: str) -> None:
        out[f"{ct2}/gamma"], out[f"{ct2}/beta"] = t[f"{canonical}.weight"], t[f"{canonical}.bias"]

    def zeros_like(bias: np.ndarray) -> np.ndarray:
        return np.zeros_like(bias)

    def self_attention(canonical: str, ct2: str) -> None:
        qb = t[f"{canonical}.query.bias"]
        out[f"{ct2}/linear_0/weight"] = np.concatenate(
            [t[f"{canonical}.{n}.weight"] for n in ("query", "key", "value")]
        )
        out[f"{ct2}/linear_0/bias"] = np.concatenate(
            [qb, zeros_like(qb), t[f"{canonical}.value.bias"]]
        )
        linear(f"{canonical}.out", f"{ct2}/linear_1")
        norm(f"{canonical}_ln", f"{ct2}/layer_norm")

    def cross_attention(canonical: str, ct2: str) -> None:
        vb = t[f"{canonical}.value.bias"]
        linear(f"{canonical}.query", f"{ct2}/linear_0")
        out[f"{ct2}/linear_1/weight"] = np.concatenate(
            [t[f"{canonical}.key.weight"], t[f"{canonical}.value.weight"]]
        )
        out[f"{ct2}/linear_1/bias"] = np.concatenate([zeros_like(vb), vb])
        linear(f"{canonical}.out", f"{ct2}/linear_2")
        norm(f"{canonical}_ln", f"{ct2}/layer_norm")

    def mlp(canonical: str, ct2: str) -> None:
        linear(f"{canonical}.mlp.0", f"{ct2}/linear_0")
        linear(f"{canonical}.mlp.2", f"{ct2}/linear_1")
        norm(f"{canonical}.mlp_ln", f"{ct2}/layer_norm")

    linear("encoder.conv1", "encoder/conv1")
    linear("encoder.conv2", "encoder/conv2")
    out["encoder/position_encodings/encodings"] = t["encoder.positional_embedding"]
    out["encoder/num_heads"] = np.array(dims.n_audio_head, dtype=np.int16)
    for i in range(dims.n_audio_layer):
        self_attention(f"encoder.blocks.{i}.attn", f"encoder/layer_{i}/self_attention")
        mlp(f"encoder.blocks.{i}", f"encoder/layer_{i}/ffn")
    norm("encoder.ln_post", "encoder/layer_norm")
    out["decoder/embeddings/weight"] = t["decoder.token_embedding.weight"]
    out["decoder/position_encodings/encodings"] = t["decoder.positional_embedding"]
    out["decoder/num_heads"] = np.array(dims.n_text_head, dtype=np.int16)
    out["decoder/activation"] = np.array(3, dtype=np.int8)  # GELU
    out["decoder/pre_norm"] = np.array(1, dtype=np.int8)
    out["decoder/scale_embeddings"] = np.array(0, dtype=np.int8)
    for i in range(dims.n_text_layer):
        self_attention(f"decoder.blocks.{i}.attn", f"decoder/layer_{i}/self_attention")
        cross_attention(f"decoder.blocks.{i}.cross_attn", f"decoder/layer_{i}/attention")
        mlp(f"decoder.blocks.{i}", f"decoder/layer_{i}/ffn")
    norm("decoder.ln", "decoder/layer_norm")
    return out, {"decoder/projection/weight": "decoder/embeddings/weight"}


def write_ct2_model_bin(weights: WhisperWeights, path: str | Path) -> Path:
    """``weights`` as a CTranslate2 Whisper ``model.bin`` (no config or tokenizer files)."""
    variables, aliases = canonical_to_ct2(weights)
    return write_ct2_binary(path, variables, aliases, spec_name=WHISPER_SPEC)


def _byte_level_alphabet() -> dict[int, str]:
    """GPT-2's byte -> printable character table (the spelling of ``vocabulary.txt``)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    table = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in table:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


def ct2_vocabulary(dims: ModelDimensions) -> list[str]:
    """The ``vocabulary.txt`` lines of a model with ``dims``: every token id's bytes in GPT-2's
    byte-level spelling, special tokens (``<|endoftext|>``, timestamps...) by name."""
    from ..decoding.tokenizer import get_tokenizer

    encoding = get_tokenizer(dims).encoding
    if encoding.n_vocab != dims.n_vocab:
        raise WeightsError(f"the tokenizer has {encoding.n_vocab} tokens, the dims {dims.n_vocab}")
    alphabet = _byte_level_alphabet()
    return [
        "".join(alphabet[byte] for byte in encoding.decode_single_token_bytes(token))
        for token in range(dims.n_vocab)
    ]


def write_ct2_folder(weights: WhisperWeights, folder: str | Path) -> Path:
    """``weights`` as a CTranslate2 Whisper folder that ``ctranslate2.models.Whisper`` and
    faster-whisper load: ``model.bin`` and ``vocabulary.txt`` (written atomically)."""
    from ..atomic import atomic_folder

    vocabulary = ct2_vocabulary(weights.dims)
    with atomic_folder(Path(folder), overwrite=True) as staging:
        write_ct2_model_bin(weights, staging / MODEL_FILE)
        (staging / "vocabulary.txt").write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
    return Path(folder)
