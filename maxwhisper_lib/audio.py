"""Audio front end: decode any common container/codec with PyAV, mix to mono, resample to 16 kHz.

:func:`load_audio` gives the samples openai-whisper's ``load_audio`` gets from the ffmpeg command
line (``ffmpeg -i FILE -f s16le -ac 1 -ar 16000 -``): the same libav decoders, the same
libswresample defaults for the down-mix and the resampling, signed 16-bit output scaled to
[-1, 1), and, like the command line, packets that fail to decode are skipped rather than fatal.
Every failure is an :class:`~maxwhisper_lib.errors.AudioError` with a one-line message that
names the source.
"""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np

from .errors import AudioError

SAMPLE_RATE = 16000
SILENCE_PEAK = 1e-4
"""Peak amplitude (about -80 dBFS, three 16-bit steps) at or below which audio counts as silent."""

AudioSource = str | Path | bytes | bytearray | np.ndarray


def load_audio(
    source: AudioSource,
    sr: int = SAMPLE_RATE,
    *,
    reject_silent: bool = False,
    name: str | None = None,
) -> np.ndarray:
    """Mono float32 samples at ``sr`` Hz in [-1, 1) from a file, encoded bytes or an array.

    ``source`` is a path, the bytes of an encoded file, or an array of samples already at
    ``sr`` Hz (1-D; float in [-1, 1] or int16), which is checked and returned as float32.
    ``reject_silent`` raises :class:`AudioError` for audio whose peak is at most
    :data:`SILENCE_PEAK`. ``name`` labels the source in messages (default: the path, or
    ``<bytes>`` / ``<array>``).
    """
    if isinstance(source, np.ndarray):
        label = name or "<array>"
        samples = _as_samples(source, label)
    elif isinstance(source, bytes | bytearray):
        label = name or "<bytes>"
        if not source:
            raise AudioError(f"{label}: empty (0 bytes)")
        samples = _decode(io.BytesIO(bytes(source)), label, sr)
    else:
        path = Path(source)
        label = name or str(path)
        if not path.exists():
            raise AudioError(f"{label}: no such file")
        if not path.is_file():
            raise AudioError(f"{label}: not a file")
        if path.stat().st_size == 0:
            raise AudioError(f"{label}: empty file (0 bytes)")
        samples = _decode(str(path), label, sr)
    if reject_silent:
        check_audible(samples, label)
    return samples


def check_audible(samples: np.ndarray, name: str, threshold: float = SILENCE_PEAK) -> None:
    """Raise :class:`AudioError` when every sample of ``samples`` is within ``threshold`` of 0."""
    if samples.size == 0:
        raise AudioError(f"{name}: no audio samples")
    peak = float(np.max(np.abs(samples)))
    if peak <= threshold:
        level = "digital silence" if peak == 0 else f"peak {20 * np.log10(peak):.0f} dBFS"
        raise AudioError(f"{name}: the audio is silent ({level})")


def _as_samples(array: np.ndarray, name: str) -> np.ndarray:
    """Validate an in-memory waveform and return it as 1-D float32."""
    if array.ndim != 1:
        raise AudioError(f"{name}: expected a 1-D mono waveform, got shape {array.shape}")
    if array.size == 0:
        raise AudioError(f"{name}: no audio samples")
    if array.dtype == np.int16:
        return array.astype(np.float32) / 32768.0
    if not np.issubdtype(array.dtype, np.floating):
        raise AudioError(f"{name}: expected float or int16 samples, got {array.dtype}")
    samples = np.ascontiguousarray(array, dtype=np.float32)
    if not np.all(np.isfinite(samples)):
        raise AudioError(f"{name}: the waveform holds NaN or infinite samples")
    return samples


def _one_line(error: Exception) -> str:
    """libav's error text on one line, without the file name PyAV appends."""
    if isinstance(error, av.FFmpegError) and error.strerror:
        return " ".join(str(error.strerror).split())
    return " ".join(str(error).split())


def _decode(file: str | io.BytesIO, label: str, sr: int) -> np.ndarray:
    """Demux and decode the first audio stream, resampled by libswresample to s16 mono ``sr``."""
    try:
        container = av.open(file, metadata_errors="ignore")
    except av.FFmpegError as error:
        raise AudioError(f"{label}: not a readable audio file ({_one_line(error)})") from error
    chunks: list[np.ndarray] = []
    first_error: Exception | None = None
    with container:
        if not container.streams.audio:
            kinds = sorted({s.type for s in container.streams}) or ["no streams"]
            raise AudioError(f"{label}: no audio stream (found {', '.join(kinds)})")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=sr)
        try:
            for packet in container.demux(stream):
                # Like the ffmpeg command line, a packet that fails to decode is dropped.
                try:
                    frames = stream.codec_context.decode(packet)
                except av.FFmpegError as error:
                    first_error = first_error or error
                    continue
                for frame in frames:
                    chunks.extend(r.to_ndarray() for r in resampler.resample(frame))
            chunks.extend(r.to_ndarray() for r in resampler.resample(None))
        except av.FFmpegError as error:  # demuxing or resampling failed: nothing to skip to
            raise AudioError(f"{label}: cannot decode audio ({_one_line(error)})") from error
    samples = np.concatenate([c.reshape(-1) for c in chunks]) if chunks else np.zeros(0, np.int16)
    if samples.size == 0:
        reason = f" ({_one_line(first_error)})" if first_error else ""
        raise AudioError(f"{label}: the audio stream decodes to no samples{reason}")
    return samples.astype(np.float32) / 32768.0
