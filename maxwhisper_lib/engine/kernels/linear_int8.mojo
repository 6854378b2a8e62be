# int8 linear layers for the CPU: y = dequantize(quantize(x) @ w_q.T) (+ b), CTranslate2's scheme.
#
#   x     (m, k) float32 activations, quantized here per row: s_x = max|x_row| / 127,
#         q_x = clamp(floor(x * (127 / max|x_row|) + 0.5), -127, 127)
#   w     (blocks, k / 4, 64) int8: the weight quantized per output channel, packed for the
#         int8 dot-product instruction: block j holds outputs 16j .. 16j + 15, and for each group
#         of 4 inputs, 16 outputs x 4 bytes (the layout ``maxwhisper_lib.quantization`` writes;
#         blocks come in multiples of 4, padded with zero rows)
#   scale (blocks * 16,) float32: each output channel's weight scale s_w
#   wsum  (blocks * 16,) int32: each output channel's sum of q_w (undoes the +128 shift below)
#   b     (n,) float32
#   y     (m, n) float32: float32(acc - 128 * wsum) * (s_x * s_w) + b, where
#         acc = sum over k of (q_x + 128) * q_w, exact in int32
#
# Fused forms (the int8 encoder): ``linear_int8_ln`` takes x through a layer norm (gamma, beta,
# eps 1e-5, float32) as it quantizes each row; ``_gelu`` applies exact GELU to y, ``_add`` adds a
# residual r (m, n) to it; ``linear_int8_ln_gelu`` both of the first two.
#
# AVX-512 VNNI's vpdpbusd multiplies unsigned by signed bytes, so the activations are shifted
# to 1 .. 255 and the shift is taken back with the weight sums. Each output lane accumulates
# its own 4-byte dot products (no horizontal sums); a tile is 4 activation rows x 64 outputs.
# On AVX2 without VNNI, vpmaddubsw multiplies |w| (unsigned) by the activation carrying w's
# sign (vpsignb), adding pairs into int16 (at most 2 x 127 x 127: never saturates), and
# vpmaddwd adds those pairs into the same int32 lanes: the activations stay signed (no shift)
# and a tile is 4 rows x 16 outputs (8 int32 vectors of 256 bits). All paths give the same
# exact int32 sums; elsewhere plain SIMD runs it (``matmul_int8_portable`` forces that,
# ``matmul_int8_avx2`` the AVX2 path, for the tests).

from extensibility import InputTensor, OutputTensor, register
from max.algorithm import sync_parallelize
from max.gpu.host import DeviceContext
from max.gpu.host.device_context import DeviceContextBase
from max.runtime.asyncrt import parallelism_level
from std.math import floor, sqrt
from std.memory import alloc, bitcast
from std.sys import llvm_intrinsic
from std.sys.info import CompilationTarget

comptime F32 = DType.float32
comptime I32 = DType.int32
comptime LANES = 16  # outputs per block: one 512-bit vector of int32 sums
comptime BLOCKS_PER_TILE = 4
comptime ROWS_PER_TILE = 4
comptime ROWS_PER_CHUNK = 64  # activation rows per work item (the encoder's long inputs)
comptime GROUPS_PER_PASS = 64  # 256 inputs: a tile's weights (16 KB) and rows stay in L1
comptime SHIFT = 128
comptime LN_EPS = Float32(1e-5)
comptime EPILOGUE_NONE = 0
comptime EPILOGUE_GELU = 1  # exact GELU: x (1 + erf(x / sqrt 2)) / 2
comptime EPILOGUE_ADD = 2  # + a residual r (m, n)


# erf(x) = x P(x^2) / Q(x^2) on [-4, 4] (absolute error below 5e-7; erf(4) = 1 - 1.5e-8)
comptime ERF_P = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05, -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)
comptime ERF_Q = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03, -1.42647390514189e-02)


