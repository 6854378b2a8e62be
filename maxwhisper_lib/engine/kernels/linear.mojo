# Decode-shaped linear layers for the CPU: y = x @ w.T (+ b).
#
#   x (m, k) float32, activations; m = batch x new tokens, small while decoding
#   w (n, k) float16 or float32, openai-whisper's own layout (one contiguous row per output),
#     at the checkpoint's precision: float16 is widened in registers, so every product is the
#     float32 product of the stored values, accumulated in float32
#   b (n,) float32
#   y (m, n) float32
#
# Decoding reads each weight once per token, so these products are bound by memory bandwidth:
# the work is split over the output rows (both cores stream their own part of w), and each
# tile of 4 weight rows is loaded once from memory and used against every activation row from
# cache, MAX_X_ROWS at a time: with few rows (SEQUENTIAL_MAX_X_ROWS) one weight row after the
# other, front to back, else the four rows side by side. NaN and Inf propagate as in any float32
# dot product.

from extensibility import InputTensor, OutputTensor, register
from max.algorithm import sync_parallelize
from max.gpu.host import DeviceContext
from max.gpu.host.device_context import DeviceContextBase
from max.runtime.asyncrt import parallelism_level
from std.sys import simd_width_of, size_of
from std.sys.info import CompilationTarget
from std.sys.intrinsics import PrefetchOptions, prefetch

comptime F32 = DType.float32
comptime WIDTH = simd_width_of[F32]()
comptime ROWS_PER_TILE = 4  # weight rows per tile (fixed: four named accumulators)
# Activation rows per tile: 4 x 4 accumulators fit AVX-512's 32 vector registers; with AVX2's 16
# they spill, and 2 rows per tile measured 1.4x faster at 4-16 rows on an AVX2 CPU.
comptime MAX_X_ROWS = 4 if WIDTH >= 16 else 2
# Up to this many activation rows each weight row is read front to back on its own (four
# accumulators over k): memory is then read in address order, which measured 1.14x faster at one
# row and 1.07x at four (cold 40 MB logits weight, AVX2); with more rows the tile of four weight
# rows, which loads each activation vector once per four rows, is faster (1.19x at eight).
comptime SEQUENTIAL_MAX_X_ROWS = 4
comptime PREFETCH_TILES = 8  # how far ahead each worker asks for its weight rows
comptime CACHE_LINE = 64


@always_inline
def _row[wdt: DType, //, mb: Int, has_bias: Bool](
    yp: Pointer[mut=True, Float32, ...],
    xp: Pointer[Float32, ...],
    wp: Pointer[Scalar[wdt], ...],
    bp: Pointer[Float32, ...],
    k: Int,
    n: Int,
    m0: Int,
    nr: Int,
):
    """Weight row nr against rows m0 .. m0 + mb - 1 of x, reading the row front to back with
    four accumulators over k."""
    var base = nr * k
    var a0 = SIMD[F32, mb * WIDTH](0)
    var a1 = SIMD[F32, mb * WIDTH](0)
    var a2 = SIMD[F32, mb * WIDTH](0)
    var a3 = SIMD[F32, mb * WIDTH](0)
    comptime STEP = 4 * WIDTH
    var k_vec = k - k % STEP
    for kk in range(0, k_vec, STEP):
        var w0 = wp.unsafe_load[width=WIDTH](base + kk).cast[F32]()
        var w1 = wp.unsafe_load[width=WIDTH](base + kk + WIDTH).cast[F32]()
        var w2 = wp.unsafe_load[width=WIDTH](base + kk + 2 * WIDTH).cast[F32]()
        var w3 = wp.unsafe_load[width=WIDTH](base + kk + 3 * WIDTH).cast[F32]()
        comptime for i in range(mb):
            comptime o = i * WIDTH
            var xr = xp.unsafe_offset((m0 + i) * k + kk)
            var x0 = xr.unsafe_load[width=WIDTH](0)
            var x1 = xr.unsafe_load[width=WIDTH](WIDTH)
            var x2 = xr.unsafe_load[width=WIDTH](2 * WIDTH)
            var x3 = xr.unsafe_load[width=WIDTH](3 * WIDTH)
            a0 = a0.insert[offset=o](x0.fma(w0, a0.slice[WIDTH, offset=o]()))
            a1 = a1.insert[offset=o](x1.fma(w1, a1.slice[WIDTH, offset=o]()))
            a2 = a2.insert[offset=o](x2.fma(w2, a2.slice[WIDTH, offset=o]()))
            a3 = a3.insert[offset=o](x3.fma(w3, a3.slice[WIDTH, offset=o]()))
    var acc = (a0 + a1) + (a2 + a3)
    comptime for i in range(mb):
        var row = m0 + i
        var s = acc.slice[WIDTH, offset=i * WIDTH]().reduce_add()
        for kk in range(k_vec, k):
            s += xp.unsafe_load(row * k + kk) * wp.unsafe_load(base + kk).cast[F32]()
        comptime if has_bias:
            s += bp.unsafe_load(nr)
        yp.unsafe_store(row * n + nr, s)


