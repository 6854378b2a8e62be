"""Whisper's log-mel spectrogram as MAX graphs: samples -> log-mel, and log-mel -> encoder windows.

The spectrogram graph reproduces ``whisper.audio.log_mel_spectrogram`` (``torch.stft`` with
``center=True``, reflect padding and a periodic Hann window, the last frame dropped) with
ops that exist on every MAX device:

1. reflect padding by ``N_FFT // 2`` on both sides: two reversed slices and a concat;
2. framing without a gather: the padded signal is cut into rows of one hop (160 samples); frame
   ``f`` is rows ``f`` and ``f + 1`` plus the first 80 samples of row ``f + 2``;
3. the STFT as one matmul of the frames ``(frames, 400)`` with a windowed DFT basis
   ``(400, 2 * 201)`` (cosine and negated sine columns), then ``re**2 + im**2``;
4. the mel filterbank matmul, ``log10`` of the energies clamped at 1e-10, the floor at the global
   maximum minus 8 and ``(x + 4) / 4``.

The number of samples is symbolic, so one compile serves every length.

Precision: every step is float32. The largest difference from openai-whisper on the dev clips is
about 6e-5, and it is openai-whisper's own float32 rounding: those cells are mel bins some nine
decades below the strongest bin of a loud frame, where any float32 STFT (``torch.stft`` included)
has a relative error near 1e-3; a float64 computation differs from openai-whisper by the same 6e-5
there. A float64 graph would therefore not bring MAX closer to the reference.
"""

from __future__ import annotations

import numpy as np
from max.dtype import DType
from max.graph import DeviceRef, Dim, Graph, TensorType, TensorValue, ops

N_FFT = 400
HOP_LENGTH = 160
N_FREQS = N_FFT // 2 + 1
N_FRAMES = 3000
"""Frames in one encoder window (30 s)."""

LOG10_OF_E = float(1.0 / np.log(10.0))
SAMPLES = "n_samples"
FRAMES = "n_frames"
WINDOWS = "n_windows"


def windowed_dft_basis() -> np.ndarray:
    """``(N_FFT, 2 * N_FREQS)`` float32: periodic-Hann-windowed cosines, then negated sines.

    ``frames @ basis`` gives the real parts of the one-sided DFT of each windowed frame in the
    first ``N_FREQS`` columns and the imaginary parts in the rest (computed in float64, rounded
    once).
    """
    n = np.arange(N_FFT)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / N_FFT)
    angle = 2.0 * np.pi * np.outer(n, np.arange(N_FREQS)) / N_FFT
    basis = np.concatenate([np.cos(angle), -np.sin(angle)], axis=1) * window[:, None]
    return basis.astype(np.float32)


def _scalar(dim: Dim) -> TensorValue:
    """A symbolic dimension as an int64 scalar (slice bounds on symbolic dims need one)."""
    return ops.reshape(ops.shape_to_tensor([dim]), [])


def _rows(x: TensorValue, start: int, count: Dim) -> TensorValue:
    """``x[start : start + count]`` along axis 0 for a symbolic ``count``."""
    return ops.slice_tensor(x, [(slice(start, _scalar(count + start)), count)])


def reflect_pad(x: TensorValue, pad: int) -> TensorValue:
    """``numpy.pad(x, pad, mode="reflect")`` of a 1-D tensor (needs ``len(x) > pad``)."""
    left = ops.slice_tensor(x, [(slice(pad, 0, -1), pad)])
    right = ops.slice_tensor(x, [(slice(-2, -2 - pad, -1), pad)])
    return ops.concat([left, x, right], axis=0)


def stft_frames(padded: TensorValue, n_frames: Dim) -> TensorValue:
    """Frames ``padded[f * HOP_LENGTH : f * HOP_LENGTH + N_FFT]`` for ``f < n_frames``.

    Needs ``len(padded) >= (n_frames + 2) * HOP_LENGTH``.
    """
    rows = ops.reshape(_rows(padded, 0, (n_frames + 2) * HOP_LENGTH), [n_frames + 2, HOP_LENGTH])
    tail = N_FFT - 2 * HOP_LENGTH
    first, second, third = (_rows(rows, offset, n_frames) for offset in range(3))
    return ops.concat([first, second, third[:, :tail]], axis=1)


def log_mel(audio: TensorValue, filters: np.ndarray) -> TensorValue:
    """float32 samples ``(n,)`` -> log-mel ``(n_mels, n // HOP_LENGTH)``; needs ``n > 200``."""
    device = audio.device
    n_frames = audio.shape[0] // HOP_LENGTH
    frames = stft_frames(reflect_pad(audio, N_FFT // 2), n_frames)
    spectrum = frames @ ops.constant(windowed_dft_basis(), DType.float32, device=device)
    real, imag = spectrum[:, :N_FREQS], spectrum[:, N_FREQS:]
    power = real * real + imag * imag
    mel_filters = np.ascontiguousarray(filters.T, dtype=np.float32)
    energy = power @ ops.constant(mel_filters, DType.float32, device=device)
    log_spec = ops.log(ops.max(energy, 1e-10)) * LOG10_OF_E
    top = ops.max(ops.reshape(log_spec, [-1]), axis=0)
    log_spec = ops.max(log_spec, top - 8.0)
    return ops.transpose((log_spec + 4.0) / 4.0, 0, 1)


def build_log_mel_graph(filters: np.ndarray, device: DeviceRef) -> Graph:
    """Samples ``(n_samples,)`` float32 -> log-mel ``(n_mels, n_samples // 160)`` float32.

    ``filters`` is the ``(n_mels, N_FREQS)`` mel filterbank (baked into the graph as a constant).
    """
    n_mels = filters.shape[0]
    audio_type = TensorType(DType.float32, [SAMPLES], device=device)
    with Graph(f"whisper_log_mel_{n_mels}", input_types=[audio_type]) as graph:
        graph.output(log_mel(graph.inputs[0].tensor, filters))
    return graph


def build_mel_window_graph(n_mels: int, dtype: DType, device: DeviceRef) -> Graph:
    """Cut encoder windows out of a whole-file log-mel without leaving the device.

    Inputs: log-mel ``(n_mels, n_frames)`` float32, ``starts`` and ``lengths`` int64
    ``(n_windows,)``. Output ``(n_windows, n_mels, N_FRAMES)`` in ``dtype``: window ``i`` holds
    frames ``starts[i] : starts[i] + lengths[i]`` followed by zeros, as openai-whisper's
    ``pad_or_trim(mel[:, start : start + length])``. Needs ``1 <= lengths[i] <= N_FRAMES`` and
    ``starts[i] + lengths[i] <= n_frames`` (checked by the caller).
    """
    inputs = [
        TensorType(DType.float32, [n_mels, FRAMES], device=device),
        TensorType(DType.int64, [WINDOWS], device=device),
        TensorType(DType.int64, [WINDOWS], device=device),
    ]
    with Graph(f"whisper_mel_window_{n_mels}_{dtype.name}", input_types=inputs) as graph:
        mel, starts, lengths = (value.tensor for value in graph.inputs)
        offsets = ops.unsqueeze(ops.range(0, N_FRAMES, 1, dtype=DType.int64, device=device), 0)
        starts, lengths = ops.unsqueeze(starts, 1), ops.unsqueeze(lengths, 1)
        inside = offsets < lengths
        columns = starts + ops.min(offsets, lengths - 1)  # in range even where masked out
        windows = ops.permute(ops.gather(mel, columns, axis=1), [1, 0, 2])
        windows = ops.where(ops.unsqueeze(inside, 1), windows, 0.0)
        graph.output(ops.cast(windows, dtype))
    return graph