@always_inline
def _erf[width: Int](x: SIMD[F32, width]) -> SIMD[F32, width]:
    """erf by a rational function with no division on AVX-512 (vrcp14ps and one Newton step:
    relative error about 1e-7); a few times cheaper than the library's exp-based one."""
    var xc = min(max(x, Float32(-4)), Float32(4))
    var x2 = xc * xc
    var p = SIMD[F32, width](Float32(ERF_P[0]))
    comptime for i in range(1, 7):
        p = p.fma(x2, Float32(ERF_P[i]))
    var q = SIMD[F32, width](Float32(ERF_Q[0]))
    comptime for i in range(1, 5):
        q = q.fma(x2, Float32(ERF_Q[i]))
    comptime if width == 16 and CompilationTarget.has_avx512f():
        var r = llvm_intrinsic["llvm.x86.avx512.rcp14.ps.512", SIMD[F32, width], has_side_effect=False](
            q, SIMD[F32, width](0), UInt16(0xFFFF)
        )
        r = r * (Float32(2) - q * r)
        return xc * p * r
    else:
        return xc * p / q


@always_inline
def _epilogue[kind: Int, width: Int](v: SIMD[F32, width], residual: SIMD[F32, width]) -> SIMD[F32, width]:
    comptime if kind == EPILOGUE_GELU:
        return Float32(0.5) * v * (Float32(1) + _erf(v * Float32(0.7071067811865476)))
    else:
        comptime if kind == EPILOGUE_ADD:
            return v + residual
        else:
            return v


@always_inline
def _dot4_avx2(
    acc: SIMD[I32, 8], x: SIMD[DType.int8, 32], w: SIMD[DType.int8, 32], w_abs: SIMD[DType.uint8, 32]
) -> SIMD[I32, 8]:
    """acc + per int32 lane the dot product of 4 signed bytes of ``x`` with 4 of ``w``
    (``w_abs`` = |w|): vpsignb, vpmaddubsw, vpmaddwd."""
    var signed_x = llvm_intrinsic["llvm.x86.avx2.psign.b", SIMD[DType.int8, 32], has_side_effect=False](x, w)
    var pairs = llvm_intrinsic[
        "llvm.x86.avx2.pmadd.ub.sw", SIMD[DType.int16, 16], has_side_effect=False
    ](w_abs, signed_x)
    return acc + llvm_intrinsic["llvm.x86.avx2.pmadd.wd", SIMD[I32, 8], has_side_effect=False](
        pairs, SIMD[DType.int16, 16](1)
    )


@always_inline
def _dot4[vnni: Bool](
    acc: SIMD[I32, LANES], a: SIMD[I32, LANES], b: SIMD[I32, LANES]
) -> SIMD[I32, LANES]:
    """acc + per lane the dot product of 4 unsigned bytes of ``a`` with 4 signed bytes of ``b``."""
    comptime if vnni:
        return llvm_intrinsic[
            "llvm.x86.avx512.vpdpbusd.512", SIMD[I32, LANES], has_side_effect=False
        ](acc, bitcast[DType.int8, 4 * LANES](a), bitcast[DType.int8, 4 * LANES](b))
    else:
        var p = bitcast[DType.uint8, 4 * LANES](a).cast[I32]() * bitcast[
            DType.int8, 4 * LANES
        ](b).cast[I32]()
        var pairs = p.deinterleave()
        var twos = pairs[0] + pairs[1]
        var quads = twos.deinterleave()
        return acc + quads[0] + quads[1]


@always_inline
def _quantize_row[shift: Int](src: Pointer[Float32, ...], dst: Pointer[mut=True, UInt8, ...], k: Int) -> Float32:
    """The ``k`` values at ``src`` quantized to ``dst`` (plus ``shift``); their scale."""
    var k_vec = k - k % LANES
    var top_v = SIMD[F32, LANES](0)
    for kk in range(0, k_vec, LANES):
        top_v = max(top_v, abs(src.unsafe_load[width=LANES](kk)))
    var top = top_v.reduce_max()
    for kk in range(k_vec, k):
        top = max(top, abs(src.unsafe_load(kk)))
    var inv = Float32(127) / top if top > 0 else Float32(0)
    for kk in range(0, k_vec, LANES):
        var q = floor(src.unsafe_load[width=LANES](kk) * inv + Float32(0.5))
        q = min(max(q, Float32(-127)), Float32(127))
        dst.unsafe_store(kk, (q.cast[I32]() + Int32(shift)).cast[DType.uint8]())
    for kk in range(k_vec, k):
        var q = floor(src.unsafe_load(kk) * inv + Float32(0.5))
        q = min(max(q, Float32(-127)), Float32(127))
        dst.unsafe_store(kk, (Int32(q) + Int32(shift)).cast[DType.uint8]())
    return top / Float32(127)


