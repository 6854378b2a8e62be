"""The canonical store: one folder per model, written atomically, read back fast.

``<folder>/`` holds ``model.safetensors`` (openai-whisper names), ``dims.json``, ``metadata.json``,
``<model>.pt`` (for ``whisper.load_model``) and, for CTranslate2 sources, ``ct2/`` (for
faster-whisper). Everything is written into a hidden temporary folder beside the target and
renamed into place, so after a failure no half-written model remains.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file
from tqdm.auto import tqdm

from .. import __version__ as package_version
from ..atomic import atomic_folder
from ..dims import ModelDimensions
from ..errors import WeightsError
from .canonical import WhisperWeights
from .ct2 import Ct2Folder, copy_ct2_folder
from .inspect import tensors_checksum
from .openai_checkpoint import write_openai_checkpoint

FORMAT_VERSION = 1
SAFETENSORS_FILE = "model.safetensors"
DIMS_FILE = "dims.json"
METADATA_FILE = "metadata.json"
CT2_FOLDER = "ct2"
ALLOWED_DTYPES = ("float16", "float32")


def is_canonical(folder: str | Path) -> bool:
    """Whether ``folder`` holds a complete extracted model."""
    folder = Path(folder)
    return all((folder / f).is_file() for f in (SAFETENSORS_FILE, DIMS_FILE, METADATA_FILE))


def read_metadata(folder: str | Path) -> dict:
    path = Path(folder) / METADATA_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as error:
        raise WeightsError(f"{path}: missing; {folder} is not an extracted model") from error
    except ValueError as error:
        raise WeightsError(f"{path}: not valid JSON ({error})") from error


def tokenizer_info(dims: ModelDimensions) -> dict[str, object]:
    """Which openai-whisper tokenizer these weights need, with its key special tokens."""
    from whisper.tokenizer import get_tokenizer

    tokenizer = get_tokenizer(dims.is_multilingual, num_languages=dims.num_languages)
    return {
        "encoding": tokenizer.encoding.name,
        "multilingual": dims.is_multilingual,
        "num_languages": dims.num_languages,
        "sot": tokenizer.sot,
        "eot": tokenizer.eot,
        "no_timestamps": tokenizer.no_timestamps,
        "timestamp_begin": tokenizer.timestamp_begin,
    }


def _cast(weights: WhisperWeights, dtype: str | None) -> WhisperWeights:
    if dtype is None:
        return weights
    if str(np.dtype(dtype)) not in ALLOWED_DTYPES:
        raise WeightsError(
            f"dtype {dtype!r} not supported; choose one of {', '.join(ALLOWED_DTYPES)}"
        )
    return weights.astype(np.dtype(dtype))


def _metadata(weights: WhisperWeights, has_ct2: bool) -> dict:
    dims = weights.dims
    dtypes = sorted({str(a.dtype) for a in weights.tensors.values()})
    extra = dict(weights.metadata)
    return {
        "format_version": FORMAT_VERSION,
        "model": weights.name,
        "source": weights.source,
        "source_format": extra.pop("format", "unknown"),
        "source_description": extra.pop("source_description", weights.source),
        "source_checksum": extra.pop("source_checksum", None),
        "source_dtype": extra.pop("source_dtype", None),
        "dtype": ",".join(dtypes),
        "tensors_checksum": tensors_checksum(weights),
        "parameter_count": weights.parameter_count,
        "alignment_heads": [list(h) for h in weights.alignment_heads]
        if weights.alignment_heads
        else None,
        "multilingual": dims.is_multilingual,
        "num_languages": dims.num_languages,
        "tokenizer": tokenizer_info(dims),
        "checkpoint": f"{weights.name}.pt",
        "ct2_folder": CT2_FOLDER if has_ct2 else None,
        "source_details": extra,
        "written_by": f"maxwhisper-lib {package_version}",
    }


def _replaceable(folder: Path) -> bool:
    return (
        not folder.exists()
        or is_canonical(folder)
        or (folder.is_dir() and not any(folder.iterdir()))
    )


def write_canonical(
    weights: WhisperWeights,
    folder: str | Path,
    dtype: str | None = None,
    ct2_source: Ct2Folder | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Write ``weights`` (cast to ``dtype`` if given) as a canonical folder, atomically.

    An existing extracted model is kept unless ``overwrite``; a non-empty folder that is not an
    extracted model is never replaced.
    """
    folder = Path(folder)
    if is_canonical(folder) and not overwrite:
        return folder
    if not _replaceable(folder):
        raise WeightsError(
            f"{folder}: exists and is not an extracted model; refusing to replace it"
        )
    weights = _cast(weights, dtype)
    steps = [SAFETENSORS_FILE, DIMS_FILE, f"{weights.name}.pt", METADATA_FILE]
    steps[-1:-1] = [f"{CT2_FOLDER}/"] if ct2_source is not None else []
    with (
        atomic_folder(folder, overwrite, is_complete=is_canonical) as partial,
        tqdm(steps, desc=f"writing {folder.name}", disable=not progress) as bar,
    ):
        for step in bar:
            bar.set_postfix_str(step)
            if step == SAFETENSORS_FILE:
                tensors = {k: np.ascontiguousarray(v) for k, v in weights.tensors.items()}
                save_file(tensors, str(partial / step), metadata={"format": "openai-whisper"})
                (partial / step).chmod(0o644)  # safetensors creates it owner-only
            elif step == DIMS_FILE:
                weights.dims.save(partial / step)
            elif step.endswith(".pt"):
                write_openai_checkpoint(weights, partial / step)
            elif step == METADATA_FILE:
                metadata = _metadata(weights, has_ct2=ct2_source is not None)
                (partial / step).write_text(json.dumps(metadata, indent=2) + "\n")
            else:
                copy_ct2_folder(ct2_source, partial / CT2_FOLDER)
    return folder


def read_canonical(folder: str | Path) -> WhisperWeights:
    """The weights of an extracted folder, exactly as written."""
    folder = Path(folder)
    if not is_canonical(folder):
        raise WeightsError(
            f"{folder}: not an extracted model "
            f"(needs {SAFETENSORS_FILE}, {DIMS_FILE}, {METADATA_FILE})"
        )
    metadata = read_metadata(folder)
    try:
        dims = ModelDimensions.load(folder / DIMS_FILE)
    except (ValueError, TypeError) as error:
        raise WeightsError(f"{folder / DIMS_FILE}: bad model dimensions ({error})") from error
    try:
        tensors = load_file(str(folder / SAFETENSORS_FILE))
    except (SafetensorError, OSError) as error:
        raise WeightsError(f"{folder / SAFETENSORS_FILE}: cannot read ({error})") from error
    heads = metadata.get("alignment_heads")
    return WhisperWeights(
        name=metadata.get("model", folder.name),
        dims=dims,
        tensors=tensors,
        alignment_heads=[(int(a), int(b)) for a, b in heads] if heads else None,
        source=str(folder),
        metadata={
            "format": "canonical",
            "source_description": str(metadata.get("source_description", "")),
            "source_checksum": str(metadata.get("source_checksum", "")),
            "tensors_checksum": str(metadata.get("tensors_checksum", "")),
        },
    )


def ensure_checkpoint(folder: str | Path) -> Path:
    """The folder's ``<model>.pt``, rewritten from ``model.safetensors`` if it went missing."""
    folder = Path(folder)
    path = folder / read_metadata(folder).get("checkpoint", f"{folder.name}.pt")
    if not path.is_file():
        write_openai_checkpoint(read_canonical(folder), path)
    return path
