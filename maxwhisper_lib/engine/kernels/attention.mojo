# Attention of decoding queries over stored keys/values, for the CPU.
#
# cross_attention_rows: the decoder's cross-attention
#   q    (b, n, width) float32: the new positions' projected queries, heads side by side
#   k, v (windows, heads, ctx, head_width) float32: each window's keys and values, computed once
#        (cross_attention_rows_f16: stored in float16, half the bytes each step reads; widened
#        to float32 as they are loaded, every sum in float32: the int8 mode)
#   rows (b,) int64: the window each sequence attends to (beams of one window share it)
#   y    (b, n, width) float32: softmax(q_h k_h^T / sqrt(head_width)) v_h per head, merged
#
# self_attention_cached: the decoder's causal self-attention over its key/value cache, in place
#   qkv  (b, n, 3 * width) float32: the new positions' fused query/key/value projection
#   offset (1,) int64: how many positions each sequence's cache already holds
#   k, v (b, heads, capacity, head_width) float32, mutable: the cache; the new positions' keys
#        and values are written at offset .. offset + n - 1
#   y    (b, n, width) float32: new position t attends to cache slots 0 .. offset + t
#
# Decoding reads every stored key and value once per new token, so both are bound by memory
# bandwidth: one task per (sequence, head) streams that head's keys and values once per query
# row, in float32. Only filled cache slots are read (not the whole capacity). Cross-attention
# runs one task per (window, head) over every sequence of that window: beams share their
# window's keys/values (no copy per beam) and read them from memory once per step.

from extensibility import InputTensor, OutputTensor, register
from extensibility.managed_tensor_slice import _MutableInputTensor as MutableInputTensor
from max.algorithm import sync_parallelize
from max.gpu.host import DeviceContext
from max.gpu.host.device_context import DeviceContextBase
from std.math import exp, sqrt
from std.memory import alloc
from std.sys import simd_width_of
from std.sys.info import CompilationTarget

comptime F32 = DType.float32
comptime WIDTH = simd_width_of[F32]()


@always_inline
def _attend[head_width: Int, kv: DType](
    qv: SIMD[F32, head_width],
    keys: Pointer[Scalar[kv], ...],
    values: Pointer[Scalar[kv], ...],
    n_keys: Int,
    scores: Pointer[mut=True, Float32, ...],
) -> SIMD[F32, head_width]:
    """Softmax(qv . keys[j]) weighted sum of values[j], j < n_keys (rows of head_width floats);
    ``scores`` is scratch space for n_keys floats. ``qv`` comes scaled."""
    var top = Float32.MIN
    for j in range(n_keys):
        var s = (qv * keys.unsafe_load[width=head_width](j * head_width).cast[F32]()).reduce_add()
        scores.unsafe_store(j, s)
        top = max(top, s)
    var total = Float32(0)
    var j_vec = n_keys - n_keys % WIDTH
    for j in range(0, j_vec, WIDTH):
        var e = exp(scores.unsafe_load[width=WIDTH](j) - top)
        scores.unsafe_store(j, e)
        total += e.reduce_add()
    for j in range(j_vec, n_keys):
        var e = exp(scores.unsafe_load(j) - top)
        scores.unsafe_store(j, e)
        total += e
    var acc = SIMD[F32, head_width](0)
    for j in range(n_keys):
        acc = values.unsafe_load[width=head_width](j * head_width).cast[F32]().fma(
            SIMD[F32, head_width](scores.unsafe_load(j)), acc
        )
    return acc / total


def _cross_attention_rows[head_width: Int, kv: DType](
    y: OutputTensor[dtype=F32, rank=3, ...],
    q: InputTensor[dtype=F32, rank=3, ...],
    k: InputTensor[dtype=kv, rank=4, ...],
    v: InputTensor[dtype=kv, rank=4, ...],
    rows: InputTensor[dtype=DType.int64, rank=1, ...],
    ctx: DeviceContext,
) raises:
    var batch = q.dim_size(0)
    var n_new = q.dim_size(1)
    var width = q.dim_size(2)
    var windows = k.dim_size(0)
    var heads = k.dim_size(1)
    var n_ctx = k.dim_size(2)
    if k.dim_size(3) != head_width or heads * head_width != width:
        raise Error("cross_attention_rows: keys must be (windows, heads, ctx, head_width)")
    if rows.dim_size(0) != batch:
        raise Error("cross_attention_rows: one window row per sequence expected")
    var qp = q.unsafe_ptr()
    var kp = k.unsafe_ptr()
    var vp = v.unsafe_ptr()
    var rp = rows.unsafe_ptr()
    var yp = y.unsafe_ptr()
    for i in range(batch):
        var row = Int(rp.unsafe_load(i))
        if row < 0 or row >= windows:
            raise Error("cross_attention_rows: window row out of range")
    var scale = Float32(1.0) / sqrt(Float32(head_width))

    # One task per (window, head): every sequence of that window in turn, so beams of one
    # window read its keys/values from memory once and from cache after that.
    def window_task(task: Int) {var qp, var kp, var vp, var rp, var yp, var batch, var n_new, var width, var heads, var n_ctx, var scale}:
        var window = task // heads
        var head = task % heads
        var base = (window * heads + head) * n_ctx * head_width
        var scores = alloc[Float32](n_ctx)
        for i in range(batch):
            if Int(rp.unsafe_load(i)) != window:
                continue
            for t in range(n_new):
                var offset = (i * n_new + t) * width + head * head_width
                var qv = qp.unsafe_load[width=head_width](offset) * scale
                yp.unsafe_store(
                    offset,
                    _attend[head_width, kv](
                        qv, kp.unsafe_offset(base), vp.unsafe_offset(base), n_ctx, scores
                    ),
                )
        scores.free()

    var cpu_ctx = Optional(rebind[DeviceContextBase[CompilationTarget()]](ctx))
    sync_parallelize(window_task, windows * heads, cpu_ctx)