@always_inline
def _layer_norm_row(src: Pointer[Float32, ...], dst: Pointer[mut=True, Float32, ...], gp: Pointer[Float32, ...], bp: Pointer[Float32, ...], k: Int):
    """``dst`` = the layer norm of the ``k`` values at ``src`` (float32: mean, then the mean
    squared deviation, eps 1e-5) times ``gp`` plus ``bp``."""
    var k_vec = k - k % LANES
    var sum_v = SIMD[F32, LANES](0)
    for kk in range(0, k_vec, LANES):
        sum_v += src.unsafe_load[width=LANES](kk)
    var total = sum_v.reduce_add()
    for kk in range(k_vec, k):
        total += src.unsafe_load(kk)
    var mean = total / Float32(k)
    var sq_v = SIMD[F32, LANES](0)
    for kk in range(0, k_vec, LANES):
        var d = src.unsafe_load[width=LANES](kk) - mean
        sq_v += d * d
    var sq = sq_v.reduce_add()
    for kk in range(k_vec, k):
        var d = src.unsafe_load(kk) - mean
        sq += d * d
    var rstd = Float32(1) / sqrt(sq / Float32(k) + LN_EPS)
    for kk in range(0, k_vec, LANES):
        var v = (src.unsafe_load[width=LANES](kk) - mean) * rstd
        dst.unsafe_store(kk, v * gp.unsafe_load[width=LANES](kk) + bp.unsafe_load[width=LANES](kk))
    for kk in range(k_vec, k):
        dst.unsafe_store(kk, (src.unsafe_load(kk) - mean) * rstd * gp.unsafe_load(kk) + bp.unsafe_load(kk))


