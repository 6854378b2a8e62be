"""Whisper weights: read any source, extract a canonical copy, load it back.

>>> weights = load_weights("tiny.en")          # extracts on first use, then loads safetensors
>>> whisper.load_model(str(checkpoint_path("tiny.en")))   # the same weights in PyTorch
>>> faster_whisper.WhisperModel(str(ct2_path("tiny.en")))  # and in CTranslate2
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import paths
from ..errors import WeightsError
from .canonical import WhisperWeights, expected_shapes
from .sources import NAMED_MODELS, ct2_folder_of, detect_format, named_models, read_weights
from .store import (
    CT2_FOLDER,
    ensure_checkpoint,
    is_canonical,
    read_canonical,
    read_metadata,
    write_canonical,
)

__all__ = [
    "WeightsError",
    "WhisperWeights",
    "checkpoint_path",
    "ct2_path",
    "detect_format",
    "expected_shapes",
    "extract_weights",
    "ggml_path",
    "is_canonical",
    "load_weights",
    "model_folder",
    "named_models",
    "read_canonical",
    "read_metadata",
    "read_weights",
]


def _root(weights_dir: str | Path | None) -> Path:
    return Path(weights_dir) if weights_dir is not None else paths.weights_dir()


def _kept(folder: Path, dtype: str | None) -> Path:
    """An existing extracted copy, unless it holds another dtype than the one asked for."""
    held = read_metadata(folder).get("dtype")
    if dtype is not None and held != str(np.dtype(dtype)):
        raise WeightsError(
            f"{folder}: already extracted as {held}, not {dtype}; pass overwrite=True "
            "(CLI: --overwrite) to re-extract, or choose another output folder"
        )
    return folder


def extract_weights(
    source: str | Path = "tiny.en",
    output_dir: str | Path | None = None,
    dtype: str | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Read ``source`` and write its canonical folder; return the folder.

    ``output_dir`` defaults to ``paths.weights_dir() / <model name>``; ``dtype`` (``float16`` or
    ``float32``) defaults to the source's. An existing extracted model is kept unless ``overwrite``.
    """
    named = _is_named(source)
    folder = (
        Path(output_dir) if output_dir is not None else (_root(None) / source if named else None)
    )
    if folder is not None and is_canonical(folder) and not overwrite:
        return _kept(folder, dtype)
    weights = read_weights(source, progress=progress)
    ct2 = ct2_folder_of(source)
    folder = folder if folder is not None else _root(None) / weights.name
    if is_canonical(folder) and not overwrite:
        return _kept(folder, dtype)
    return write_canonical(
        weights,
        folder,
        dtype=dtype,
        ct2_source=ct2 if ct2 is not None and ct2.runnable else None,
        overwrite=overwrite,
        progress=progress,
    )


def _is_named(model: str | Path) -> bool:
    return isinstance(model, str) and model in NAMED_MODELS


def model_folder(model: str | Path = "tiny.en", weights_dir: str | Path | None = None) -> Path:
    """The extracted folder of ``model``: a named model (extracted on first use), an extracted
    folder, or the name of a model already extracted under ``weights_dir``."""
    folder = _root(weights_dir) / str(model)
    if _is_named(model):
        if not is_canonical(folder):
            extract_weights(model, output_dir=folder)
        return folder
    if is_canonical(model):
        return Path(model)
    if is_canonical(folder):
        return folder
    raise WeightsError(
        f"{model!r} is neither a named model ({', '.join(NAMED_MODELS)}) nor an extracted folder "
        f"(also looked in {_root(weights_dir)}); extract it first with extract_weights()"
    )


def load_weights(
    model: str | Path = "tiny.en", weights_dir: str | Path | None = None
) -> WhisperWeights:
    """Canonical weights of ``model``, from its extracted copy (extracting it first if needed).

    ``model`` is a named model (``tiny.en``, ``base``) or an extracted folder; any other source path
    is read directly (:func:`read_weights`), without being stored.
    """
    if _is_named(model) or is_canonical(model) or is_canonical(_root(weights_dir) / str(model)):
        return read_canonical(model_folder(model, weights_dir))
    return read_weights(model)


def checkpoint_path(model: str | Path = "tiny.en", weights_dir: str | Path | None = None) -> Path:
    """The ``.pt`` file of ``model`` for ``whisper.load_model(path)`` (extracting if needed)."""
    return ensure_checkpoint(model_folder(model, weights_dir))


def ggml_path(
    model: str | Path = "tiny.en", kind: str = "f16", weights_dir: str | Path | None = None
) -> Path:
    """The whisper.cpp ggml file of ``model`` (``ggml-<kind>.bin`` in its extracted folder),
    written from the canonical weights on first use (:mod:`.ggml`)."""
    from .ggml import write_ggml

    folder = model_folder(model, weights_dir)
    path = folder / f"ggml-{kind}.bin"
    if not path.is_file():
        write_ggml(read_canonical(folder), path, kind)
    return path


def ct2_path(model: str | Path = "tiny.en", weights_dir: str | Path | None = None) -> Path:
    """The CTranslate2 folder of ``model`` for faster-whisper (extracting if needed)."""
    folder = model_folder(model, weights_dir)
    ct2 = folder / CT2_FOLDER
    if not (ct2 / "model.bin").is_file():
        source = read_metadata(folder).get("source_description", "?")
        raise WeightsError(
            f"{folder}: no CTranslate2 copy (extracted from a non-CT2 source: {source})"
        )
    return ct2
