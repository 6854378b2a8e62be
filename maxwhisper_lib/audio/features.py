"""Whisper's log-mel spectrogram: the MAX version, openai-whisper's reference, window helpers.

openai-whisper's ``transcribe`` takes the log-mel of the whole file plus 30 s of zeros
(``padding=N_SAMPLES``; the floor of ``max - 8`` is taken over all of it), then feeds the encoder
3000-frame windows ``pad_or_trim(mel[:, seek : seek + length])``. Both halves exist here:

* :class:`LogMelSpectrogram` computes the whole-file log-mel on the MAX device (one compile per
  ``n_mels``, device and DFT precision, for any length) and returns a device
  :class:`~max.driver.Buffer`; its DFT runs in float64 on the CPU, which keeps it within 1e-4
  of openai-whisper (see :mod:`maxwhisper_lib.engine.graphs.mel` for why float32 is not enough); its
  host copy (:meth:`LogMelSpectrogram.numpy`, :meth:`LogMelSpectrogram.stream`) goes through a
  piece graph 15 seconds at a time, bit for bit the same, so that the STFT's memory does not grow
  with the file;
* windows are cut on the host with :func:`mel_window` / :func:`pad_or_trim` (on CPU a Buffer
  is viewed as numpy without a copy, so this costs nothing).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import cache

import numpy as np
from max.driver import Buffer
from max.dtype import DType
from max.engine import Model

from ..decoding.whisper_parts import asset
from ..engine.graphs.mel import (
    build_log_mel_graph,
    build_log_mel_piece_graph,
)
from ..engine.runtime import compile_graph, device_ref, resolve_device_name, to_device
from ..errors import AudioError
from .constants import (
    FRAMES_PER_SECOND,
    HOP_LENGTH,
    N_FFT,
    N_FRAMES,
    N_SAMPLES,
    SAMPLE_RATE,
)

MEL_CHOICES = (80, 128)
SHORT_PADDING = 20 * 160
"""Zeros that :meth:`LogMelSpectrogram.numpy` really computes when asked for more: its last
frames (centred windows of ``N_FFT`` samples, ``HOP_LENGTH`` apart) then see only zeros."""
PIECE_FRAMES = 1_500
"""Frames (15 s) per piece of the STFT: its float64 intermediates then stay the size of one
piece, whatever the file's length (measured on an hour, 2 cores: the run's peak 40 MB above its
start with 15 s pieces, 460 MB with 2-minute ones, and 30-40% less time)."""
KEEP_FRAMES = 72_000
"""Frames (12 minutes) of a file's log-mel that :meth:`LogMelSpectrogram.stream` keeps when it
can read the file again: a longer spectrogram is computed again piece by piece as it is used."""
MIN_SAMPLES = N_FFT // 2 + 1
"""Fewest samples (after padding) the STFT's reflect padding accepts."""

__all__ = [
    "FRAMES_PER_SECOND",
    "HOP_LENGTH",
    "MIN_SAMPLES",
    "N_FFT",
    "N_FRAMES",
    "N_SAMPLES",
    "SAMPLE_RATE",
    "LogMelPieces",
    "LogMelSpectrogram",
    "ReplayedLogMel",
    "default_stft_dtype",
    "frame_count",
    "log_mel_spectrogram_reference",
    "mel_filters",
    "mel_window",
    "pad_or_trim",
]


def frame_count(n_samples: int, padding: int = 0) -> int:
    """Log-mel frames of ``n_samples`` samples plus ``padding`` zeros (one per 160-sample hop)."""
    return (n_samples + padding) // HOP_LENGTH


@cache
def mel_filters(n_mels: int = 80) -> np.ndarray:
    """openai-whisper's ``(n_mels, 201)`` float32 mel filterbank (librosa's, from its assets)."""
    _check_n_mels(n_mels)
    with np.load(asset("mel_filters.npz"), allow_pickle=False) as filters:
        return filters[f"mel_{n_mels}"]


