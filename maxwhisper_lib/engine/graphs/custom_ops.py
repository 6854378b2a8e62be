"""MAX-Whisper's own Mojo kernels (``maxwhisper_lib/engine/kernels/``) as graph operations.

``linear_rows`` and ``matmul_rows`` multiply activations by a weight kept in openai-whisper's
``(out, in)`` layout at the checkpoint's precision (float16 widened inside the kernel, float32
accumulation): the decode-shaped products, where MAX 26.7's matmul would need a float32 copy of
a float16 weight on every call. ``cross_attention_rows`` and ``self_attention_cached`` are the
decoder step's attention over stored keys/values (the latter writes the new positions into the
cache itself and reads only its filled slots). CPU only; a graph that uses them is built with
``custom_extensions=KERNEL_EXTENSIONS``.
"""

from __future__ import annotations

from pathlib import Path

from max.dtype import DType
from max.graph import (
    BufferType,
    BufferValue,
    DeviceRef,
    Dim,
    Graph,
    TensorType,
    TensorValue,
    ops,
)

KERNELS_DIR = Path(__file__).resolve().parent.parent / "kernels"
KERNEL_EXTENSIONS = [KERNELS_DIR]
INT8_PATHS = ("best", "avx2", "portable")
"""The int8 kernel's code paths (see :func:`int8_product`)."""


def _rows_product(
    name: str,
    x: TensorValue,
    weight: TensorValue,
    *extra: TensorValue,
    out_width: int | Dim | None = None,
):
    """Apply kernel ``name`` to ``x (..., in)`` and ``weight (out, in)`` -> ``(..., out)``
    (``out_width`` when the weight's rows are not the outputs, e.g. a packed int8 weight)."""
    if x.dtype != DType.float32:
        raise TypeError(f"{name} takes float32 activations, got {x.dtype}")
    width = x.shape[-1]
    out_width = weight.shape[0] if out_width is None else out_width
    leading = list(x.shape[:-1])
    flat = ops.reshape(x, [-1, width]) if x.rank != 2 else x
    (y,) = ops.custom(
        name,
        device=x.device,
        values=[flat, weight, *extra],
        out_types=[TensorType(DType.float32, [flat.shape[0], out_width], device=x.device)],
    )
    y = y.tensor
    return ops.reshape(y, [*leading, out_width]) if x.rank != 2 else y


def linear_rows(x: TensorValue, weight: TensorValue, bias: TensorValue) -> TensorValue:
    """``x @ weight.T + bias`` with ``weight (out, in)`` float16 or float32, ``bias`` float32."""
    return _rows_product("linear_rows", x, weight, bias)


def matmul_rows(x: TensorValue, weight: TensorValue) -> TensorValue:
    """``x @ weight.T`` with ``weight (out, in)`` float16 or float32 (no bias)."""
    return _rows_product("matmul_rows", x, weight)


def int8_product(
    x: TensorValue,
    packed: TensorValue,
    scale: TensorValue,
    weight_sum: TensorValue,
    bias: TensorValue | None = None,
    out_features: int | None = None,
    path: str = "best",
) -> TensorValue:
    """``x (..., in)`` times an int8 weight packed by :func:`~maxwhisper_lib.engine.quantization.
    quantize_linear` (activations quantized per row inside the kernel) ``+ bias`` ->
    ``(..., out)`` float32; ``out_features`` defaults to the bias length. ``path`` (one of
    :data:`INT8_PATHS`): ``"best"`` is the kernel's choice for this CPU (AVX-512 VNNI, else
    AVX2, else plain SIMD); ``"avx2"`` and ``"portable"`` force those (no bias; for tests)."""
    if path not in INT8_PATHS:
        raise ValueError(f"unknown int8 path {path!r}; choose from {INT8_PATHS}")
    out_width = bias.shape[0] if out_features is None else out_features
    name = "linear_int8" if bias is not None else "matmul_int8"
    if path != "best":
        if bias is not None:
            raise ValueError(f"the forced {path} int8 path has no bias")
        name = f"matmul_int8_{path}"
    extra = [scale, weight_sum, *([bias] if bias is not None else [])]
    return _rows_product(name, x, packed, *extra, out_width=out_width)