def _linear_int8[has_bias: Bool, vnni: Bool, avx2: Bool = False, norm: Bool = False, epilogue: Int = EPILOGUE_NONE](
    y: OutputTensor[dtype=F32, rank=2, ...],
    x: InputTensor[dtype=F32, rank=2, ...],
    w: InputTensor[dtype=DType.int8, rank=3, ...],
    scale: InputTensor[dtype=F32, rank=1, ...],
    wsum: InputTensor[dtype=I32, rank=1, ...],
    b: InputTensor[dtype=F32, ...],
    gamma: InputTensor[dtype=F32, ...],
    beta: InputTensor[dtype=F32, ...],
    r: InputTensor[dtype=F32, ...],
    ctx: DeviceContext,
) raises:
    """``norm``: x through a layer norm with ``gamma``, ``beta`` (each (k,)) before it is
    quantized; ``epilogue``: EPILOGUE_GELU, or EPILOGUE_ADD of ``r`` (m, n); unused inputs may
    be any tensor."""
    var m = x.dim_size(0)
    var k = x.dim_size(1)
    var n = y.dim_size(1)
    var blocks = w.dim_size(0)
    if k % 4 != 0 or w.dim_size(1) * 4 != k or w.dim_size(2) != 4 * LANES:
        raise Error("linear_int8: expected x (m, k) and packed w (blocks, k / 4, 64)")
    comptime blocks_per_tile = 1 if avx2 and not vnni else BLOCKS_PER_TILE
    comptime shift = 0 if avx2 and not vnni else SHIFT  # AVX2 keeps the activations signed
    if blocks % blocks_per_tile != 0 or blocks * LANES < n or y.dim_size(0) != m:
        raise Error("linear_int8: the packed weight does not cover y's outputs")
    if scale.dim_size(0) != blocks * LANES or wsum.dim_size(0) != blocks * LANES:
        raise Error("linear_int8: one scale and one weight sum per packed output expected")
    comptime if norm:
        if gamma.dim_size(0) != k or beta.dim_size(0) != k:
            raise Error("linear_int8: the layer norm's gamma and beta must have x's width")
    comptime if epilogue == EPILOGUE_ADD:
        if r.dim_size(0) != m or r.dim_size(1) != n:
            raise Error("linear_int8: the residual must be (m, n) like y")
    if m == 0:
        return
    var xp = x.unsafe_ptr()
    var gp = gamma.unsafe_ptr()
    var betap = beta.unsafe_ptr()
    var rp = r.unsafe_ptr()
    var wp = w.unsafe_ptr().unsafe_bitcast[Int32]()
    var sp = scale.unsafe_ptr()
    var cp = wsum.unsafe_ptr()
    var bp = b.unsafe_ptr()
    var yp = y.unsafe_ptr()
    var cpu_ctx = Optional(rebind[DeviceContextBase[CompilationTarget()]](ctx))
    var workers = max(1, parallelism_level(cpu_ctx))

    # Activations: one scale per row, bytes shifted to 1 .. 255 (AVX2: signed, not shifted).
    var xq = alloc[UInt8](m * k)
    var xs = alloc[Float32](m)

    var q_tasks = workers if m >= 16 else 1  # a few decoding rows: not worth a thread

    def quantize_rows(task: Int) {var xp, var xq, var xs, var m, var k, var q_tasks, var gp, var betap}:
        var per = (m + q_tasks - 1) // q_tasks
        var normed = alloc[Float32](k if norm else 0)
        for row in range(task * per, min(m, (task + 1) * per)):
            var dst = xq.unsafe_offset(row * k)
            comptime if norm:  # the row through the layer norm, then quantized from there
                _layer_norm_row(xp.unsafe_offset(row * k), normed, gp, betap, k)
                xs.unsafe_store(row, _quantize_row[shift](normed, dst, k))
            else:
                xs.unsafe_store(row, _quantize_row[shift](xp.unsafe_offset(row * k), dst, k))
        normed.free()

    if q_tasks == 1:
        quantize_rows(0)
    else:
        sync_parallelize(quantize_rows, q_tasks, cpu_ctx)
    var xq32 = xq.unsafe_bitcast[Int32]()
    var groups = k // 4

    # Rows m0 .. m0 + mb - 1 against blocks blk0 .. blk0 + 3, input groups g0 .. g1 - 1; the
    # running sums start from ``partial`` unless ``first`` and go back there unless ``last``.
    def tile[mb: Int](m0: Int, blk0: Int, g0: Int, g1: Int, partial: Pointer[mut=True, Int32, ...], first: Bool, last: Bool) {var xq32, var xs, var wp, var sp, var cp, var bp, var yp, var rp, var groups, var n}:
        comptime tile_lanes = blocks_per_tile * LANES
        var acc = SIMD[I32, mb * tile_lanes](0)  # row i, block j: lanes (i * 4 + j) * 16 ..
        if not first:
            acc = partial.unsafe_load[width=mb * tile_lanes](0)
        comptime if avx2 and not vnni:
            for g in range(g0, g1):
                var wv = bitcast[DType.int8, 4 * LANES](
                    wp.unsafe_load[width=LANES]((blk0 * groups + g) * LANES)
                )
                var w_lo = wv.slice[32, offset=0]()  # outputs 0 .. 7, 4 inputs each
                var w_hi = wv.slice[32, offset=32]()  # outputs 8 .. 15
                var a_lo = bitcast[DType.uint8, 32](abs(w_lo))
                var a_hi = bitcast[DType.uint8, 32](abs(w_hi))
                comptime for i in range(mb):
                    var xb = bitcast[DType.int8, 32](
                        SIMD[I32, 8](xq32.unsafe_load((m0 + i) * groups + g))
                    )
                    comptime at = i * LANES
                    acc = acc.insert[offset=at](
                        _dot4_avx2(acc.slice[8, offset=at](), xb, w_lo, a_lo)
                    )
                    acc = acc.insert[offset=at + 8](
                        _dot4_avx2(acc.slice[8, offset=at + 8](), xb, w_hi, a_hi)
                    )
        else:
            for g in range(g0, g1):
                var wv = SIMD[I32, tile_lanes](0)
                comptime for j in range(BLOCKS_PER_TILE):
                    wv = wv.insert[offset=j * LANES](
                        wp.unsafe_load[width=LANES](((blk0 + j) * groups + g) * LANES)
                    )
                comptime for i in range(mb):
                    var xb = SIMD[I32, LANES](xq32.unsafe_load((m0 + i) * groups + g))
                    comptime for j in range(BLOCKS_PER_TILE):
                        comptime at = (i * BLOCKS_PER_TILE + j) * LANES
                        acc = acc.insert[offset=at](
                            _dot4[vnni](
                                acc.slice[LANES, offset=at](), xb, wv.slice[LANES, offset=j * LANES]()
                            )
                        )
        if not last:
            partial.unsafe_store(0, acc)
            return
        comptime for j in range(blocks_per_tile):
            var col = (blk0 + j) * LANES
            if col < n:
                var sv = sp.unsafe_load[width=LANES](col)
                var taken = cp.unsafe_load[width=LANES](col) * Int32(shift)
                comptime for i in range(mb):
                    var row = m0 + i
                    var out = (acc.slice[LANES, offset=(i * blocks_per_tile + j) * LANES]() - taken).cast[F32]() * (
                        sv * xs.unsafe_load(row)
                    )
                    var dst = yp.unsafe_offset(row * n + col)
                    if col + LANES <= n:
                        comptime if has_bias:
                            out = out + bp.unsafe_load[width=LANES](col)
                        var res = SIMD[F32, LANES](0)
                        comptime if epilogue == EPILOGUE_ADD:
                            res = rp.unsafe_load[width=LANES](row * n + col)
                        dst.unsafe_store(0, _epilogue[epilogue, LANES](out, res))
                    else:
                        for lane in range(n - col):
                            var v = out[lane]
                            comptime if has_bias:
                                v = v + bp.unsafe_load(col + lane)
                            var res = Float32(0)
                            comptime if epilogue == EPILOGUE_ADD:
                                res = rp.unsafe_load(row * n + col + lane)
                            dst.unsafe_store(lane, _epilogue[epilogue, 1](SIMD[F32, 1](v), SIMD[F32, 1](res))[0])

    # Work items: (chunk of rows) x (tile of 4 blocks), contiguous runs of items, one per worker.
    # Chunk-major: a chunk's bytes stay in cache while the worker runs every weight tile over
    # them (the weights of a layer fit L2; a window's 1,500 rows of 1,536 inputs do not); with
    # a single chunk (decoding) each worker streams its own contiguous part of w.
    var n_tiles = blocks // blocks_per_tile
    var chunks = (m + ROWS_PER_CHUNK - 1) // ROWS_PER_CHUNK
    var items = n_tiles * chunks
    var n_tasks = min(workers, items)

    # Long inputs are taken GROUPS_PER_PASS groups at a time, so that a tile's weights and its
    # rows' bytes stay in the L1 cache; the int32 sums wait in per-worker scratch in between.
    def task(t: Int) {var tile, var m, var n_tiles, var items, var n_tasks, var groups}:
        var per = (items + n_tasks - 1) // n_tasks
        var scratch = alloc[Int32](ROWS_PER_CHUNK * blocks_per_tile * LANES)
        for item in range(t * per, min(items, (t + 1) * per)):
            var blk0 = (item % n_tiles) * blocks_per_tile
            var start = (item // n_tiles) * ROWS_PER_CHUNK
            var end = min(m, start + ROWS_PER_CHUNK)
            for g0 in range(0, groups, GROUPS_PER_PASS):
                var g1 = min(groups, g0 + GROUPS_PER_PASS)
                var first = g0 == 0
                var last = g1 == groups
                var m0 = start
                while m0 + ROWS_PER_TILE <= end:
                    var sums = scratch.unsafe_offset((m0 - start) * blocks_per_tile * LANES)
                    tile[ROWS_PER_TILE](m0, blk0, g0, g1, sums, first, last)
                    m0 += ROWS_PER_TILE
                if end - m0 >= 2:
                    var sums = scratch.unsafe_offset((m0 - start) * blocks_per_tile * LANES)
                    tile[2](m0, blk0, g0, g1, sums, first, last)
                    m0 += 2
                if end - m0 == 1:
                    var sums = scratch.unsafe_offset((m0 - start) * blocks_per_tile * LANES)
                    tile[1](m0, blk0, g0, g1, sums, first, last)
        scratch.free()

    sync_parallelize(task, n_tasks, cpu_ctx)
    xq.free()
    xs.free()


@register("linear_int8")
struct LinearInt8:
    """y = dequantized int8 product + b (see the file header)."""

    @staticmethod
    def execute[target: StaticString](
        y: OutputTensor[dtype=F32, rank=2, ...],
        x: InputTensor[dtype=F32, rank=2, ...],
        w: InputTensor[dtype=DType.int8, rank=3, ...],
        scale: InputTensor[dtype=F32, rank=1, ...],
        wsum: InputTensor[dtype=I32, rank=1, ...],
        b: InputTensor[dtype=F32, rank=1, ...],
        ctx: DeviceContext,
    ) raises:
        comptime assert target == "cpu", "linear_int8 is a CPU kernel"
        if b.dim_size(0) != y.dim_size(1):
            raise Error("linear_int8: bias length differs from the outputs")
        _linear_int8[True, CompilationTarget.has_vnni(), CompilationTarget.has_avx2()](
            y, x, w, scale, wsum, b, b, b, b, ctx
        )


@register("matmul_int8")
struct MatmulInt8:
    """The same without bias (the tied logits projection)."""

    @staticmethod
    def execute[target: StaticString](
        y: OutputTensor[dtype=F32, rank=2, ...],
        x: InputTensor[dtype=F32, rank=2, ...],
        w: InputTensor[dtype=DType.int8, rank=3, ...],
        scale: InputTensor[dtype=F32, rank=1, ...],
        wsum: InputTensor[dtype=I32, rank=1, ...],
        ctx: DeviceContext,
    ) raises:
        comptime assert target == "cpu", "matmul_int8 is a CPU kernel"
        _linear_int8[False, CompilationTarget.has_vnni(), CompilationTarget.has_avx2()](
            y, x, w, scale, wsum, x, x, x, x, ctx
        )


@register("matmul_int8_portable")
struct MatmulInt8Portable:
    """``matmul_int8`` without the dot-product instruction: the plain path, for its tests."""

    @staticmethod
    def execute[target: StaticString](
        y: OutputTensor[dtype=F32, rank=2, ...],
        x: InputTensor[dtype=F32, rank=2, ...],
        w: InputTensor[dtype=DType.int8, rank=3, ...],
        scale: InputTensor[dtype=F32, rank=1, ...],
        wsum: InputTensor[dtype=I32, rank=1, ...],
        ctx: DeviceContext,
    ) raises:
        comptime assert target == "cpu", "matmul_int8_portable is a CPU kernel"
        _linear_int8[False, False](y, x, w, scale, wsum, x, x, x, x, ctx)


@register("matmul_int8_avx2")
struct MatmulInt8Avx2:
    """``matmul_int8`` on its AVX2 path even where VNNI exists: for its tests (x86 only)."""

    @staticmethod
    def execute[target: StaticString](
        y: OutputTensor[dtype=F32, rank=2, ...],
        x: InputTensor[dtype=F32, rank=2, ...],
        w: InputTensor[dtype=DType.int8, rank=3, ...],
        scale: InputTensor[dtype=F32, rank=1, ...],
        wsum: InputTensor[dtype=I32, rank=1, ...],
        ctx: DeviceContext,
    ) raises:
        comptime assert target == "cpu", "matmul_int8_avx2 is a CPU kernel"
        comptime assert CompilationTarget.has_avx2(), "matmul_int8_avx2 needs AVX2"
        _linear_int8[False, False, True](y, x, w, scale, wsum, x, x, x, x, ctx)


@register("linear_int8_gelu")
struct LinearInt8Gelu:
    """GELU(the int8 product + b): the convolution stem."""

    @staticmethod
    def execute[target: StaticString](
        y: OutputTensor[dtype=F32, rank=2, ...],
        x: InputTensor[dtype=F32, rank=2, ...],
        w: InputTensor[dtype=DType.int8, rank=3, ...],
        scale: InputTensor[dtype=F32, rank=1, ...],
        wsum: InputTensor[dtype=I32, rank=1, ...],
        b: InputTensor[dtype=F32, rank=1, ...],
        ctx: DeviceContext,
    ) raises:
        comptime assert target == "cpu", "linear_int8_gelu is a CPU kernel"
        _linear_int8[True, CompilationTarget.has_vnni(), CompilationTarget.has_avx2(), False, EPILOGUE_GELU](
            y, x, w, scale, wsum, b, b, b, b, ctx
        )


@register("linear_int8_add")
struct LinearInt8Add:
    """The int8 product + b + r: a block's output projections onto the residual stream."""

    @staticmethod
    def execute[target: StaticString](
        y: OutputTensor[dtype=F32, rank=2, ...],
        x: InputTensor[dtype=F32, rank=2, ...],
        w: InputTensor[dtype=DType.int8, rank=3, ...],
        scale: InputTensor[dtype=F32, rank=1, ...],
        wsum: InputTensor[dtype=I32, rank=1, ...],
        b: InputTensor[dtype=F32, rank=1, ...],
        r: InputTensor[dtype=F32, rank=2, ...],
        ctx: DeviceContext,
    ) raises:
        comptime assert target == "cpu", "linear_int8_add is a CPU kernel"
        _linear_int8[True, CompilationTarget.has_vnni(), CompilationTarget.has_avx2(), False, EPILOGUE_ADD](
            y, x, w, scale, wsum, b, b, b, r, ctx
        )


@register("linear_int8_ln")
struct LinearInt8Ln:
    """The int8 product of layer_norm(x; gamma, beta) + b: a block's query/key/value input."""

    @staticmethod
    def execute[target: StaticString](
        y: OutputTensor[dtype=F32, rank=2, ...],
        x: InputTensor[dtype=F32, rank=2, ...],
        w: InputTensor[dtype=DType.int8, rank=3, ...],
        scale: InputTensor[dtype=F32, rank=1, ...],
        wsum: InputTensor[dtype=I32, rank=1, ...],
        b: InputTensor[dtype=F32, rank=1, ...],
        gamma: InputTensor[dtype=F32, rank=1, ...],
        beta: InputTensor[dtype=F32, rank=1, ...],
        ctx: DeviceContext,
    ) raises:
        comptime assert target == "cpu", "linear_int8_ln is a CPU kernel"
        _linear_int8[True, CompilationTarget.has_vnni(), CompilationTarget.has_avx2(), True](
            y, x, w, scale, wsum, b, gamma, beta, b, ctx
        )


@register("linear_int8_ln_gelu")
struct LinearInt8LnGelu:
    """GELU(the int8 product of layer_norm(x; gamma, beta) + b): a block's first MLP layer."""

    @staticmethod
    def execute[target: StaticString](
        y: OutputTensor[dtype=F32, rank=2, ...],
        x: InputTensor[dtype=F32, rank=2, ...],
        w: InputTensor[dtype=DType.int8, rank=3, ...],
        scale: InputTensor[dtype=F32, rank=1, ...],
        wsum: InputTensor[dtype=I32, rank=1, ...],
        b: InputTensor[dtype=F32, rank=1, ...],
        gamma: InputTensor[dtype=F32, rank=1, ...],
        beta: InputTensor[dtype=F32, rank=1, ...],
        ctx: DeviceContext,
    ) raises:
        comptime assert target == "cpu", "linear_int8_ln_gelu is a CPU kernel"
        _linear_int8[True, CompilationTarget.has_vnni(), CompilationTarget.has_avx2(), True, EPILOGUE_GELU](
            y, x, w, scale, wsum, b, gamma, beta, b, ctx
        )
