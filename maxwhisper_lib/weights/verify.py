"""Cross-checks of extracted weights against the two established runtimes on real speech.

openai-whisper (PyTorch) runs the extracted ``.pt``; faster-whisper (CTranslate2) runs the
original CT2 files. Both decode greedily (temperature 0, one beam) in float32.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .. import paths
from ..errors import MaxWhisperError


def manifest_reference(clip: str) -> str:
    """The reference transcript of ``clip`` (its ``id`` in ``data/manifest.csv``)."""
    manifest = paths.data_dir() / "manifest.csv"
    with open(manifest, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["id"] == clip:
                return row["reference_text"]
    raise MaxWhisperError(f"{manifest}: no clip {clip!r}")


def normalized(text: str) -> str:
    """openai-whisper's English normalisation, as used to score references."""
    from whisper.normalizers import EnglishTextNormalizer

    return EnglishTextNormalizer()(text)


def openai_whisper_transcript(checkpoint: str | Path, audio: np.ndarray, language="en") -> str:
    """Greedy float32 transcript from ``whisper.load_model(checkpoint)`` on CPU."""
    import whisper

    model = whisper.load_model(str(checkpoint), device="cpu")
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
