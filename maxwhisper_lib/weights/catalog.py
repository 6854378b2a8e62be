"""OpenAI's published Whisper sizes: recognising a model from its dims, and its advertised size."""

from __future__ import annotations

from ..dims import ModelDimensions

# (n_audio_state, n_audio_layer, n_text_layer) -> size name, as in the Whisper paper / model card
_SIZES: dict[tuple[int, int, int], str] = {
    (384, 4, 4): "tiny",
    (512, 6, 6): "base",
    (768, 12, 12): "small",
    (1024, 24, 24): "medium",
    (1280, 32, 32): "large",
    (1280, 32, 4): "turbo",
}

# Parameter counts OpenAI publishes (README table), in millions.
PUBLISHED_PARAMETERS_M: dict[str, int] = {
    "tiny": 39,
    "base": 74,
    "small": 244,
    "medium": 769,
    "large": 1550,
    "turbo": 809,
}


def size_name(dims: ModelDimensions) -> str | None:
    """``tiny`` ... ``large``/``turbo`` for an official architecture, else None."""
    return _SIZES.get((dims.n_audio_state, dims.n_audio_layer, dims.n_text_layer))


def guess_model_name(dims: ModelDimensions) -> str | None:
    """openai-whisper's name for weights of these dims (``tiny.en``, ``base``, ``large-v3``...).

    Only the architecture is known, so ``large`` versions 1 and 2 are both called ``large``.
    """
    size = size_name(dims)
    if size is None:
        return None
    if size == "turbo":
        return "large-v3-turbo"
    if size == "large":
        return "large-v3" if dims.n_mels == 128 else "large"
    return size if dims.is_multilingual else f"{size}.en"


def published_parameters(dims: ModelDimensions) -> int | None:
    """The parameter count OpenAI publishes for this architecture (rounded to millions)."""
    size = size_name(dims)
    return PUBLISHED_PARAMETERS_M[size] * 1_000_000 if size else None