def int8_product_fused(
    x: TensorValue,
    packed: TensorValue,
    scale: TensorValue,
    weight_sum: TensorValue,
    bias: TensorValue,
    *,
    norm: tuple[TensorValue, TensorValue] | None = None,
    gelu: bool = False,
    residual: TensorValue | None = None,
) -> TensorValue:
    """:func:`int8_product` (with bias) with its neighbours in the same kernel (the int8
    encoder): ``norm=(gamma, beta)`` takes ``x`` through a layer norm first (float32, eps 1e-5),
    ``gelu`` applies exact GELU to the result, ``residual`` (shaped like the result) is added
    to it. ``gelu`` and ``residual`` do not go together; nor do ``norm`` and ``residual``."""
    if residual is not None and (gelu or norm is not None):
        raise ValueError("the int8 kernel adds a residual only to a plain product")
    if norm is None and not gelu and residual is None:
        return int8_product(x, packed, scale, weight_sum, bias)
    name = "linear_int8" + ("_ln" if norm is not None else "") + ("_gelu" if gelu else "")
    extra = [scale, weight_sum, bias, *(norm or ())]
    if residual is not None:
        name = "linear_int8_add"
        extra.append(
            ops.reshape(residual, [-1, residual.shape[-1]]) if residual.rank != 2 else residual
        )
    return _rows_product(name, x, packed, *extra, out_width=bias.shape[0])


ATTENTION_INT8_PATHS = ("best", "avx2", "portable")
"""The int8 self-attention kernel's code paths (see :func:`self_attention_int8`)."""


