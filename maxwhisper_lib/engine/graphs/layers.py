"""Whisper's building blocks as MAX Graph operations.

Shapes: activations are ``(batch, time, width)``; attention heads are split as
``(batch, heads, time, head_width)``. Linear weights are ``(in, out)`` (see weight_mapping), except
the decoder's row weights ``(out, in)`` when the graph is built with ``row_dtype`` (CPU): those
linear layers run as MAX-Whisper's Mojo row kernels (:mod:`.kernels`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from max.dtype import DType
from max.graph import BufferValue, DeviceRef, TensorValue, Weight, ops

from ..quantization import SCALE_SUFFIX, SUM_SUFFIX, packed_shapes
from ..weight_mapping import is_int8_weight, is_row_weight
from .custom_ops import (
    cross_attention_rows,
    int8_product,
    int8_product_fused,
    linear_rows,
    self_attention_cached,
    self_attention_int8,
)

LAYER_NORM_EPS = 1e-5


class Params:
    """Declares the graph's named weights: each ``Weight`` is created once, with the shape the
    layer that uses it asks for. The graphs are the one source of weight names, shapes and
    dtypes; :mod:`maxwhisper_lib.engine.weight_mapping` produces exactly these tensors (checked by
    :func:`maxwhisper_lib.engine.graphs.check_registry` before a compile, and by tests on TOY_DIMS).

    Layouts: linear weights ``(in, out)`` in ``dtype``; with ``row_dtype`` the decoder's row
    weights (:func:`is_row_weight`) ``(out, in)`` in ``row_dtype`` (the Mojo row kernels); with
    ``int8`` the int8 mode's weights (:func:`is_int8_weight`) packed for the int8 kernel with
    their float32 scales and int32 sums.
    """

    def __init__(
        self,
        dtype: DType,
        device: DeviceRef,
        prefix: str = "",
        _cache: dict[str, Weight] | None = None,
        row_dtype: DType | None = None,
        int8: bool = False,
    ) -> None:
        self.int8 = int8
        self.dtype = dtype
        self.device = device
        self.prefix = prefix
        self.row_dtype = row_dtype
        self._cache = {} if _cache is None else _cache

    def is_rows(self, name: str) -> bool:
        """Whether weight ``name`` (relative to this scope) is a row weight."""
        return self.row_dtype is not None and is_row_weight(f"{self.prefix}{name}")

    def is_int8(self, name: str) -> bool:
        """Whether weight ``name`` (relative to this scope) is a packed int8 weight."""
        return self.int8 and is_int8_weight(f"{self.prefix}{name}")

    def __call__(self, name: str, shape: Sequence[int], dtype: DType | None = None) -> Weight:
        """The weight ``name`` of ``shape`` (``dtype``: default the activations', or the row
        weights' for a row weight); ValueError if it was declared before with another shape."""
        full = f"{self.prefix}{name}"
        shape = tuple(int(d) for d in shape)
        if full in self._cache:
            declared = tuple(int(d) for d in self._cache[full].shape)
            if declared != shape:
                raise ValueError(f"graph weight {full!r} declared as {declared} and as {shape}")
            return self._cache[full]
        if dtype is None:
            dtype = self.row_dtype if self.is_rows(name) else self.dtype
        self._cache[full] = Weight(full, dtype, shape, self.device)
        return self._cache[full]

    def int8_weight(
        self, name: str, out_features: int, in_features: int
    ) -> tuple[Weight, Weight, Weight]:
        """An int8 weight ``name`` of ``(out, in)`` as packed for the kernel: (packed, scales,
        sums)."""
        shapes = packed_shapes(out_features, in_features)
        return (
            self(name, shapes[""], DType.int8),
            self(name + SCALE_SUFFIX, shapes[SCALE_SUFFIX], DType.float32),
            self(name + SUM_SUFFIX, shapes[SUM_SUFFIX], DType.int32),
        )

    def scope(self, prefix: str) -> Params:
        """The same weights seen from ``prefix.`` (e.g. ``encoder.blocks.0``)."""
        return Params(
            self.dtype,
            self.device,
            f"{self.prefix}{prefix}.",
            self._cache,
            self.row_dtype,
            self.int8,
        )


def layer_norm(x: TensorValue, p: Params, name: str) -> TensorValue:
    """LayerNorm computed in float32 whatever the activation dtype, as openai-whisper does."""
    width = (int(x.shape[-1]),)
    gamma, beta = p(f"{name}.weight", width), p(f"{name}.bias", width)
    if x.dtype == DType.float32:
        return ops.layer_norm(x, gamma, beta, LAYER_NORM_EPS)
    y = ops.layer_norm(
        ops.cast(x, DType.float32),
        ops.cast(gamma, DType.float32),
        ops.cast(beta, DType.float32),
        LAYER_NORM_EPS,
    )
    return ops.cast(y, x.dtype)


def linear(x: TensorValue, p: Params, name: str, out_features: int) -> TensorValue:
    """``x (..., in) @ weight + bias`` -> ``(..., out_features)``, in the weight's layout (see
    :class:`Params`): a MAX matmul, a Mojo row kernel or the int8 kernel."""
    in_features = int(x.shape[-1])
    weight, bias = f"{name}.weight", p(f"{name}.bias", (out_features,))
    if p.is_int8(weight):
        packed, scale, weight_sum = p.int8_weight(weight, out_features, in_features)
        return int8_product(x, packed, scale, weight_sum, bias, out_features)
    if p.is_rows(weight):
        return linear_rows(x, p(weight, (out_features, in_features)), bias)
    return x @ p(weight, (in_features, out_features)) + bias


def int8_linear(
    x: TensorValue,
    p: Params,
    name: str,
    out_features: int,
    *,
    norm: str | None = None,
    gelu: bool = False,
    residual: TensorValue | None = None,
) -> TensorValue:
    """The int8 linear layer ``name`` with its neighbours in one kernel (the int8 encoder): the
    layer norm ``norm`` before it, exact GELU or ``residual +`` after it."""
    in_features = int(x.shape[-1])
    packed, scale, weight_sum = p.int8_weight(f"{name}.weight", out_features, in_features)
    bias = p(f"{name}.bias", (out_features,))
    width = (in_features,)
    gamma_beta = None if norm is None else (p(f"{norm}.weight", width), p(f"{norm}.bias", width))
    return int8_product_fused(
        x, packed, scale, weight_sum, bias, norm=gamma_beta, gelu=gelu, residual=residual
    )


def mlp(x: TensorValue, p: Params) -> TensorValue:
    """Whisper's MLP: Linear(d, 4d) -> exact GELU -> Linear(4d, d)."""
    width = int(x.shape[-1])
    return linear(ops.gelu(linear(x, p, "mlp.fc1", 4 * width)), p, "mlp.fc2", width)


def split_heads(x: TensorValue, n_head: int) -> TensorValue:
    """``(batch, time, width)`` -> ``(batch, heads, time, head_width)``."""
    batch, time, width = x.shape
    return ops.permute(ops.reshape(x, [batch, time, n_head, int(width) // n_head]), [0, 2, 1, 3])


def split_heads_transposed(x: TensorValue, n_head: int) -> TensorValue:
    """``(batch, time, width)`` -> ``(batch, heads, head_width, time)``: keys for ``q @ k``."""
    batch, time, width = x.shape
    return ops.permute(ops.reshape(x, [batch, time, n_head, int(width) // n_head]), [0, 2, 3, 1])


def merge_heads(x: TensorValue) -> TensorValue:
    """``(batch, heads, time, head_width)`` -> ``(batch, time, width)``."""
    batch, heads, time, head_width = x.shape
    return ops.reshape(ops.permute(x, [0, 2, 1, 3]), [batch, time, int(heads) * int(head_width)])


def attention_scores(q: TensorValue, k_t: TensorValue) -> TensorValue:
    """Scaled dot products ``q @ k / sqrt(head_width)`` in float32, ``(batch, heads, n_q, n_k)``."""
    head_width = int(q.shape[-1])
    scores = (q * (1.0 / math.sqrt(head_width))) @ k_t
    return scores if scores.dtype == DType.float32 else ops.cast(scores, DType.float32)


def attend(scores: TensorValue, v: TensorValue, mask: TensorValue | None = None) -> TensorValue:
    """softmax(scores + mask) @ v, merged back to ``(batch, n_q, width)``."""
    if mask is not None:
        scores = scores + mask
    weights = ops.softmax(scores)
    if weights.dtype != v.dtype:
        weights = ops.cast(weights, v.dtype)
    return merge_heads(weights @ v)


def self_attention_qkv(x: TensorValue, p: Params, name: str, n_head: int):
    """Fused QKV projection -> ``(q, k_t, v)`` split into heads (keys transposed)."""
    width = int(x.shape[-1])
    qkv = linear(x, p, f"{name}.qkv", 3 * width)
    q, k, v = ops.split(qkv, [width, width, width], axis=-1)
    return split_heads(q, n_head), split_heads_transposed(k, n_head), split_heads(v, n_head)


def encoder_block(x: TensorValue, p: Params, n_head: int) -> TensorValue:
    """Residual attention block without mask or cross-attention (the audio encoder's); in the
    int8 mode its self-attention is the int8 kernel (:func:`.custom_ops.self_attention_int8`)."""
    width = int(x.shape[-1])
    if p.int8:  # layer norms, GELU and residual additions inside the int8 kernels
        qkv = int8_linear(x, p, "attn.qkv", 3 * width, norm="attn_ln")
        attended = self_attention_int8(qkv, n_head)
        x = int8_linear(attended, p, "attn.out", width, residual=x)
        hidden = int8_linear(x, p, "mlp.fc1", 4 * width, norm="mlp_ln", gelu=True)
        return int8_linear(hidden, p, "mlp.fc2", width, residual=x)
    q, k_t, v = self_attention_qkv(layer_norm(x, p, "attn_ln"), p, "attn", n_head)
    attended = attend(attention_scores(q, k_t), v)
    x = x + linear(attended, p, "attn.out", width)
    return x + mlp(layer_norm(x, p, "mlp_ln"), p)


def cross_keys_values(xa: TensorValue, p: Params, n_head: int) -> tuple[TensorValue, TensorValue]:
    """One decoder block's cross-attention keys and values, both ``(b, h, ctx, dh)``.

    Keys are kept row-major per position and transposed inside the attention product: on MAX
    26.7's CPU backend ``q @ transpose(k)`` with one query row is a quarter faster per decoder
    step than ``q @ k_t`` with keys stored ``(b, h, dh, ctx)`` (half at batch 5), bit for bit the
    same result (``scripts/probes/decoder_ablation.py`` times the step).
    """
    width = int(xa.shape[-1])
    k, v = ops.split(linear(xa, p, "cross_attn.kv", 2 * width), [width, width], axis=-1)
    return split_heads(k, n_head), split_heads(v, n_head)


def cross_attention(
    x: TensorValue,
    p: Params,
    n_head: int,
    cross_k: TensorValue,
    cross_v: TensorValue,
    cross_rows: TensorValue | None = None,
) -> tuple[TensorValue, TensorValue | None]:
    """The residual cross-attention sub-block: ``(x + attention output, scores before softmax)``;
    with ``cross_rows`` the Mojo kernel over per-window keys/values (no scores come back), see
    :func:`decoder_block`."""
    width = int(x.shape[-1])
    query = linear(layer_norm(x, p, "cross_attn_ln"), p, "cross_attn.query", width)
    if cross_rows is not None:
        scores = None
        attended = cross_attention_rows(query, cross_k, cross_v, cross_rows)
    else:
        scores = attention_scores(split_heads(query, n_head), ops.transpose(cross_k, -1, -2))
        attended = attend(scores, cross_v)
    return x + linear(attended, p, "cross_attn.out", width), scores


def _attend_self(
    q: TensorValue,
    k_t: TensorValue,
    v: TensorValue,
    mask: TensorValue,
    past: tuple[TensorValue, TensorValue] | None,
) -> TensorValue:
    """MAX ops: the new positions attend to ``past`` (if any) and to each other under ``mask``."""
    if past is None:
        return attend(attention_scores(q, k_t), v, mask)
    past_k_t, past_v = past
    capacity = past_k_t.shape[-1]
    scores = ops.concat([attention_scores(q, past_k_t), attention_scores(q, k_t)], axis=-1)
    weights = ops.softmax(scores + mask)
    if weights.dtype != v.dtype:
        weights = ops.cast(weights, v.dtype)
    w_past = weights[:, :, :, :capacity]
    w_new = weights[:, :, :, (slice(int(capacity), None), q.shape[2])]
    return merge_heads(w_past @ past_v + w_new @ v)


def self_attention(
    x: TensorValue,
    p: Params,
    n_head: int,
    mask: TensorValue,
    past: tuple[TensorValue, TensorValue] | None = None,
    cache: tuple[BufferValue, BufferValue, TensorValue] | None = None,
) -> tuple[TensorValue, TensorValue | None, TensorValue | None]:
    """The residual self-attention sub-block of :func:`decoder_block` (see there):
    ``(x + attention output, new keys transposed, new values)``, no keys/values with ``cache``."""
    width = int(x.shape[-1])
    if cache is not None:
        qkv = linear(layer_norm(x, p, "attn_ln"), p, "attn.qkv", 3 * width)
        attended = self_attention_cached(qkv, cache[2], cache[0], cache[1])
        return x + linear(attended, p, "attn.out", width), None, None
    q, k_t, v = self_attention_qkv(layer_norm(x, p, "attn_ln"), p, "attn", n_head)
    return x + linear(_attend_self(q, k_t, v, mask, past), p, "attn.out", width), k_t, v


def decoder_block(
    x: TensorValue,
    p: Params,
    n_head: int,
    cross_k: TensorValue,
    cross_v: TensorValue,
    self_mask: TensorValue,
    past: tuple[TensorValue, TensorValue] | None = None,
    cross_rows: TensorValue | None = None,
    cache: tuple[BufferValue, BufferValue, TensorValue] | None = None,
) -> tuple[TensorValue, TensorValue | None, TensorValue | None, TensorValue | None]:
    """Residual block of the text decoder for ``n_new`` new positions.

    ``past`` is this block's cached keys ``(b, h, dh, cap)`` and values ``(b, h, cap, dh)``; the
    new positions attend to the cache and to each other under ``self_mask``, an additive float32
    mask ``(n_new, cap + n_new)`` (``(n_new, n_new)`` without a cache) built by the caller: masks
    computed inside the graph from ``ops.range`` are silently dropped by MAX 26.7's CPU fusion of
    mask + softmax, so they are graph inputs. Without ``cache`` no buffer is read or written here.

    With ``cross_rows`` (the CPU step graph) ``cross_k``/``cross_v`` hold one window each,
    ``(windows, h, ctx, dh)``, sequence ``b`` attends to window ``cross_rows[b]``, and the
    cross-attention runs as the Mojo kernel (no scores come back).

    With ``cache`` (the CPU step graph: this block's key and value buffers, both ``(b, h, cap,
    dh)``, and the number of positions they hold) the self-attention is the Mojo kernel, which
    writes the new keys/values into the buffers itself and reads only their filled slots;
    ``past`` and ``self_mask`` are then unused and no new keys/values come back.

    Returns ``(x, new_k_t, new_v, cross_scores)``: the block output, the new positions' keys and
    values (for the caller to store; None with ``cache``), and the cross-attention scores before
    softmax (or None).
    """
    x, k_t, v = self_attention(x, p, n_head, self_mask, past, cache)
    x, cross_scores = cross_attention(x, p, n_head, cross_k, cross_v, cross_rows)
    x = x + mlp(layer_norm(x, p, "mlp_ln"), p)
    return x, k_t, v, cross_scores