def log_mel_spectrogram_reference(
    audio: np.ndarray, n_mels: int = 80, padding: int = 0
) -> np.ndarray:
    """openai-whisper's own ``log_mel_spectrogram`` (torch, CPU) as a numpy array."""
    import torch
    import whisper.audio

    _check_n_mels(n_mels)
    samples = torch.from_numpy(_prepare(audio, padding=padding, pad=False))
    return whisper.audio.log_mel_spectrogram(samples, n_mels, padding=padding).numpy()


def pad_or_trim(array: np.ndarray, length: int = N_FRAMES, *, axis: int = -1) -> np.ndarray:
    """Cut or zero-pad ``array`` to ``length`` along ``axis``: openai-whisper's ``pad_or_trim``
    for NumPy arrays, the same steps (a test compares the two)."""
    array = np.asarray(array)
    if array.shape[axis] > length:
        array = array.take(indices=range(length), axis=axis)
    if array.shape[axis] < length:
        widths = [(0, 0)] * array.ndim
        widths[axis] = (0, length - array.shape[axis])
        array = np.pad(array, widths)
    return array


def mel_window(mel: np.ndarray | LogMelPieces, start: int, length: int = N_FRAMES) -> np.ndarray:
    """Host window as ``transcribe`` builds it: ``pad_or_trim(mel[:, start : start + length])``."""
    if isinstance(mel, LogMelPieces):
        return mel.window(start, length)
    return pad_or_trim(mel[:, start : start + length], N_FRAMES)


