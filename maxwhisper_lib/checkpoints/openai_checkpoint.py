"""openai-whisper ``.pt`` checkpoints (``{"dims": ..., "model_state_dict": ...}``): read, write.

The files ``whisper.load_model(path)`` loads; the state-dict names are already canonical.
"""

from __future__ import annotations

import base64
import gzip
import pickle
import zipfile
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..dims import ModelDimensions
from ..errors import WeightsError
from .canonical import WhisperWeights
from .streams import file_sha256


def _to_numpy(name: str, tensor, path: Path) -> np.ndarray:
    import torch

    if not isinstance(tensor, torch.Tensor):
        raise WeightsError(
            f"{path}: state-dict entry {name!r} is a {type(tensor).__name__}, not a tensor"
        )
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return tensor.detach().cpu().contiguous().numpy()


def known_alignment_heads(model_name: str, dims: ModelDimensions) -> list[tuple[int, int]] | None:
    """openai-whisper's published alignment heads for ``model_name`` (``tiny.en``...), if any."""
    import whisper

    dump = whisper._ALIGNMENT_HEADS.get(model_name)
    if dump is None:
        return None
    mask = np.frombuffer(gzip.decompress(base64.b85decode(dump)), dtype=bool)
    if mask.size != dims.n_text_layer * dims.n_text_head:
        return None
    layers, heads = np.nonzero(mask.reshape(dims.n_text_layer, dims.n_text_head))
    return [(int(a), int(b)) for a, b in zip(layers, heads, strict=True)]


def read_openai_checkpoint(path: str | Path, name: str | None = None) -> WhisperWeights:
    """Canonical weights from an openai-whisper checkpoint.

    Alignment heads come from the file's ``alignment_heads`` entry (this package writes one), else
    from openai-whisper's table when the file is named like an official model (``tiny.en.pt``).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, OSError) as error:
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({error})") from error
    if not isinstance(checkpoint, dict) or not {"dims", "model_state_dict"} <= set(checkpoint):
        raise WeightsError(
            f"{path}: not an openai-whisper checkpoint (needs 'dims' and 'model_state_dict')"
        )
    try:
        dims = ModelDimensions.from_dict(checkpoint["dims"])
    except (ValueError, TypeError) as error:
        raise WeightsError(f"{path}: bad 'dims' ({error})") from error
    tensors = {k: _to_numpy(k, t, path) for k, t in checkpoint["model_state_dict"].items()}
    if "alignment_heads" in tensors:  # a buffer some exports keep: a (layers, heads) mask
        tensors.pop("alignment_heads")
    model_name = name or path.stem
    heads = checkpoint.get("alignment_heads")
    heads = (
        [tuple(map(int, h)) for h in heads] if heads else known_alignment_heads(model_name, dims)
    )
    return WhisperWeights(
        name=model_name,
        dims=dims,
        tensors=tensors,
        alignment_heads=heads,
        source=str(path),
        metadata={
            "format": "openai-whisper",
            "source_checksum": file_sha256([path]),
            "source_dtype": ",".join(sorted({str(a.dtype) for a in tensors.values()})),
        },
    )


def write_openai_checkpoint(weights: WhisperWeights, path: str | Path) -> Path:
    """Save ``weights`` (their dtype) as a checkpoint ``whisper.load_model(path)`` accepts.

    Written to a temporary name beside ``path`` and renamed, so a failure leaves no partial file.
    """
    import torch  # imported here: reading safetensors stores should not pay for torch

    path = Path(path)
    checkpoint = {
        "dims": weights.dims.to_dict(),
        "model_state_dict": {
            k: torch.from_numpy(np.require(v, requirements=["C", "W"]))
            for k, v in weights.tensors.items()
        },
    }
    if weights.alignment_heads:
        checkpoint["alignment_heads"] = [list(h) for h in weights.alignment_heads]
    with atomic_path(path) as partial:
        torch.save(checkpoint, partial)
    return path