def self_attention_int8(qkv: TensorValue, heads: int, path: str = "best") -> TensorValue:
    """The encoder's self-attention in int8 (the int8 mode): the fused projection ``qkv (b, T,
    3 * width)`` float32 -> ``(b, T, width)``, heads merged; keys smoothed and quantized per
    token, ``P V`` from 7-bit probabilities and per-channel int8 values (see the kernel).
    ``path``: ``"best"`` for this CPU, or ``"avx2"``/``"portable"`` forced (tests)."""
    if path not in ATTENTION_INT8_PATHS:
        raise ValueError(
            f"unknown int8 attention path {path!r}; choose from {ATTENTION_INT8_PATHS}"
        )
    batch, time, fused = qkv.shape
    width = int(fused) // 3
    name = "self_attention_int8" + ("" if path == "best" else f"_{path}")
    (y,) = ops.custom(
        name,
        device=qkv.device,
        values=[qkv],
        out_types=[TensorType(DType.float32, [batch, time, width], device=qkv.device)],
        parameters={"head_width": width // heads},
    )
    return y.tensor


def build_attention_int8_graph(heads: int, head_width: int, path: str = "best") -> Graph:
    """The int8 self-attention alone: ``qkv (b, T, 3 * heads * head_width)`` -> ``(b, T,
    heads * head_width)``, ``b`` and ``T`` symbolic."""
    device = DeviceRef.CPU()
    qkv_type = TensorType(DType.float32, ["b", "t", 3 * heads * head_width], device=device)
    name = f"mw_attention_int8_{heads}x{head_width}_{path}"
    with Graph(name, input_types=[qkv_type], custom_extensions=KERNEL_EXTENSIONS) as graph:
        graph.output(self_attention_int8(graph.inputs[0].tensor, heads, path))
    return graph


def cross_attention_rows(
    q: TensorValue, keys: TensorValue, values: TensorValue, rows: TensorValue
) -> TensorValue:
    """softmax(q k^T / sqrt(head_width)) v per head: ``q (b, n, width)`` against each sequence's
    window ``rows[b]`` of ``keys``/``values`` ``(windows, heads, ctx, head_width)`` ->
    ``(b, n, width)`` (float32 sums; keys/values float32, or float16 as the int8 mode stores
    them; beams of one window read the same keys/values)."""
    head_width = int(keys.shape[-1])
    if keys.dtype not in (DType.float32, DType.float16) or values.dtype != keys.dtype:
        raise ValueError(f"cross keys/values must be float32 or float16, got {keys.dtype}")
    (y,) = ops.custom(
        "cross_attention_rows" + ("_f16" if keys.dtype == DType.float16 else ""),
        device=q.device,
        values=[q, keys, values, rows],
        out_types=[TensorType(DType.float32, list(q.shape), device=q.device)],
        parameters={"head_width": head_width},
    )
    return y.tensor


def self_attention_cached(
    qkv: TensorValue, offset: TensorValue, keys: BufferValue, values: BufferValue
) -> TensorValue:
    """Causal self-attention of ``n`` new positions over a key/value cache, in place.

    ``qkv (b, n, 3 * width)`` is the fused projection (queries, keys, values side by side),
    ``offset`` (a scalar or ``(1,)`` int64) the number of positions already cached, and
    ``keys``/``values`` the cache buffers ``(b, heads, capacity, head_width)``: the new keys and
    values are written at ``offset .. offset + n - 1`` and position ``t`` attends to slots
    ``0 .. offset + t``. Returns ``(b, n, width)`` float32.
    """
    head_width = int(keys.shape[-1])
    width = int(keys.shape[1]) * head_width
    batch, n_new = qkv.shape[0], qkv.shape[1]
    (y,) = ops.inplace_custom(
        "self_attention_cached",
        device=qkv.device,
        values=[qkv, ops.reshape(offset, [1]), keys, values],
        out_types=[TensorType(DType.float32, [batch, n_new, width], device=qkv.device)],
        parameters={"head_width": head_width},
    )
    return y.tensor


def build_rows_graph(weight_dtype: DType, bias: bool = True) -> Graph:
    """One row kernel alone, every size symbolic: x ``(m, k)`` float32, w ``(n, k)``
    ``weight_dtype`` (and b ``(n,)`` float32) -> ``(m, n)``; for the kernel checks."""
    device = DeviceRef.CPU()
    inputs = [
        TensorType(DType.float32, ["m", "k"], device=device),
        TensorType(weight_dtype, ["n", "k"], device=device),
    ]
    if bias:
        inputs.append(TensorType(DType.float32, ["n"], device=device))
    name = f"mw_{'linear' if bias else 'matmul'}_rows_{weight_dtype.name}"
    with Graph(name, input_types=inputs, custom_extensions=KERNEL_EXTENSIONS) as graph:
        x, w, *b = (v.tensor for v in graph.inputs)
        graph.output(linear_rows(x, w, b[0]) if bias else matmul_rows(x, w))
    return graph


def build_int8_graph(
    bias: bool = True, out_features: int | None = None, path: str = "best"
) -> Graph:
    """One int8 product alone: x ``(m, k)`` float32, the packed weight ``(blocks, k / 4, 64)``
    int8, scales ``(blocks * 16,)`` float32, weight sums ``(blocks * 16,)`` int32, and the bias
    ``(n,)`` -> ``(m, n)``, every size symbolic (one graph serves every layer); without a bias
    the outputs are ``out_features`` (static)."""
    if not bias and out_features is None:
        raise ValueError("an int8 product without a bias needs out_features")
    device = DeviceRef.CPU()
    inputs = [
        TensorType(DType.float32, ["m", "k"], device=device),
        TensorType(DType.int8, ["blocks", "groups", 64], device=device),
        TensorType(DType.float32, ["padded"], device=device),
        TensorType(DType.int32, ["padded"], device=device),
    ]
    if bias:
        inputs.append(TensorType(DType.float32, ["n"], device=device))
    kind = path if path != "best" else ("linear" if bias else "matmul")
    name = f"mw_int8_{kind}" + ("" if bias else f"_{out_features}")
    with Graph(name, input_types=inputs, custom_extensions=KERNEL_EXTENSIONS) as graph:
        x, packed, scale, weight_sum, *b = (v.tensor for v in graph.inputs)
        graph.output(
            int8_product(
                x, packed, scale, weight_sum, b[0] if b else None, None if b else out_features, path
            )
        )
    return graph


def build_cross_attention_graph(
    heads: int, head_width: int, stored_dtype: DType = DType.float32
) -> Graph:
    """``cross_attention_rows`` alone: q ``(b, n, width)``, keys/values ``(windows, heads, ctx,
    head_width)`` in ``stored_dtype`` and rows ``(b,)`` -> ``(b, n, width)``; for the kernel
    checks."""
    device = DeviceRef.CPU()
    stored = TensorType(stored_dtype, ["windows", heads, "ctx", head_width], device=device)
    inputs = [
        TensorType(DType.float32, ["b", "n", heads * head_width], device=device),
        stored,
        stored,
        TensorType(DType.int64, ["b"], device=device),
    ]
    name = f"mw_cross_attention_rows_{heads}x{head_width}_{stored_dtype.name}"
    with Graph(name, input_types=inputs, custom_extensions=KERNEL_EXTENSIONS) as graph:
        graph.output(cross_attention_rows(*(v.tensor for v in graph.inputs)))
    return graph


def build_self_attention_graph(heads: int, head_width: int, capacity: int) -> Graph:
    """``self_attention_cached`` alone: qkv ``(b, n, 3 * width)``, the offset ``()`` and the
    key/value cache buffers ``(b, heads, capacity, head_width)`` -> ``(b, n, width)``."""
    device = DeviceRef.CPU()
    cache = BufferType(DType.float32, ["b", heads, capacity, head_width], device=device)
    inputs = [
        TensorType(DType.float32, ["b", "n", 3 * heads * head_width], device=device),
        TensorType(DType.int64, [], device=device),
        cache,
        cache,
    ]
    name = f"mw_self_attention_cached_{heads}x{head_width}x{capacity}"
    with Graph(name, input_types=inputs, custom_extensions=KERNEL_EXTENSIONS) as graph:
        qkv, offset = graph.inputs[0].tensor, graph.inputs[1].tensor
        keys, values = graph.inputs[2].buffer, graph.inputs[3].buffer
        graph.output(self_attention_cached(qkv, offset, keys, values))
    return graph
