"""Whisper's log-mel spectrogram as MAX graphs: samples -> log-mel, and log-mel -> encoder windows.

The spectrogram graph reproduces ``whisper.audio.log_mel_spectrogram`` (``torch.stft`` with
``center=True``, reflect padding and a periodic Hann window, the last frame dropped) with
ops that exist on every MAX device:

1. reflect padding by ``N_FFT // 2`` on both sides: two reversed slices and a concat;
2. framing without a gather: the padded signal is cut into rows of one hop (160 samples); frame
   ``f`` is rows ``f`` and ``f + 1`` plus the first 80 samples of row ``f + 2``;
3. the Hann window, then the one-sided 400-point DFT as two matmul stages (Cooley-Tukey,
   400 = 20 x 20): 20-point DFTs of the 20 decimated sub-sequences, then, for each of the 20
   residues ``k1``, one (40 x 22) matrix that applies the twiddles and the second 20-point DFT
   for the bins ``k = k1 + 20 k2``; then ``re**2 + im**2``;
4. the mel filterbank matmul, ``log10`` of the energies clamped at 1e-10, the floor at the global
   maximum minus 8 and ``(x + 4) / 4`` (float32).

The number of samples is symbolic, so one compile serves every length.

Precision. A DFT written as one 400-term matmul is ill-conditioned in float32: next to a strong
tone, the partial sums of a neighbouring bin grow large and then cancel, so the rounding of the
accumulation (not of the basis) swamps the weak bin. On a 440 Hz tone over faint noise that gives
3e-4 of log-mel error; speech clips stay under 4e-5. Splitting the sum into two 20-term stages,
as an FFT does, cuts the tone's error to 8e-5 in float32; that is the level of openai-whisper's
own float32 FFT (6e-5 to 8e-5 from the exact value on the same signals), so two float32 results
can still differ by up to their sum. The STFT stages therefore run in float64 where MAX has it
(the CPU; ``stft_dtype``), which leaves only openai-whisper's own rounding: under 8e-5 on every
dev clip and test signal. float32 stages are for devices without float64 kernels.
"""

from __future__ import annotations

import numpy as np
from max.dtype import DType
from max.graph import DeviceRef, Dim, Graph, Module, TensorType, TensorValue, ops

from ...audio.constants import HOP_LENGTH, N_FFT

N_FREQS = N_FFT // 2 + 1
DFT_SPLIT = (20, 20)
"""``N_FFT = N1 * N2``: the two Cooley-Tukey stages' lengths."""

LOG10_OF_E = float(1.0 / np.log(10.0))
SAMPLES = "n_samples"
FRAMES = "n_frames"


