# Cross-attention of decoding queries over stored keys/values, for the CPU.
#
#   q    (b, n, width) float32: the new positions' projected queries, heads side by side
#   k, v (windows, heads, ctx, head_width) float32: each window's keys and values, computed once
#   rows (b,) int64: the window each sequence attends to (beams of one window share it)
#   y    (b, n, width) float32: softmax(q_h k_h^T / sqrt(head_width)) v_h per head, merged
#
# Decoding reads every key and value of a window for each new token, so this is bound by memory
# bandwidth: one task per (sequence, head) streams that head's keys and values once per query
# row, in float32. Sequences that share a window read the same keys/values (no copy per beam).

from extensibility import InputTensor, OutputTensor, register
from max.algorithm import sync_parallelize
from max.gpu.host import DeviceContext
from max.gpu.host.device_context import DeviceContextBase
from std.math import exp, sqrt
from std.memory import alloc
from std.sys import simd_width_of
from std.sys.info import CompilationTarget

comptime F32 = DType.float32
comptime WIDTH = simd_width_of[F32]()


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

        def head_task(task: Int) {var qp, var kp, var vp, var rp, var yp, var n_new, var width, var heads, var n_ctx, var scale}:
            var i = task // heads
            var head = task % heads
            var base = (Int(rp.unsafe_load(i)) * heads + head) * n_ctx * head_width
            var keys = kp.unsafe_offset(base)
            var values = vp.unsafe_offset(base)
            var scores = alloc[Float32](n_ctx)
            for t in range(n_new):
                var offset = (i * n_new + t) * width + head * head_width
                var qv = qp.unsafe_load[width=head_width](offset) * scale
                var top = Float32.MIN
                for j in range(n_ctx):
                    var s = (qv * keys.unsafe_load[width=head_width](j * head_width)).reduce_add()
                    scores.unsafe_store(j, s)
                    top = max(top, s)
                var total = Float32(0)
                var j_vec = n_ctx - n_ctx % WIDTH
                for j in range(0, j_vec, WIDTH):
                    var e = exp(scores.unsafe_load[width=WIDTH](j) - top)
                    scores.unsafe_store(j, e)
                    total += e.reduce_add()
                for j in range(j_vec, n_ctx):
                    var e = exp(scores.unsafe_load(j) - top)
                    scores.unsafe_store(j, e)
                    total += e
                var acc = SIMD[F32, head_width](0)
                for j in range(n_ctx):
                    acc = values.unsafe_load[width=head_width](j * head_width).fma(
                        SIMD[F32, head_width](scores.unsafe_load(j)), acc
                    )
                yp.unsafe_store(offset, acc / total)
            scores.free()

        var cpu_ctx = Optional(rebind[DeviceContextBase[CompilationTarget()]](ctx))
        sync_parallelize(head_task, batch * heads, cpu_ctx)
