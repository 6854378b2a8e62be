# The audio encoder's self-attention for the CPU, in one kernel: an experiment, not used by the
# model (scripts/probes/encoder_attention_probe.py times it against MAX's own ops; they were as fast).
#
#   qkv (b, n, 3 * width) float32: the fused query/key/value projection, heads side by side
#   y   (b, n, width) float32: softmax(q_h k_h^T / sqrt(head_width)) v_h per head, merged
#
# MAX's own ops write the (b, heads, n, n) scores to memory (54 MB per layer for a 30-s window),
# read them back for the softmax, write the weights and read them again for the values: at the
# encoder's 1500 positions that costs more than the layer's four linear products. Here each task
# takes QUERY_BLOCK query rows of one head: their scores against every key (QUERY_BLOCK x n
# floats, kept in the core's cache), the softmax in place, then the weighted sum of values.
# Both products are register tiles of ROWS query rows x 2 SIMD vectors, accumulated over the
# shared dimension in float32 (head_width for the scores, n for the values); the keys are first
# transposed once per (sequence, head), into rows padded with zeros to a multiple of the tile,
# so that a tile of keys is one load per head dimension. The row's maximum is subtracted before
# exp, and the weighted sum is divided by the exp sum at the end (the same arithmetic as a
# softmax followed by a product, in another order of rounding).

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
comptime COLUMNS = 2 * WIDTH  # keys (scores) or value columns per register tile
comptime ROWS = 4  # query rows per register tile: 4 x 2 accumulators
comptime QUERY_BLOCK = 32  # query rows per task: their scores stay in the core's cache


@always_inline
def _scores_tile[rows: Int, head_width: Int](
    sp: Pointer[mut=True, Float32, ...],
    qs: Pointer[Float32, ...],
    kt: Pointer[Float32, ...],
    stride: Int,
    r0: Int,
    j0: Int,
):
    """Scores of block rows r0 .. r0 + rows - 1 (``qs``: (QUERY_BLOCK, head_width), scaled)
    against keys j0 .. j0 + COLUMNS - 1 (``kt``: (head_width, stride)) into ``sp`` (row
    stride ``stride``)."""
    var acc = SIMD[F32, rows * COLUMNS](0)
    comptime for d in range(head_width):
        var keys = kt.unsafe_load[width=COLUMNS](d * stride + j0)
        comptime for r in range(rows):
            comptime o = r * COLUMNS
            var q = SIMD[F32, COLUMNS](qs.unsafe_load((r0 + r) * head_width + d))
            acc = acc.insert[offset=o](q.fma(keys, acc.slice[COLUMNS, offset=o]()))
    comptime for r in range(rows):
        sp.unsafe_store((r0 + r) * stride + j0, acc.slice[COLUMNS, offset=r * COLUMNS]())


@always_inline
def _values_tile[rows: Int](
    yp: Pointer[mut=True, Float32, ...],
    sp: Pointer[Float32, ...],
    vp: Pointer[Float32, ...],
    inv: Pointer[Float32, ...],
    stride: Int,
    n: Int,
    v_stride: Int,
    y_stride: Int,
    r0: Int,
    c0: Int,
):
    """Rows r0 .. r0 + rows - 1 of (exp scores ``sp`` @ values ``vp``, rows ``v_stride`` apart)
    at columns c0 .. c0 + COLUMNS - 1, times ``inv`` (1 / exp sum) of each row, into ``yp``
    (rows ``y_stride`` apart)."""
    var acc = SIMD[F32, rows * COLUMNS](0)
    for j in range(n):
        var values = vp.unsafe_load[width=COLUMNS](j * v_stride + c0)
        comptime for r in range(rows):
            comptime o = r * COLUMNS
            var p = SIMD[F32, COLUMNS](sp.unsafe_load((r0 + r) * stride + j))
            acc = acc.insert[offset=o](p.fma(values, acc.slice[COLUMNS, offset=o]()))
    comptime for r in range(rows):
        yp.unsafe_store(
            (r0 + r) * y_stride + c0,
            acc.slice[COLUMNS, offset=r * COLUMNS]() * inv.unsafe_load(r0 + r),
        )


@always_inline
def _softmax_row(sp: Pointer[mut=True, Float32, ...], n: Int) -> Float32:
    """exp(s - max s) in place over ``sp[0 .. n - 1]``; returns 1 / their sum."""
    var n_vec = n - n % WIDTH
    var top_v = SIMD[F32, WIDTH](Float32.MIN)
    for j in range(0, n_vec, WIDTH):
        top_v = max(top_v, sp.unsafe_load[width=WIDTH](j))
    var top = top_v.reduce_max()
    for j in range(n_vec, n):
        top = max(top, sp.unsafe_load(j))
    var total_v = SIMD[F32, WIDTH](0)
    for j in range(0, n_vec, WIDTH):
        var e = exp(sp.unsafe_load[width=WIDTH](j) - top)
        sp.unsafe_store(j, e)
        total_v += e
    var total = total_v.reduce_add()
    for j in range(n_vec, n):
        var e = exp(sp.unsafe_load(j) - top)
        sp.unsafe_store(j, e)
        total += e
    return Float32(1.0) / total


