"""Audio front end: decode any common container/codec with PyAV, mix to mono, resample to 16 kHz."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from .errors import AudioError

SAMPLE_RATE = 16000


def load_audio(path: str | Path, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Decode ``path`` to mono float32 samples at ``sr`` Hz in [-1, 1].

    Decodes and resamples with libav's own resampler to signed 16-bit, as openai-whisper's
    ``load_audio`` gets it from the ffmpeg command line, so the samples match what it would see.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioError(f"{path}: no audio stream")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=sr)
            chunks = []
            for frame in container.decode(audio=0):
                chunks.extend(r.to_ndarray() for r in resampler.resample(frame))
            chunks.extend(r.to_ndarray() for r in resampler.resample(None))
    except av.FFmpegError as error:
        raise AudioError(f"{path}: cannot decode audio ({error})") from error
    if not chunks:
        raise AudioError(f"{path}: the audio stream is empty")
    samples = np.concatenate([c.reshape(-1) for c in chunks])
    return samples.astype(np.float32) / 32768.0