@register("cross_attention_rows")
struct CrossAttentionRows:
    """See the file header; ``head_width`` is a compile-time parameter (a power of two)."""

    @staticmethod
    def execute[target: StaticString, head_width: Int](
        y: OutputTensor[dtype=F32, rank=3, ...],
        q: InputTensor[dtype=F32, rank=3, ...],
        k: InputTensor[dtype=F32, rank=4, ...],
        v: InputTensor[dtype=F32, rank=4, ...],
        rows: InputTensor[dtype=DType.int64, rank=1, ...],
        ctx: DeviceContext,
    ) raises:
        comptime assert target == "cpu", "cross_attention_rows is a CPU kernel"
        _cross_attention_rows[head_width, F32](y, q, k, v, rows, ctx)


@register("cross_attention_rows_f16")
struct CrossAttentionRowsF16:
    """``cross_attention_rows`` over keys/values stored in float16 (the int8 mode)."""

    @staticmethod
    def execute[target: StaticString, head_width: Int](
        y: OutputTensor[dtype=F32, rank=3, ...],
        q: InputTensor[dtype=F32, rank=3, ...],
        k: InputTensor[dtype=DType.float16, rank=4, ...],
        v: InputTensor[dtype=DType.float16, rank=4, ...],
        rows: InputTensor[dtype=DType.int64, rank=1, ...],
        ctx: DeviceContext,
    ) raises:
        comptime assert target == "cpu", "cross_attention_rows_f16 is a CPU kernel"
        _cross_attention_rows[head_width, DType.float16](y, q, k, v, rows, ctx)


@register("self_attention_cached")
struct SelfAttentionCached:
    """See the file header; ``head_width`` is a compile-time parameter (a power of two)."""

    @staticmethod
    def execute[target: StaticString, head_width: Int](
        y: OutputTensor[dtype=F32, rank=3, ...],
        qkv: InputTensor[dtype=F32, rank=3, ...],
        offset: InputTensor[dtype=DType.int64, rank=1, ...],
        k: MutableInputTensor[dtype=F32, rank=4, ...],
        v: MutableInputTensor[dtype=F32, rank=4, ...],
        ctx: DeviceContext,
    ) raises:
        comptime assert target == "cpu", "self_attention_cached is a CPU kernel"
        var batch = qkv.dim_size(0)
        var n_new = qkv.dim_size(1)
        var heads = k.dim_size(1)
        var capacity = k.dim_size(2)
        var width = heads * head_width
        if k.dim_size(3) != head_width or qkv.dim_size(2) != 3 * width:
            raise Error("self_attention_cached: expected qkv (b, n, 3 * heads * head_width)")
        if k.dim_size(0) != batch or v.dim_size(0) != batch or v.dim_size(2) != capacity:
            raise Error("self_attention_cached: one cache row per sequence expected")
        var start = Int(offset.unsafe_ptr().unsafe_load(0))
        if start < 0 or start + n_new > capacity:
            raise Error("self_attention_cached: the new positions do not fit the cache")
        var xp = qkv.unsafe_ptr()
        var kp = k.unsafe_ptr()
        var vp = v.unsafe_ptr()
        var yp = y.unsafe_ptr()
        var scale = Float32(1.0) / sqrt(Float32(head_width))

        def head_task(task: Int) {var xp, var kp, var vp, var yp, var n_new, var width, var heads, var capacity, var start, var scale}:
            var i = task // heads
            var head = task % heads
            var base = (i * heads + head) * capacity * head_width
            var keys = kp.unsafe_offset(base)
            var values = vp.unsafe_offset(base)
            for t in range(n_new):
                var src = (i * n_new + t) * 3 * width + head * head_width
                var slot = (start + t) * head_width
                keys.unsafe_store(slot, xp.unsafe_load[width=head_width](src + width))
                values.unsafe_store(slot, xp.unsafe_load[width=head_width](src + 2 * width))
            var scores = alloc[Float32](start + n_new)
            for t in range(n_new):
                var src = (i * n_new + t) * 3 * width + head * head_width
                var qv = xp.unsafe_load[width=head_width](src) * scale
                yp.unsafe_store(
                    (i * n_new + t) * width + head * head_width,
                    _attend[head_width](qv, keys, values, start + t + 1, scores),
                )
            scores.free()

        var cpu_ctx = Optional(rebind[DeviceContextBase[CompilationTarget()]](ctx))
        sync_parallelize(head_task, batch * heads, cpu_ctx)
