"""Live audio sources: raw PCM from a pipe (a microphone through any recorder), and a file played
at its real speed (what a live transcriber would hear)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import BinaryIO

import numpy as np

from ..errors import AudioError
from .constants import SAMPLE_RATE

PCM_FORMAT = "16 kHz mono signed 16-bit little-endian"
"""What ``arecord -f S16_LE -r 16000 -c 1`` and ``ffmpeg ... -f s16le -ar 16000 -ac 1 -``
write."""
PIECE_SECONDS = 0.1
"""How much audio a live source hands on at a time."""


def pcm_to_float(data: bytes) -> np.ndarray:
    """16-bit little-endian PCM bytes as float32 samples in [-1, 1] (an even byte count)."""
    if len(data) % 2:
        raise AudioError(f"raw PCM must be whole 16-bit samples ({PCM_FORMAT}): got an odd byte")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def pcm_pieces(stream: BinaryIO, piece_seconds: float = PIECE_SECONDS) -> Iterator[np.ndarray]:
    """Samples from a pipe of raw PCM (:data:`PCM_FORMAT`) as they come, ``piece_seconds`` at a
    time (the last piece shorter); an odd byte at the end is an :class:`AudioError`."""
    size = max(2, int(piece_seconds * SAMPLE_RATE) * 2)
    read = getattr(stream, "read1", stream.read)  # what has arrived, without waiting for more
    pending = b""
    while True:
        data = read(size - len(pending))
        if not data:
            break
        pending += data
        whole = len(pending) - len(pending) % 2
        if whole:
            yield pcm_to_float(pending[:whole])
            pending = pending[whole:]
    if pending:
        yield pcm_to_float(pending)


def played(
    samples: np.ndarray | Iterable[np.ndarray],
    speed: float = 1.0,
    piece_seconds: float = PIECE_SECONDS,
    clock=time.monotonic,
    sleep=time.sleep,
) -> Iterator[np.ndarray]:
    """``samples`` (whole, or as pieces) handed on ``piece_seconds`` at a time at ``speed``
    times real time: each piece once its last sample would have been heard."""
    if speed <= 0:
        raise ValueError(f"speed must be positive, got {speed}")
    pieces = [samples] if isinstance(samples, np.ndarray) else samples
    step = max(1, int(piece_seconds * SAMPLE_RATE))
    start, sent = clock(), 0
    for piece in pieces:
        for at in range(0, len(piece), step):
            part = piece[at : at + step]
            sent += part.size
            wait = start + sent / SAMPLE_RATE / speed - clock()
            if wait > 0:
                sleep(wait)
            yield part


__all__ = ["PCM_FORMAT", "PIECE_SECONDS", "pcm_pieces", "pcm_to_float", "played"]