@register("encoder_self_attention")
struct EncoderSelfAttention:
    """See the file header; ``head_width`` is a compile-time parameter, a multiple of
    COLUMNS."""

    @staticmethod
    def execute[target: StaticString, head_width: Int](
        y: OutputTensor[dtype=F32, rank=3, ...],
        qkv: InputTensor[dtype=F32, rank=3, ...],
        ctx: DeviceContext,
    ) raises:
        comptime assert target == "cpu", "encoder_self_attention is a CPU kernel"
        comptime assert head_width % COLUMNS == 0, "head_width must be a multiple of 2 SIMD widths"
        var batch = qkv.dim_size(0)
        var n = qkv.dim_size(1)
        var width = y.dim_size(2)
        if width % head_width != 0 or qkv.dim_size(2) != 3 * width:
            raise Error("encoder_self_attention: expected qkv (b, n, 3 * heads * head_width)")
        if y.dim_size(0) != batch or y.dim_size(1) != n:
            raise Error("encoder_self_attention: output shape does not match qkv")
        var heads = width // head_width
        var stride = (n + COLUMNS - 1) // COLUMNS * COLUMNS  # padded key count
        var xp = qkv.unsafe_ptr()
        var yp = y.unsafe_ptr()
        var keys_t = alloc[Float32](batch * heads * head_width * stride)
        var scale = Float32(1.0) / sqrt(Float32(head_width))
        var cpu_ctx = Optional(rebind[DeviceContextBase[CompilationTarget()]](ctx))

        # Phase 1: each (sequence, head)'s keys transposed, (head_width, stride), zero-padded.
        def transpose_task(task: Int) {var xp, var keys_t, var n, var width, var heads, var stride}:
            var i = task // heads
            var head = task % heads
            var kt = keys_t.unsafe_offset(task * head_width * stride)
            for j in range(n):
                var k = xp.unsafe_load[width=head_width]((i * n + j) * 3 * width + width + head * head_width)
                comptime for d in range(head_width):
                    kt.unsafe_store(d * stride + j, k[d])
            for d in range(head_width):
                for j in range(n, stride):
                    kt.unsafe_store(d * stride + j, Float32(0))

        sync_parallelize(transpose_task, batch * heads, cpu_ctx)

        # Phase 2: one task per (sequence, head, block of QUERY_BLOCK query rows).
        var blocks = (n + QUERY_BLOCK - 1) // QUERY_BLOCK

        def block_task(task: Int) {var xp, var yp, var keys_t, var n, var width, var heads, var stride, var blocks, var scale}:
            var i = task // (heads * blocks)
            var head = (task // blocks) % heads
            var q0 = (task % blocks) * QUERY_BLOCK
            var rows = min(QUERY_BLOCK, n - q0)
            var kt = keys_t.unsafe_offset((i * heads + head) * head_width * stride)
            var qs = alloc[Float32](QUERY_BLOCK * head_width)
            var sp = alloc[Float32](QUERY_BLOCK * stride)
            var inv = alloc[Float32](QUERY_BLOCK)
            for r in range(rows):
                var src = (i * n + q0 + r) * 3 * width + head * head_width
                qs.unsafe_store(r * head_width, xp.unsafe_load[width=head_width](src) * scale)
            var full = rows - rows % ROWS
            for j0 in range(0, stride, COLUMNS):
                for r0 in range(0, full, ROWS):
                    _scores_tile[ROWS, head_width](sp, qs, kt, stride, r0, j0)
                for r0 in range(full, rows):
                    _scores_tile[1, head_width](sp, qs, kt, stride, r0, j0)
            for r in range(rows):
                inv.unsafe_store(r, _softmax_row(sp.unsafe_offset(r * stride), n))
            var vp = xp.unsafe_offset(i * n * 3 * width + 2 * width + head * head_width)
            var out = yp.unsafe_offset((i * n + q0) * width + head * head_width)
            for c0 in range(0, head_width, COLUMNS):
                for r0 in range(0, full, ROWS):
                    _values_tile[ROWS](out, sp, vp, inv, stride, n, 3 * width, width, r0, c0)
                for r0 in range(full, rows):
                    _values_tile[1](out, sp, vp, inv, stride, n, 3 * width, width, r0, c0)
            qs.free()
            sp.free()
            inv.free()

        sync_parallelize(block_task, batch * heads * blocks, cpu_ctx)
        keys_t.free()
