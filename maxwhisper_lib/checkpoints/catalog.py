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
    (1280, 32, 2): "distil-large",
}

# Parameter counts OpenAI publishes (README table), in millions.
PUBLISHED_PARAMETERS_M: dict[str, int] = {
    "tiny": 39,
    "base": 74,
    "small": 244,
    "medium": 769,
    "large": 1550,
    "turbo": 809,
    "distil-large": 756,  # distil-whisper's model card
}


def size_name(dims: ModelDimensions) -> str | None:
    """``tiny`` ... ``large``/``turbo``/``distil-large`` for an official architecture, else
    None."""
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
    if size == "distil-large":
        return "distil-large-v3" if dims.n_mels == 128 else "distil-large-v2"
    if size == "large":
        return "large-v3" if dims.n_mels == 128 else "large"
    return size if dims.is_multilingual else f"{size}.en"


def published_parameters(dims: ModelDimensions) -> int | None:
    """The parameter count OpenAI publishes for this architecture (rounded to millions)."""
    size = size_name(dims)
    return PUBLISHED_PARAMETERS_M[size] * 1_000_000 if size else None


# name -> (width, heads, encoder blocks, decoder blocks, mel bins, vocabulary)
_OFFICIAL: dict[str, tuple[int, int, int, int, int, int]] = {
    "tiny": (384, 6, 4, 4, 80, 51865),
    "base": (512, 8, 6, 6, 80, 51865),
    "small": (768, 12, 12, 12, 80, 51865),
    "medium": (1024, 16, 24, 24, 80, 51865),
    "large-v1": (1280, 20, 32, 32, 80, 51865),
    "large-v2": (1280, 20, 32, 32, 80, 51865),
    "large-v3": (1280, 20, 32, 32, 128, 51866),
    "large-v3-turbo": (1280, 20, 32, 4, 128, 51866),
    "distil-large-v2": (1280, 20, 32, 2, 80, 51865),
    "distil-large-v3": (1280, 20, 32, 2, 128, 51866),
}
ALIASES = {"large": "large-v3", "turbo": "large-v3-turbo"}
OFFICIAL_NAMES = (
    *(f"{n}.en" for n in ("tiny", "base", "small", "medium")),
    *_OFFICIAL,
    *ALIASES,
)
"""Every checkpoint name :func:`official_dims` knows (openai-whisper's, distil-whisper's)."""


def official_dims(name: str, max_layers: int | None = None) -> ModelDimensions:
    """The dims of the official checkpoint ``name`` (``tiny.en`` ... ``large-v3``, ``turbo``,
    ``distil-large-v3``): English-only ``.en`` models have 51,864 tokens, large-v3 and its
    descendants 128 mel bins and 51,866 tokens. ``max_layers`` cuts both stacks to at most that
    many blocks (the short versions CI checks at full width)."""
    base = ALIASES.get(name, name)
    english = base.endswith(".en")
    key = base.removesuffix(".en")
    if key not in _OFFICIAL or (english and key not in ("tiny", "base", "small", "medium")):
        raise KeyError(f"unknown Whisper checkpoint {name!r}; known: {', '.join(OFFICIAL_NAMES)}")
    width, heads, encoder, decoder, mels, vocab = _OFFICIAL[key]
    if max_layers is not None:
        encoder, decoder = min(encoder, max_layers), min(decoder, max_layers)
    return ModelDimensions(
        n_mels=mels,
        n_audio_ctx=1500,
        n_audio_state=width,
        n_audio_head=heads,
        n_audio_layer=encoder,
        n_vocab=51864 if english else vocab,
        n_text_ctx=448,
        n_text_state=width,
        n_text_head=heads,
        n_text_layer=decoder,
    )
