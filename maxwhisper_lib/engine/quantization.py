"""int8 weights with a scale per output channel (CTranslate2's ``int8`` scheme), in NumPy.

:func:`quantize_linear` turns a linear weight ``(out, in)`` into the packed form the Mojo kernel
``linear_int8`` reads (``maxwhisper_lib/engine/kernels/linear_int8.mojo``): blocks of 16 output channels,
each storing 4 consecutive inputs of its 16 outputs side by side (the operand layout of the CPU's
int8 dot-product instruction), zero rows up to a multiple of 64 outputs, the channel scales and the
channels' sums of quantized values. :func:`int8_linear_reference` is the same arithmetic in NumPy
(activations quantized per row, exact integer products, float32 dequantization): the bound the
kernel is checked against, so a wrong kernel fails even though int8 differs from float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LANES = 16  # output channels per block (one 512-bit vector of int32 sums)
TILE_OUTPUTS = 64  # the kernel's tile: outputs are padded to a multiple of it
QMAX = 127
SCALE_SUFFIX, SUM_SUFFIX = "_scale", "_sum"
"""Name endings of a packed int8 weight's scales and sums, beside the weight."""


@dataclass(frozen=True)
class Int8Linear:
    """A linear weight quantized per output channel and packed for ``linear_int8``."""

    packed: np.ndarray  # (blocks, in / 4, 64) int8
    scale: np.ndarray  # (blocks * 16,) float32, 0 for padding channels
    weight_sum: np.ndarray  # (blocks * 16,) int32: sum of each channel's int8 values
    out_features: int

    @property
    def in_features(self) -> int:
        return self.packed.shape[1] * 4

    def quantized(self) -> np.ndarray:
        """The int8 weight ``(out, in)``, unpacked."""
        blocks, groups, _ = self.packed.shape
        q = self.packed.reshape(blocks, groups, LANES, 4).transpose(0, 2, 1, 3)
        return q.reshape(blocks * LANES, groups * 4)[: self.out_features]

    def dequantized(self) -> np.ndarray:
        """The float32 weight ``(out, in)`` the int8 values stand for."""
        scale = self.scale[: self.out_features, None]
        return self.quantized().astype(np.float32) * scale


def packed_shapes(out_features: int, in_features: int) -> dict[str, tuple[int, ...]]:
    """Shapes of an ``(out, in)`` weight packed by :func:`quantize_linear`, by name suffix:
    ``""`` the int8 tiles, :data:`SCALE_SUFFIX` the float32 scales, :data:`SUM_SUFFIX` the
    int32 sums (outputs
    padded to whole tiles)."""
    padded = -(-out_features // TILE_OUTPUTS) * TILE_OUTPUTS
    return {
        "": (padded // LANES, in_features // 4, 4 * LANES),
        SCALE_SUFFIX: (padded,),
        SUM_SUFFIX: (padded,),
    }


def quantize_linear(weight: np.ndarray) -> Int8Linear:
    """Quantize ``weight (out, in)`` (any float dtype) per output channel:
    ``scale = max|w_row| / 127``, ``q = round(w / scale)``; ``in`` must be a multiple of 4."""
    w = np.asarray(weight, dtype=np.float32)
    if w.ndim != 2 or w.shape[1] % 4:
        raise ValueError(f"expected a linear weight (out, in) with in % 4 == 0, got {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError("cannot quantize a weight holding NaN or Inf")
    out_features, in_features = w.shape
    top = np.abs(w).max(axis=1)
    scale = (top / QMAX).astype(np.float32)
    safe = np.where(scale > 0, scale, 1).astype(np.float32)
    q = np.clip(np.rint(w / safe[:, None]), -QMAX, QMAX).astype(np.int8)
    padded = -(-out_features // TILE_OUTPUTS) * TILE_OUTPUTS
    q_pad = np.zeros((padded, in_features), np.int8)
    q_pad[:out_features] = q
    blocks = padded // LANES
    packed = q_pad.reshape(blocks, LANES, in_features // 4, 4).transpose(0, 2, 1, 3)
    scales = np.zeros(padded, np.float32)
    scales[:out_features] = scale
    return Int8Linear(
        packed=np.ascontiguousarray(packed.reshape(blocks, in_features // 4, 4 * LANES)),
        scale=scales,
        weight_sum=q_pad.astype(np.int32).sum(axis=1).astype(np.int32),
        out_features=out_features,
    )


def quantize_activations(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's activation quantization of ``x (m, in)`` float32: int8 values and one
    float32 scale per row (``floor(x * 127 / max|x_row| + 0.5)``, clamped to +-127)."""
    x = np.asarray(x, dtype=np.float32)
    top = np.abs(x).max(axis=1)
    with np.errstate(divide="ignore"):
        inv = np.where(top > 0, np.float32(QMAX) / top, 0).astype(np.float32)
    q = np.floor(x * inv[:, None] + np.float32(0.5))
    return np.clip(q, -QMAX, QMAX).astype(np.int8), (top / np.float32(QMAX)).astype(np.float32)


def int8_linear_reference(
    x: np.ndarray, weight: Int8Linear, bias: np.ndarray | None = None
) -> np.ndarray:
    """NumPy model of ``linear_int8``: ``x (m, in)`` -> ``(m, out)`` float32."""
    q, row_scale = quantize_activations(x)
    dot = q.astype(np.int64) @ weight.quantized().astype(np.int64).T
    scale = weight.scale[None, : weight.out_features] * row_scale[:, None]
    y = dot.astype(np.float32) * scale.astype(np.float32)
    return y if bias is None else y + np.asarray(bias, np.float32)