@always_inline
def _tile[wdt: DType, //, mb: Int, has_bias: Bool](
    yp: Pointer[mut=True, Float32, ...],
    xp: Pointer[Float32, ...],
    wp: Pointer[Scalar[wdt], ...],
    bp: Pointer[Float32, ...],
    k: Int,
    n: Int,
    m0: Int,
    n0: Int,
):
    """Weight rows n0 .. n0 + 3 (clamped to n - 1: re-read, never stored) against rows
    m0 .. m0 + mb - 1 of x; accumulators hold mb x WIDTH partial sums per weight row."""
    var r0 = n0 * k
    var r1 = min(n0 + 1, n - 1) * k
    var r2 = min(n0 + 2, n - 1) * k
    var r3 = min(n0 + 3, n - 1) * k
    var a0 = SIMD[F32, mb * WIDTH](0)
    var a1 = SIMD[F32, mb * WIDTH](0)
    var a2 = SIMD[F32, mb * WIDTH](0)
    var a3 = SIMD[F32, mb * WIDTH](0)
    var k_vec = k - k % WIDTH
    for kk in range(0, k_vec, WIDTH):
        var xv = SIMD[F32, mb * WIDTH](0)
        comptime for i in range(mb):
            xv = xv.insert[offset=i * WIDTH](xp.unsafe_load[width=WIDTH]((m0 + i) * k + kk))
        var w0 = wp.unsafe_load[width=WIDTH](r0 + kk).cast[F32]()
        var w1 = wp.unsafe_load[width=WIDTH](r1 + kk).cast[F32]()
        var w2 = wp.unsafe_load[width=WIDTH](r2 + kk).cast[F32]()
        var w3 = wp.unsafe_load[width=WIDTH](r3 + kk).cast[F32]()
        var v0 = SIMD[F32, mb * WIDTH](0)
        var v1 = SIMD[F32, mb * WIDTH](0)
        var v2 = SIMD[F32, mb * WIDTH](0)
        var v3 = SIMD[F32, mb * WIDTH](0)
        comptime for i in range(mb):
            v0 = v0.insert[offset=i * WIDTH](w0)
            v1 = v1.insert[offset=i * WIDTH](w1)
            v2 = v2.insert[offset=i * WIDTH](w2)
            v3 = v3.insert[offset=i * WIDTH](w3)
        a0 = xv.fma(v0, a0)
        a1 = xv.fma(v1, a1)
        a2 = xv.fma(v2, a2)
        a3 = xv.fma(v3, a3)
    comptime for i in range(mb):
        var row = m0 + i
        var s0 = a0.slice[WIDTH, offset=i * WIDTH]().reduce_add()
        var s1 = a1.slice[WIDTH, offset=i * WIDTH]().reduce_add()
        var s2 = a2.slice[WIDTH, offset=i * WIDTH]().reduce_add()
        var s3 = a3.slice[WIDTH, offset=i * WIDTH]().reduce_add()
        for kk in range(k_vec, k):
            var xs = xp.unsafe_load(row * k + kk)
            s0 += xs * wp.unsafe_load(r0 + kk).cast[F32]()
            s1 += xs * wp.unsafe_load(r1 + kk).cast[F32]()
            s2 += xs * wp.unsafe_load(r2 + kk).cast[F32]()
            s3 += xs * wp.unsafe_load(r3 + kk).cast[F32]()
        comptime if has_bias:
            s0 += bp.unsafe_load(n0)
            s1 += bp.unsafe_load(min(n0 + 1, n - 1))
            s2 += bp.unsafe_load(min(n0 + 2, n - 1))
            s3 += bp.unsafe_load(min(n0 + 3, n - 1))
        var out = yp.unsafe_offset(row * n + n0)
        out.unsafe_store(0, s0)
        if n0 + 1 < n:
            out.unsafe_store(1, s1)
        if n0 + 2 < n:
            out.unsafe_store(2, s2)
        if n0 + 3 < n:
            out.unsafe_store(3, s3)


