"""Text as WER sees it: openai-whisper's English normaliser, and word error rate (jiwer)."""

from __future__ import annotations

import functools
from collections.abc import Sequence


@functools.cache
def _normalizer():
    from whisper.normalizers import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize(text: str) -> str:
    """openai-whisper's English normalisation (what WER is computed on)."""
    return _normalizer()(text)


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER of normalised texts; NaN when no reference has any word.

    Needs jiwer (the ``lab`` extra, or ``pip install jiwer``)."""
    import jiwer

    pairs = [(normalize(r), normalize(h)) for r, h in zip(references, hypotheses, strict=True) if r]
    pairs = [(r, h) for r, h in pairs if r.strip()]
    if not pairs:
        return float("nan")
    return float(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]))
