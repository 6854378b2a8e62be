"""Whisper's tokenizers: openai-whisper's tiktoken-based ``Tokenizer``, picked for a model's dims.

openai-whisper ships both vocabularies (``gpt2.tiktoken`` for English-only models,
``multilingual.tiktoken`` for the others) and the ``Tokenizer`` that decoding needs: ``sot``,
``eot``, ``sot_prev``, ``sot_lm``, ``no_speech``, ``no_timestamps``, ``timestamp_begin``,
``sot_sequence``, ``all_language_tokens``, ``non_speech_tokens``, ``encode``/``decode``,
``decode_with_timestamps`` and ``split_to_word_tokens``. This module reuses it as is, choosing
the vocabulary and language count from :class:`~maxwhisper_lib.dims.ModelDimensions`, and adds
the language-name and timestamp arithmetic around it.
"""

from __future__ import annotations

from ..dims import ModelDimensions
from ..errors import DecodingOptionsError
from .whisper_parts import module

_whisper_tokenizer_module = module("tokenizer")  # openai-whisper's, without torch
LANGUAGES = _whisper_tokenizer_module.LANGUAGES
TO_LANGUAGE_CODE = _whisper_tokenizer_module.TO_LANGUAGE_CODE
Tokenizer = _whisper_tokenizer_module.Tokenizer
_whisper_tokenizer = _whisper_tokenizer_module.get_tokenizer

TIMESTAMP_RESOLUTION = 0.02
"""Seconds between consecutive timestamp tokens (``<|0.00|>``, ``<|0.02|>``, ...)."""
N_TIMESTAMPS = 1501
"""Timestamp tokens, ``<|0.00|>`` to ``<|30.00|>``."""
TASKS = ("transcribe", "translate")

__all__ = [
    "LANGUAGES",
    "N_TIMESTAMPS",
    "TASKS",
    "TIMESTAMP_RESOLUTION",
    "Tokenizer",
    "get_tokenizer",
    "language_code",
    "language_name",
    "supported_languages",
    "timestamp_seconds",
    "timestamp_token",
]


def get_tokenizer(
    dims: ModelDimensions, *, language: str | None = None, task: str | None = None
) -> Tokenizer:
    """The tokenizer of the model with ``dims``.

    Multilingual models get the multilingual vocabulary with ``dims.num_languages`` language
    tokens and an ``sot_sequence`` of ``<|startoftranscript|><|lang|><|task|>`` (language
    ``en`` and task ``transcribe`` unless given); English-only models get the GPT-2 vocabulary
    and a bare ``<|startoftranscript|>`` (``language`` must then be English or None, and
    ``task`` ``transcribe`` or None). ``language`` is a code or a name (``"de"``, ``"German"``).
    Tokenizers are cached, so repeated calls are free.
    """
    if task is not None and task not in TASKS:
        raise DecodingOptionsError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    code = language_code(language, dims) if language is not None else None
    if not dims.is_multilingual:
        if code not in (None, "en"):
            raise DecodingOptionsError(
                f"this English-only model cannot take language {language!r}; use a multilingual one"
            )
        if task == "translate":
            raise DecodingOptionsError("this English-only model cannot translate")
        return _whisper_tokenizer(False, num_languages=dims.num_languages)
    return _whisper_tokenizer(True, num_languages=dims.num_languages, language=code, task=task)


def supported_languages(dims: ModelDimensions) -> tuple[str, ...]:
    """Language codes of a model's language tokens, in token order (``("en",)`` if English-only)."""
    if not dims.is_multilingual:
        return ("en",)
    return tuple(LANGUAGES)[: dims.num_languages]


def language_code(language: str, dims: ModelDimensions | None = None) -> str:
    """The code of ``language`` given as a code, a name or an alias (``"Castilian"`` -> ``es``).

    With ``dims``, also checks that the model has a token for it.
    """
    key = language.strip().lower()
    code = key if key in LANGUAGES else TO_LANGUAGE_CODE.get(key)
    if code is None:
        raise DecodingOptionsError(f"unknown language {language!r}")
    if dims is not None and dims.is_multilingual and code not in supported_languages(dims):
        raise DecodingOptionsError(
            f"language {language!r} has no token in this model ({dims.num_languages} languages)"
        )
    return code


def language_name(code: str) -> str:
    """The English name of a language code, as openai-whisper spells it (``de`` -> ``german``)."""
    if code not in LANGUAGES:
        raise DecodingOptionsError(f"unknown language code {code!r}")
    return LANGUAGES[code]


def timestamp_token(tokenizer: Tokenizer, seconds: float) -> int:
    """The timestamp token nearest to ``seconds`` from the window start (0 to 30 s)."""
    step = round(seconds / TIMESTAMP_RESOLUTION)
    if not 0 <= step < N_TIMESTAMPS:
        raise ValueError(f"{seconds} s is outside a window's timestamps (0 to 30 s)")
    return tokenizer.timestamp_begin + step


def timestamp_seconds(tokenizer: Tokenizer, token: int) -> float:
    """Seconds from the window start that the timestamp ``token`` stands for."""
    step = token - tokenizer.timestamp_begin
    if not 0 <= step < N_TIMESTAMPS:
        raise ValueError(f"token {token} is not a timestamp token")
    return step * TIMESTAMP_RESOLUTION