def product_tiles[wdt: DType, //, has_bias: Bool](
    yp: Pointer[mut=True, Float32, ...],
    xp: Pointer[Float32, ...],
    wp: Pointer[Scalar[wdt], ...],
    bp: Pointer[Float32, ...],
    m: Int,
    k: Int,
    n: Int,
    first_tile: Int,
    end_tile: Int,
):
    """Tiles ``first_tile .. end_tile - 1`` of ROWS_PER_TILE weight rows against every row of x
    (y (m, n) = x (m, k) @ w (n, k).T + b), MAX_X_ROWS activation rows at a time; the rows of a
    tile PREFETCH_TILES ahead are requested first, so memory keeps streaming while one computes."""
    comptime line = CACHE_LINE // size_of[wdt]()
    for t in range(first_tile, end_tile):
        var ahead = (t + PREFETCH_TILES) * ROWS_PER_TILE
        if ahead < n:
            var stop = min(n, ahead + ROWS_PER_TILE) * k
            for e in range(ahead * k, stop, line):
                prefetch[PrefetchOptions().for_read().high_locality()](wp.unsafe_offset(e))
        var n0 = t * ROWS_PER_TILE
        if m <= SEQUENTIAL_MAX_X_ROWS:  # each weight row front to back, one after the other
            for nr in range(n0, min(n, n0 + ROWS_PER_TILE)):
                var m0 = 0
                while m0 + MAX_X_ROWS <= m:
                    _row[MAX_X_ROWS, has_bias](yp, xp, wp, bp, k, n, m0, nr)
                    m0 += MAX_X_ROWS
                if m - m0 >= 2:
                    _row[2, has_bias](yp, xp, wp, bp, k, n, m0, nr)
                    m0 += 2
                if m - m0 == 1:
                    _row[1, has_bias](yp, xp, wp, bp, k, n, m0, nr)
            continue
        var m0 = 0
        while m0 + MAX_X_ROWS <= m:
            _tile[MAX_X_ROWS, has_bias](yp, xp, wp, bp, k, n, m0, n0)
            m0 += MAX_X_ROWS
        if m - m0 >= 2:
            _tile[2, has_bias](yp, xp, wp, bp, k, n, m0, n0)
            m0 += 2
        if m - m0 == 1:
            _tile[1, has_bias](yp, xp, wp, bp, k, n, m0, n0)


def tile_count(n: Int) -> Int:
    """How many tiles of ROWS_PER_TILE weight rows cover n rows."""
    return (n + ROWS_PER_TILE - 1) // ROWS_PER_TILE


def _linear_rows[has_bias: Bool](
    y: OutputTensor[dtype=F32, rank=2, ...],
    x: InputTensor[dtype=F32, rank=2, ...],
    w: InputTensor[rank=2, ...],
    b: InputTensor[dtype=F32, ...],
    ctx: DeviceContext,
) raises:
    var m = x.dim_size(0)
    var k = x.dim_size(1)
    var n = w.dim_size(0)
    if w.dim_size(1) != k or y.dim_size(0) != m or y.dim_size(1) != n:
        raise Error("linear_rows: expected x (m, k), w (n, k) and y (m, n)")
    var xp = x.unsafe_ptr()
    var wp = w.unsafe_ptr()
    var yp = y.unsafe_ptr()
    var bp = b.unsafe_ptr()
    var cpu_ctx = Optional(rebind[DeviceContextBase[CompilationTarget()]](ctx))
    var n_tiles = tile_count(n)
    var n_tasks = max(1, min(parallelism_level(cpu_ctx), n_tiles))

    # Contiguous runs of tiles, one per worker: each streams its own part of w.
    def task(i: Int) {var xp, var wp, var yp, var bp, var m, var k, var n, var n_tiles, var n_tasks}:
        var per_task = (n_tiles + n_tasks - 1) // n_tasks
        product_tiles[has_bias](
            yp, xp, wp, bp, m, k, n, i * per_task, min(n_tiles, (i + 1) * per_task)
        )

    if m > 0:
        sync_parallelize(task, n_tasks, cpu_ctx)


@register("linear_rows")
struct LinearRows:
    """y = x @ w.T + b (see the file header)."""

    @staticmethod
    def execute[target: StaticString](
        y: OutputTensor[dtype=F32, rank=2, ...],
        x: InputTensor[dtype=F32, rank=2, ...],
        w: InputTensor[rank=2, ...],
        b: InputTensor[dtype=F32, rank=1, ...],
        ctx: DeviceContext,
    ) raises:
        comptime assert target == "cpu", "linear_rows is a CPU kernel"
        if b.dim_size(0) != w.dim_size(0):
            raise Error("linear_rows: bias length differs from the weight's rows")
        _linear_rows[True](y, x, w, b, ctx)


@register("matmul_rows")
struct MatmulRows:
    """y = x @ w.T, no bias (the tied logits projection over the token embedding)."""

    @staticmethod
    def execute[target: StaticString](
        y: OutputTensor[dtype=F32, rank=2, ...],
        x: InputTensor[dtype=F32, rank=2, ...],
        w: InputTensor[rank=2, ...],
        ctx: DeviceContext,
    ) raises:
        comptime assert target == "cpu", "matmul_rows is a CPU kernel"
        _linear_rows[False](y, x, w, x, ctx)