class LogMelSpectrogram:
    """Whisper's log-mel spectrogram computed on a MAX device.

    ``LogMelSpectrogram(80, "cpu")(samples, padding=N_SAMPLES)`` equals openai-whisper's
    ``log_mel_spectrogram(samples, 80, padding=N_SAMPLES)`` (float32, within 1e-4) and stays on
    the device. ``stft_dtype`` is the precision of the DFT (see :func:`default_stft_dtype`).
    The graph compiles once per ``(n_mels, device, stft_dtype)`` per process (MAX's disk cache
    makes later processes load it in about a second).
    """

    def __init__(
        self,
        n_mels: int = 80,
        device: str = "cpu",
        stft_dtype: DType | None = None,
        piece_model: Model | None = None,
    ) -> None:
        _check_n_mels(n_mels)
        self.n_mels = n_mels
        self.device = resolve_device_name(device)
        self.stft_dtype = stft_dtype or default_stft_dtype(self.device)
        self._piece_model = piece_model  # e.g. compiled with a model's graphs (MaxWhisper)

    def __call__(self, audio: np.ndarray, padding: int = 0) -> Buffer:
        """``(n_mels, frame_count(len(audio), padding))`` float32 log-mel on the device (the
        one-call graph, compiled on first use).

        ``audio`` is 16 kHz mono (float32, or anything numpy casts to it); ``padding`` zeros are
        appended on the host before the copy to the device.
        """
        samples = _prepare(audio, padding=padding, pad=True)
        model = _log_mel_model(self.n_mels, self.device, self.stft_dtype)
        return model.execute(to_device(samples, self.device))[0]

    def numpy(self, audio: np.ndarray, padding: int = 0) -> np.ndarray:
        """Same as calling the object, copied to a host array, computed by the piece graph of
        :meth:`stream` (bit for bit the same; one graph less to compile for a transcription).

        Frames that see only padding zeros all hold one value (the floor), so a long
        ``padding`` (``transcribe`` appends 30 s) is computed as :data:`SHORT_PADDING` zeros,
        whose last frames are such all-zero frames, and that last frame is repeated: the
        result is the same, bit for bit, at a fraction of the cost for short clips.
        """
        samples = _prepare(audio, padding=padding, pad=False)
        return self.stream([samples], padding).array()

    def stream(
        self,
        chunks: Iterable[np.ndarray] | Callable[[], Iterable[np.ndarray]],
        padding: int = 0,
        *,
        clock: Callable[[float], None] | None = None,
    ) -> LogMelPieces:
        """The host log-mel of the samples ``chunks`` yield, one after the other, plus
        ``padding`` zeros, computed :data:`PIECE_FRAMES` frames at a time as the chunks arrive
        (e.g. from :func:`~maxwhisper_lib.audio.load.stream_audio`): each piece's slice of the
        reflect-padded signal goes through the piece graph, then the floor of ``max - 8`` over
        the whole file and the scaling are applied on the host (the same float32 operations
        as the one-call graph, bit for bit its result). The samples are never held whole;
        padding beyond :data:`SHORT_PADDING` repeats the last frame.

        ``chunks`` may instead be a function that returns a fresh iterable of the same samples
        each time it is called (a file that can be read again). A spectrogram longer than
        :data:`KEEP_FRAMES` frames is then not kept either: a first pass finds the floor, and
        :class:`ReplayedLogMel` computes the pieces again as windows ask for them (the same
        bits; memory flat in the file's length for one more pass of the front end over the rest,
        about 3-4% of an hour's transcription on 2 cores).
        ``clock(start)`` is called after each later computation (for the caller's timers).
        """
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        run = self._piece_runner()
        if not callable(chunks):
            source = _Log10Pieces(run, chunks, padding)
            pieces = list(source)
            floor = _floor(pieces)
            return LogMelPieces([_scaled(p, floor) for p in pieces], source.frames)
        source = _Log10Pieces(run, chunks(), padding)
        kept: list[np.ndarray] = []
        keep = max(1, KEEP_FRAMES // PIECE_FRAMES)
        widths: list[int] = []
        peak = -np.inf
        for piece in source:
            peak = max(peak, float(piece.max()))
            widths.append(piece.shape[1])
            if len(kept) < keep:
                kept.append(piece)
        floor = np.float32(peak) - np.float32(8.0)
        kept = [_scaled(p, floor) for p in kept]
        if len(kept) == len(widths):
            return LogMelPieces(kept, source.frames)

        def reopen(wanted: Callable[[int], bool]) -> _Log10Pieces:
            return _Log10Pieces(run, chunks(), padding, wanted)

        return ReplayedLogMel(kept, widths, source.frames, floor, reopen, clock)

    def _piece_runner(self) -> Callable[[np.ndarray], np.ndarray]:
        """Reflect-padded samples of a piece -> its log10 mel on the host (the piece graph)."""
        model = self._piece_model or _log_mel_piece_model(self.n_mels, self.device, self.stft_dtype)
        return lambda piece: model.execute(to_device(piece, self.device))[0].to_numpy()


class _Log10Pieces:
    """The log10 mel (before the floor) of the samples ``chunks`` yield plus ``padding`` zeros,
    one :data:`PIECE_FRAMES`-frame piece at a time; a piece that ``wanted(index)`` refuses is
    skipped (``None``: its samples are read, its STFT not run). ``frames`` is the
    spectrogram's length once the chunks are exhausted."""

    def __init__(
        self,
        run: Callable[[np.ndarray], np.ndarray],
        chunks: Iterable[np.ndarray],
        padding: int,
        wanted: Callable[[int], bool] | None = None,
    ) -> None:
        self.run, self.chunks, self.padding = run, chunks, padding
        self.wanted = wanted or (lambda index: True)
        self.frames: int | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        half = N_FFT // 2
        piece_frames = PIECE_FRAMES
        piece_samples = (piece_frames + 2) * HOP_LENGTH
        buffer, base = np.zeros(0, np.float32), 0  # buffer holds signal[base : base + size]
        index = n_samples = 0

        def piece(f0: int, f1: int, n: int | None) -> np.ndarray | None:
            if not self.wanted(index):
                return None
            positions = np.abs(np.arange(f0 * HOP_LENGTH, (f1 + 2) * HOP_LENGTH) - half)
            if n is not None:  # reflect at the end
                positions = np.where(positions >= n, 2 * n - 2 - positions, positions)
            return self.run(np.ascontiguousarray(buffer[positions - base]))

        for chunk in self.chunks:
            chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
            n_samples += chunk.size
            buffer = np.concatenate([buffer, chunk])
            f0 = index * piece_frames
            while (f0 * HOP_LENGTH - half) + piece_samples <= base + buffer.size:
                yield piece(f0, f0 + piece_frames, None)
                index += 1
                f0 += piece_frames
                keep = max(0, f0 * HOP_LENGTH - half)
                buffer, base = buffer[keep - base :], keep
        _check_length(n_samples, self.padding)
        buffer = np.concatenate([buffer, np.zeros(min(self.padding, SHORT_PADDING), np.float32)])
        n = base + buffer.size
        head = n // HOP_LENGTH
        self.frames = frame_count(n_samples, self.padding)
        for f0 in range(index * piece_frames, head, piece_frames):
            yield piece(f0, min(head, f0 + piece_frames), n)
            index += 1


def _floor(pieces: Sequence[np.ndarray]) -> np.float32:
    """openai-whisper's floor: the whole spectrogram's maximum - 8."""
    return np.float32(max(float(p.max()) for p in pieces)) - np.float32(8.0)


def _scaled(piece: np.ndarray, floor: np.float32) -> np.ndarray:
    """``(max(piece, floor) + 4) / 4`` in place, in float32 (openai-whisper's order)."""
    np.maximum(piece, floor, out=piece)
    piece += np.float32(4.0)
    piece /= np.float32(4.0)
    return piece


class LogMelPieces:
    """A whole-file log-mel kept as the pieces it was computed in (no copy to join them):
    ``shape`` is the whole ``(n_mels, frames)``; :meth:`window` cuts encoder windows as
    :func:`mel_window` does; frames past the computed ones repeat the last (padding)."""

    def __init__(self, pieces: Sequence[np.ndarray], frames: int) -> None:
        self.pieces = list(pieces)
        self._index([p.shape[1] for p in self.pieces], frames, self.pieces[0])

    def _index(self, widths: Sequence[int], frames: int, first: np.ndarray) -> None:
        self.starts = np.cumsum([0, *widths])
        self.computed = int(self.starts[-1])
        self.shape = (first.shape[0], frames)
        self.dtype = first.dtype

    def piece(self, index: int) -> np.ndarray:
        """Piece ``index`` (``(n_mels, its width)``), floored and scaled."""
        return self.pieces[index]

    def frames(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start : stop`` (clipped to the spectrogram) as one array."""
        start = min(max(0, start), self.shape[1])
        stop = min(max(start, stop), self.shape[1])
        out = np.empty((self.shape[0], stop - start), self.dtype)
        count = len(self.starts) - 1
        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        for i in range(max(first, 0), count):
            p0 = int(self.starts[i])
            lo, hi = max(start, p0), min(stop, int(self.starts[i + 1]))
            if lo >= hi:
                break
            out[:, lo - start : hi - start] = self.piece(i)[:, lo - p0 : hi - p0]
        if stop > self.computed:
            out[:, max(self.computed, start) - start :] = self.piece(count - 1)[:, -1:]
        return out

    def window(self, start: int, length: int = N_FRAMES) -> np.ndarray:
        """``pad_or_trim(mel[:, start : start + length])``."""
        return pad_or_trim(self.frames(start, start + min(length, N_FRAMES)), N_FRAMES)

    def array(self) -> np.ndarray:
        """The whole spectrogram as one array."""
        return self.frames(0, self.shape[1])


class ReplayedLogMel(LogMelPieces):
    """A long file's log-mel that is not kept whole: its first :data:`KEEP_FRAMES` frames are
    held from the first pass (which found the floor), later pieces are computed again from the file
    when a window asks for them, at most ``capacity`` held at once (least recently used go).
    Windows asked in order (a transcription's seek) read the file once more; a piece asked
    after it was dropped reads the file again from its start (only that piece's STFT is run),
    and the cache grows by one piece so that an access pattern wider than it stops missing."""

    def __init__(
        self,
        kept: Sequence[np.ndarray],
        widths: Sequence[int],
        frames: int,
        floor: np.float32,
        reopen: Callable[[Callable[[int], bool]], _Log10Pieces],
        clock: Callable[[float], None] | None = None,
    ) -> None:
        self._index(widths, frames, kept[0])
        self.floor, self.reopen, self.clock = floor, reopen, clock
        self.capacity = len(kept)
        self.cache: OrderedDict[int, np.ndarray] = OrderedDict(enumerate(kept))
        self.reads = 1  # passes over the file so far
        self._pieces: Iterator[np.ndarray | None] | None = None
        self._next = self._target = len(widths)  # next index the open pass yields

    def piece(self, index: int) -> np.ndarray:
        if index in self.cache:
            self.cache.move_to_end(index)
            return self.cache[index]
        start = time.perf_counter()
        if self._pieces is None or self._next > index:
            if self._pieces is not None:
                self.capacity += 1
            self._pieces = iter(self.reopen(lambda i: i == self._target))
            self._next = 0
            self.reads += 1
        self._target = index
        piece = None
        while self._next <= index:
            piece = next(self._pieces, None)
            self._next += 1
        if piece is None or piece.shape[1] != self.starts[index + 1] - self.starts[index]:
            raise AudioError("the audio changed while it was being transcribed")
        self.cache[index] = _scaled(piece, self.floor)
        while len(self.cache) > self.capacity:
            self.cache.popitem(last=False)
        if self.clock is not None:
            self.clock(start)
        return self.cache[index]


def default_stft_dtype(device: str) -> DType:
    """float64 on the CPU, where it makes the DFT exact for float32 purposes (the only error
    left is openai-whisper's own float32 rounding); float32 on GPUs, whose float64 matmul support
    in MAX is not assumed (the two-stage DFT keeps float32 within about 1e-4 of the reference;
    see :mod:`maxwhisper_lib.engine.graphs.mel`)."""
    return DType.float64 if resolve_device_name(device) == "cpu" else DType.float32


@cache
def _log_mel_model(n_mels: int, device: str, stft_dtype: DType) -> Model:
    graph = build_log_mel_graph(mel_filters(n_mels), device_ref(device), stft_dtype)
    return compile_graph(graph, device)


@cache
def _log_mel_piece_model(n_mels: int, device: str, stft_dtype: DType) -> Model:
    graph = build_log_mel_piece_graph(mel_filters(n_mels), device_ref(device), stft_dtype)
    return compile_graph(graph, device)


def _check_n_mels(n_mels: int) -> None:
    if n_mels not in MEL_CHOICES:
        raise ValueError(f"n_mels must be one of {MEL_CHOICES}, got {n_mels}")


def _prepare(audio: np.ndarray, *, padding: int, pad: bool) -> np.ndarray:
    """1-D float32 samples checked to be long enough; zero-padded by ``padding`` if ``pad``."""
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim != 1:
        raise AudioError(f"expected 1-D mono samples, got shape {samples.shape}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    _check_length(samples.size, padding)
    if pad and padding:
        samples = np.concatenate([samples, np.zeros(padding, dtype=np.float32)])
    return np.ascontiguousarray(samples)


def _check_length(n_samples: int, padding: int) -> None:
    """The STFT's reflect padding needs :data:`MIN_SAMPLES` samples (after padding)."""
    if n_samples + padding < MIN_SAMPLES:
        raise AudioError(
            f"{n_samples} samples (+{padding} padding) is too short for a log-mel "
            f"spectrogram: at least {MIN_SAMPLES} are needed"
        )