def hann_window() -> np.ndarray:
    """The periodic Hann window of ``torch.hann_window(N_FFT)``, in float64."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)


def dft_stages() -> tuple[np.ndarray, np.ndarray]:
    """float64 matrices of the two-stage one-sided DFT of a length-``N_FFT`` frame ``x``.

    With ``x[n1 * N2 + n2]`` viewed as ``(N1, N2)`` and transposed to ``(N2, N1)``:

    * ``stage1`` ``(N1, 2 N1)``: ``y = x.T @ stage1`` holds, per ``n2``, the ``N1``-point DFT
      of ``x[:, n2]`` (real parts, then imaginary parts);
    * ``stage2`` ``(N1, 2 N2, 2 K2)``: for each ``k1``, ``[re(y[:, k1]), im(y[:, k1])] @
      stage2[k1]`` gives ``[re X[k], im X[k]]`` for ``k = k1 + N1 k2``, ``k2 < K2 =
      ceil(N_FREQS / N1)`` (twiddles ``exp(-2 pi i n2 k / N_FFT)`` folded in).
    """
    n1_len, n2_len = DFT_SPLIT
    k2_len = -(-N_FREQS // n1_len)
    n1 = np.arange(n1_len)
    angle = 2.0 * np.pi * np.outer(n1, n1) / n1_len
    stage1 = np.concatenate([np.cos(angle), -np.sin(angle)], axis=1)
    k1, n2, k2 = np.ix_(np.arange(n1_len), np.arange(n2_len), np.arange(k2_len))
    twiddle = 2.0 * np.pi * n2 * (k1 + n1_len * k2) / N_FFT
    cos, sin = np.cos(twiddle), -np.sin(twiddle)  # exp(-i t) = cos + i sin
    # re X = re y cos - im y sin; im X = re y sin + im y cos
    stage2 = np.concatenate(
        [np.concatenate([cos, sin], axis=2), np.concatenate([-sin, cos], axis=2)], axis=1
    )
    return stage1, stage2


def _constant(array: np.ndarray, dtype: DType, device: DeviceRef) -> TensorValue:
    return ops.constant(np.ascontiguousarray(array, dtype=dtype.to_numpy()), dtype, device=device)


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


def power_spectrum(frames: TensorValue, dtype: DType) -> TensorValue:
    """Frames ``(F, N_FFT)`` -> one-sided power spectrum ``(F, N_FREQS)`` of the Hann-windowed
    frames, computed in ``dtype`` (see :func:`dft_stages`)."""
    device = frames.device
    n1_len, n2_len = DFT_SPLIT
    stage1, stage2 = dft_stages()
    k2_len = stage2.shape[2] // 2
    n_frames = frames.shape[0]
    x = ops.cast(frames, dtype) * _constant(hann_window(), dtype, device)
    x = ops.permute(ops.reshape(x, [n_frames, n1_len, n2_len]), [0, 2, 1])
    y = x @ _constant(stage1, dtype, device)  # (F, n2, [re|im] k1)
    y = ops.reshape(
        ops.permute(ops.reshape(y, [n_frames, n2_len, 2, n1_len]), [3, 0, 2, 1]),
        [n1_len, n_frames, 2 * n2_len],
    )  # (k1, F, [re|im] n2)
    z = y @ _constant(stage2, dtype, device)  # (k1, F, [re|im] k2)
    real, imag = z[:, :, :k2_len], z[:, :, k2_len:]
    power = ops.permute(real * real + imag * imag, [1, 2, 0])  # (F, k2, k1): k = k1 + N1 k2
    return ops.reshape(power, [n_frames, k2_len * n1_len])[:, :N_FREQS]


def _log10_energies(frames: TensorValue, filters: np.ndarray, stft_dtype: DType) -> TensorValue:
    """STFT frames ``(F, N_FFT)`` -> log10 mel energies ``(F, n_mels)`` float32."""
    power = ops.cast(power_spectrum(frames, stft_dtype), DType.float32)
    energy = power @ _constant(filters.T, DType.float32, frames.device)
    return ops.log(ops.max(energy, 1e-10)) * LOG10_OF_E


def log_mel(audio: TensorValue, filters: np.ndarray, stft_dtype: DType) -> TensorValue:
    """float32 samples ``(n,)`` -> log-mel ``(n_mels, n // HOP_LENGTH)``; needs ``n > 200``."""
    n_frames = audio.shape[0] // HOP_LENGTH
    frames = stft_frames(reflect_pad(audio, N_FFT // 2), n_frames)
    log_spec = _log10_energies(frames, filters, stft_dtype)
    top = ops.max(ops.reshape(log_spec, [-1]), axis=0)
    log_spec = ops.max(log_spec, top - 8.0)
    return ops.transpose((log_spec + 4.0) / 4.0, 0, 1)


def log10_mel_of_padded(padded: TensorValue, filters: np.ndarray, stft_dtype: DType) -> TensorValue:
    """Samples already reflect-padded ``((n + 2) * HOP_LENGTH,)`` -> log10 mel energies
    ``(n_mels, n)``, before the floor of ``max - 8`` and the scaling (one piece of a file)."""
    frames = stft_frames(padded, padded.shape[0] // HOP_LENGTH - 2)
    return ops.transpose(_log10_energies(frames, filters, stft_dtype), 0, 1)


def _samples_graph(
    name: str,
    body,
    filters: np.ndarray,
    device: DeviceRef,
    stft_dtype,
    module: Module | None = None,
) -> Graph:
    """A graph of one float32 samples input ``(n,)`` whose output is ``body(samples, ...)``
    (built into ``module`` if given)."""
    audio_type = TensorType(DType.float32, [SAMPLES], device=device)
    name = f"{name}_{filters.shape[0]}_{stft_dtype.name}"
    with Graph(name, input_types=[audio_type], module=module) as graph:
        graph.output(body(graph.inputs[0].tensor, filters, stft_dtype))
    return graph


def build_log_mel_graph(
    filters: np.ndarray, device: DeviceRef, stft_dtype: DType = DType.float64
) -> Graph:
    """Samples ``(n_samples,)`` float32 -> log-mel ``(n_mels, n_samples // 160)`` float32.

    ``filters`` is the ``(n_mels, N_FREQS)`` mel filterbank (baked into the graph as a constant);
    ``stft_dtype`` is the precision of the DFT stages (float64, or float32 where a device lacks
    float64 kernels).
    """
    return _samples_graph("whisper_log_mel", log_mel, filters, device, stft_dtype)


def build_log_mel_piece_graph(
    filters: np.ndarray,
    device: DeviceRef,
    stft_dtype: DType = DType.float64,
    module: Module | None = None,
) -> Graph:
    """Reflect-padded samples of a piece ``((n + 2) * 160,)`` -> its log10 mel ``(n_mels, n)``:
    long files go through in pieces, the floor taken over all of them afterwards on the host
    (``LogMelSpectrogram.numpy``), so memory does not grow with the file."""
    return _samples_graph(
        "whisper_log10_mel_piece", log10_mel_of_padded, filters, device, stft_dtype, module
    )
