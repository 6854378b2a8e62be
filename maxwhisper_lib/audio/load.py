"""Audio front end: decode any common container/codec with PyAV, mix to mono, resample to 16 kHz.

:func:`load_audio` gives the samples openai-whisper's ``load_audio`` gets from the ffmpeg command
line (``ffmpeg -i FILE -f s16le -ac 1 -ar 16000 -``): the same libav decoders, the same
libswresample defaults for the down-mix and the resampling, signed 16-bit output scaled to
[-1, 1), and, like the command line, packets that fail to decode are skipped rather than fatal.
Every failure is an :class:`~maxwhisper_lib.errors.AudioError` with a one-line message that
names the source. :func:`stream_audio` gives the same samples in pieces, decoded as they are
used, for long files.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from ..errors import AudioError
from .constants import SAMPLE_RATE

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
        path = _checked_path(source, name)
        label = name or str(path)
        samples = _decode(str(path), label, sr)
    if reject_silent:
        check_audible(samples, label)
    return samples


def _checked_path(source: str | Path, name: str | None) -> Path:
    """``source`` as a path that exists, is a file and is not empty (else an AudioError)."""
    path = Path(source)
    label = name or str(path)
    if not path.exists():
        raise AudioError(f"{label}: no such file")
    if not path.is_file():
        raise AudioError(f"{label}: not a file")
    if path.stat().st_size == 0:
        raise AudioError(f"{label}: empty file (0 bytes)")
    return path


def audio_seconds(source: str | Path, name: str | None = None) -> float:
    """The duration of a file's first audio stream from its container (0 when it does not
    say), without decoding it; the file checks and errors of :func:`load_audio`."""
    path = _checked_path(source, name)
    container, stream = _open_audio_stream(str(path), name or str(path))
    with container:
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        return float(container.duration or 0) / av.time_base


def check_audio(source: str | Path, *, reject_silent: bool = False) -> float:
    """Decode a file once without keeping its samples, to find what :func:`load_audio` would
    refuse (an :class:`AudioError`); returns its seconds."""
    samples = sum(p.size for p in stream_audio(source, reject_silent=reject_silent))
    return samples / SAMPLE_RATE


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


# PyAV before 19 decodes metadata strictly unless told to ignore errors; 19 dropped the argument.
_OPEN_OPTIONS = {"metadata_errors": "ignore"} if int(av.__version__.split(".")[0]) < 19 else {}


def _open_audio_stream(file: str | io.BytesIO, label: str):
    """The open container and its first audio stream (an AudioError when there is none)."""
    try:
        container = av.open(file, **_OPEN_OPTIONS)
    except av.FFmpegError as error:
        raise AudioError(f"{label}: not a readable audio file ({_one_line(error)})") from error
    if not container.streams.audio:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        container.close()
        raise AudioError(f"{label}: no audio stream (found {', '.join(kinds)})")
    return container, container.streams.audio[0]


def _decoded_chunks(file: str | io.BytesIO, label: str, sr: int) -> Iterator[np.ndarray]:
    """Demux and decode the first audio stream, resampled by libswresample to s16 mono ``sr``:
    int16 chunks as libav produces them (at least one sample in all, or an AudioError)."""
    container, stream = _open_audio_stream(file, label)
    first_error: Exception | None = None
    produced = False
    direct = True  # frames already s16 mono at ``sr`` are taken as they are (until one is not)
    with container:
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
                    direct = direct and _is_s16_mono(frame, sr)
                    if direct:  # libswresample would copy it: ~60 us a frame saved
                        chunk = frame.to_ndarray().reshape(-1)
                        produced = produced or chunk.size > 0
                        yield chunk
                        continue
                    for resampled in resampler.resample(frame):
                        chunk = resampled.to_ndarray().reshape(-1)
                        produced = produced or chunk.size > 0
                        yield chunk
            for resampled in resampler.resample(None):
                chunk = resampled.to_ndarray().reshape(-1)
                produced = produced or chunk.size > 0
                yield chunk
        except av.FFmpegError as error:  # demuxing or resampling failed: nothing to skip to
            raise AudioError(f"{label}: cannot decode audio ({_one_line(error)})") from error
    if not produced:
        reason = f" ({_one_line(first_error)})" if first_error else ""
        raise AudioError(f"{label}: the audio stream decodes to no samples{reason}")


def _is_s16_mono(frame: av.AudioFrame, sr: int) -> bool:
    """Whether ``frame`` already is what the resampler makes: packed s16, one channel, ``sr``."""
    return frame.format.name == "s16" and len(frame.layout.channels) == 1 and frame.rate == sr


def _decode(file: str | io.BytesIO, label: str, sr: int) -> np.ndarray:
    """The whole first audio stream as float32 samples."""
    return np.concatenate(list(_decoded_chunks(file, label, sr))).astype(np.float32) / 32768.0


def stream_audio(
    source: AudioSource,
    sr: int = SAMPLE_RATE,
    *,
    piece_samples: int = 30 * SAMPLE_RATE,
    reject_silent: bool = False,
    name: str | None = None,
) -> Iterator[np.ndarray]:
    """:func:`load_audio`'s samples as float32 pieces of ``piece_samples`` (the last one
    shorter), decoded as they are consumed: memory stays that of one piece, however long the
    file. The same checks and errors as :func:`load_audio`, raised when they are found (an
    unreadable file at once; silence with ``reject_silent`` after the last piece)."""
    if piece_samples < 1:
        raise ValueError(f"piece_samples must be positive, got {piece_samples}")
    if isinstance(source, np.ndarray | bytes | bytearray):
        samples = load_audio(source, sr, reject_silent=reject_silent, name=name)
        for start in range(0, samples.size, piece_samples):
            yield samples[start : start + piece_samples]
        return
    path = _checked_path(source, name)
    label = name or str(path)
    peak = 0.0
    pending: list[np.ndarray] = []
    count = 0
    for chunk in _decoded_chunks(str(path), label, sr):
        pending.append(chunk)
        count += chunk.size
        while count >= piece_samples:
            joined = np.concatenate(pending)
            piece = joined[:piece_samples].astype(np.float32) / 32768.0
            pending, count = [joined[piece_samples:]], joined.size - piece_samples
            peak = max(peak, float(np.max(np.abs(piece))))
            yield piece
    if count:
        piece = np.concatenate(pending).astype(np.float32) / 32768.0
        peak = max(peak, float(np.max(np.abs(piece))))
        yield piece
    if reject_silent and peak <= SILENCE_PEAK:
        check_audible(np.array([peak], np.float32), label)
