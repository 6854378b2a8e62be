"""Cross-checks of extracted weights against the two established runtimes on real speech.

openai-whisper (PyTorch) runs the extracted ``.pt``; faster-whisper (CTranslate2) runs the
original CT2 files. Both decode greedily (temperature 0, one beam) in float32. Score against
the manifest's references with :func:`maxwhisper_lib.decoding.text.normalize`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def openai_whisper_transcript(checkpoint: str | Path, audio: np.ndarray, language="en") -> str:
    """Greedy float32 transcript from ``whisper.load_model(checkpoint)`` on CPU."""
    from ..decoding.reference import load_openai_whisper

    model = load_openai_whisper(checkpoint, device="cpu")
    result = model.transcribe(audio, fp16=False, temperature=0.0, language=language)
    return result["text"].strip()


def faster_whisper_transcript(
    ct2_folder: str | Path, audio: np.ndarray, language="en", cpu_threads: int = 2
) -> str:
    """Greedy float32 transcript from faster-whisper on the CTranslate2 folder, on CPU."""
    from faster_whisper import WhisperModel

    model = WhisperModel(
        str(ct2_folder), device="cpu", compute_type="float32", cpu_threads=cpu_threads
    )
    segments, _ = model.transcribe(audio, beam_size=1, temperature=0.0, language=language)
    return " ".join(segment.text.strip() for segment in segments)
