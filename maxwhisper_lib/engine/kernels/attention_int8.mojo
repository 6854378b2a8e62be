# The encoder's self-attention in int8, for the CPU (the int8 mode; issue 38).
#
# self_attention_int8
#   qkv (b, T, 3 * width) float32: the fused query/key/value projection, heads side by side
#   y   (b, T, width) float32: softmax(q_h k_h^T / sqrt(head_width)) v_h per head, merged
#
# Per (sequence, head):
#   keys    smoothed: the mean key over the T tokens is taken off every key (each query's scores
#           move by one constant, which softmax does not see: SageAttention), then each key is
#           quantized with its own scale s_k = max|k| / 127, q_k = clamp(floor(k / s_k + 0.5))
#   queries each quantized the same way (s_q)
#   scores  s_q * s_k * (sum of q_q * q_k, exact in int32) / sqrt(head_width), softmax in float32
#           in base 2 (log2 e folded into s_q; s_k applied as the tile ends, s_q after the row's
#           top is found, with the top taken off in one fused multiply-add; 2^x from a degree-4
#           polynomial and 2^n, _exp2, which the NumPy model repeats operation for operation)
#   P V     each row of probabilities as 0 .. 127 (s_p = max p / 127), values quantized per
#           channel over the tokens (s_v), out = s_p * s_v * (sum of q_p * q_v, exact in int32)
#
# The keys (and the values, transposed) are packed as linear_int8.mojo packs weights: blocks of
# 16 keys (16 channels), for each group of 4 channels (4 tokens) 16 x 4 bytes, so that one
# 512-bit vector holds 16 running sums. AVX-512 VNNI (vpdpbusd, unsigned x signed bytes) takes the
# queries shifted to 1 .. 255 and the shift back with each key's sum; AVX2 (vpsignb, vpmaddubsw,
# vpmaddwd) keeps them signed; elsewhere plain SIMD. Every path gives the same integer sums. A
# tile is 8 queries (AVX2: 4) against a few blocks at once, its running sums in registers.
# ``self_attention_int8_portable`` and ``self_attention_int8_avx2`` force those paths (tests).

from extensibility import InputTensor, OutputTensor, register
from max.algorithm import sync_parallelize
from max.gpu.host import DeviceContext
from max.gpu.host.device_context import DeviceContextBase
from std.math import floor, sqrt
from std.memory import alloc, bitcast
from std.sys import llvm_intrinsic
from std.sys.info import CompilationTarget

comptime F32 = DType.float32
comptime I32 = DType.int32
comptime LANES = 16
comptime SHIFT = 128
comptime QMAX = Float32(127)
comptime LOG2E = Float32(1.4426950408889634)
# 2^f for f in [-0.5, 0.5]: a degree-4 polynomial fitted to its relative error (below 3e-6)
comptime C0 = Float32(0.99999928)
comptime C1 = Float32(0.69312234)
comptime C2 = Float32(0.24024744)
comptime C3 = Float32(0.05591422)
comptime C4 = Float32(0.00956887)


@always_inline
def _exp2[avx512: Bool](x: SIMD[F32, LANES]) -> SIMD[F32, LANES]:
    """2^x for x <= 0 (a score less its row's top, in base 2): the polynomial of the rest
    (fused multiply-adds) times 2^n, n = x rounded to even, from vscalefps on AVX-512 or from
    the exponent bits (the same product: 2^n is exact); 2^-126 at most below -126. The NumPy
    model (``lab/int8_attention.py:exp2_kernel``) computes the same."""
    var y = max(x, Float32(-126))
    var n = llvm_intrinsic["llvm.roundeven", SIMD[F32, LANES], has_side_effect=False](y)
    var f = y - n
    var p = SIMD[F32, LANES](C4).fma(f, C3)
    p = p.fma(f, C2)
    p = p.fma(f, C1)
    p = p.fma(f, C0)
    comptime if avx512:
        return llvm_intrinsic["llvm.x86.avx512.mask.scalef.ps.512", SIMD[F32, LANES], has_side_effect=False](
            p, n, SIMD[F32, LANES](0), UInt16(0xFFFF), Int32(4)
        )
    else:
        return p * bitcast[F32, LANES]((n.cast[I32]() + Int32(127)) << 23)


@always_inline
def _probability_bytes[avx512: Bool](e: SIMD[F32, LANES]) -> SIMD[DType.uint8, LANES]:
    """``e * 127`` rounded to the nearest integer (ties to even) as bytes: vcvtps2dq on
    AVX-512 (rounding as it converts), else round then convert."""
    var scaled = e * QMAX
    comptime if avx512:
        return llvm_intrinsic["llvm.x86.avx512.mask.cvtps2dq.512", SIMD[I32, LANES], has_side_effect=False](
            scaled, SIMD[I32, LANES](0), UInt16(0xFFFF), Int32(4)
        ).cast[DType.uint8]()
    else:
        return llvm_intrinsic["llvm.roundeven", SIMD[F32, LANES], has_side_effect=False](scaled).cast[DType.uint8]()


@always_inline
def _dot4_vnni(acc: SIMD[I32, LANES], a: SIMD[I32, LANES], b: SIMD[I32, LANES]) -> SIMD[I32, LANES]:
    """acc + per lane the dot product of 4 unsigned bytes of ``a`` with 4 signed bytes of ``b``."""
    return llvm_intrinsic["llvm.x86.avx512.vpdpbusd.512", SIMD[I32, LANES], has_side_effect=False](
        acc, bitcast[DType.int8, 4 * LANES](a), bitcast[DType.int8, 4 * LANES](b)
    )


@always_inline
def _dot4_plain(acc: SIMD[I32, LANES], a: SIMD[I32, LANES], b: SIMD[I32, LANES]) -> SIMD[I32, LANES]:
    """The same in plain SIMD (``a``'s bytes unsigned, ``b``'s signed)."""
    var p = bitcast[DType.uint8, 4 * LANES](a).cast[I32]() * bitcast[DType.int8, 4 * LANES](b).cast[I32]()
    var pairs = p.deinterleave()
    var twos = pairs[0] + pairs[1]
    var quads = twos.deinterleave()
    return acc + quads[0] + quads[1]


@always_inline
def _dot4_avx2_abs(acc: SIMD[I32, LANES], a: SIMD[I32, LANES], b: SIMD[I32, LANES], b_abs: SIMD[DType.uint8, 4 * LANES]) -> SIMD[I32, LANES]:
    """acc + per lane the dot product of ``a``'s 4 bytes with ``b``'s, ``a``'s bytes signed (|b|
    times a with b's sign: no saturation while |a| <= 127), in two halves of 8 lanes; ``b_abs`` =
    ``|b|``, computed once for many ``a``."""
    var out = acc
    comptime for half in range(2):
        var x = bitcast[DType.int8, 32](a.slice[8, offset=half * 8]())
        var w = bitcast[DType.int8, 32](b.slice[8, offset=half * 8]())
        var signed_x = llvm_intrinsic["llvm.x86.avx2.psign.b", SIMD[DType.int8, 32], has_side_effect=False](x, w)
        var pairs = llvm_intrinsic["llvm.x86.avx2.pmadd.ub.sw", SIMD[DType.int16, 16], has_side_effect=False](
            b_abs.slice[32, offset=half * 32](), signed_x
        )
        var sums = llvm_intrinsic["llvm.x86.avx2.pmadd.wd", SIMD[I32, 8], has_side_effect=False](
            pairs, SIMD[DType.int16, 16](1)
        )
        out = out.insert[offset=half * 8](out.slice[8, offset=half * 8]() + sums)
    return out


@always_inline
def _dot4[path: Int](acc: SIMD[I32, LANES], a: SIMD[I32, LANES], b: SIMD[I32, LANES], b_abs: SIMD[DType.uint8, 4 * LANES]) -> SIMD[I32, LANES]:
    """path 0: plain SIMD, 1: AVX2 (``b_abs`` = ``|b|``, computed once for many ``a``),
    2: AVX-512 VNNI."""
    comptime if path == 2:
        return _dot4_vnni(acc, a, b)
    else:
        comptime if path == 1:
            return _dot4_avx2_abs(acc, a, b, b_abs)
        else:
            return _dot4_plain(acc, a, b)


@always_inline
def _dot4_unsigned[path: Int](acc: SIMD[I32, LANES], a: SIMD[I32, LANES], b: SIMD[I32, LANES]) -> SIMD[I32, LANES]:
    """acc + per lane the dot product of ``a``'s 4 bytes, 0 .. 127 (probabilities), with ``b``'s
    signed ones: on AVX2 vpmaddubsw takes them as they are (at most 2 x 127 x 127 a pair: no
    saturation, no vpsignb), then vpmaddwd."""
    comptime if path == 1:
        var out = acc
        comptime for half in range(2):
            var pairs = llvm_intrinsic["llvm.x86.avx2.pmadd.ub.sw", SIMD[DType.int16, 16], has_side_effect=False](
                bitcast[DType.uint8, 32](a.slice[8, offset=half * 8]()), bitcast[DType.int8, 32](b.slice[8, offset=half * 8]())
            )
            var sums = llvm_intrinsic["llvm.x86.avx2.pmadd.wd", SIMD[I32, 8], has_side_effect=False](
                pairs, SIMD[DType.int16, 16](1)
            )
            out = out.insert[offset=half * 8](out.slice[8, offset=half * 8]() + sums)
        return out
    else:
        return _dot4[path](acc, a, b, SIMD[DType.uint8, 4 * LANES](0))


@always_inline
def _abs_bytes[path: Int, width: Int](w: SIMD[I32, width]) -> SIMD[DType.uint8, 4 * width]:
    """``|w|`` per byte where the AVX2 path needs it (zeros elsewhere: unused)."""
    comptime if path == 1:
        return bitcast[DType.uint8, 4 * width](abs(bitcast[DType.int8, 4 * width](w)))
    else:
        return SIMD[DType.uint8, 4 * width](0)


@always_inline
def _quantize_vector[width: Int](v: SIMD[F32, width], inv: SIMD[F32, width]) -> SIMD[I32, width]:
    """clamp(floor(v * inv + 0.5), -127, 127) per lane."""
    return min(max(floor(v * inv + Float32(0.5)), -QMAX), QMAX).cast[I32]()


def _self_attention_int8[head_width: Int, path: Int](
    y: OutputTensor[dtype=F32, rank=3, ...],
    qkv: InputTensor[dtype=F32, rank=3, ...],
    ctx: DeviceContext,
) raises:
    comptime assert head_width % LANES == 0, "head_width must be a multiple of 16"
    comptime shift = SHIFT if path != 1 else 0  # AVX2 keeps the queries signed
    comptime avx512 = path == 2 and CompilationTarget.has_avx512f()  # vscalefps, vcvtps2dq
    comptime groups = head_width // 4  # 4-channel groups of a key or query
    comptime channel_blocks = head_width // LANES
    # A tile: ROWS_T queries against KB blocks of 16 keys, then against CB blocks of 16 value
    # channels (16 running sums in registers); each query's (or probability's) word is broadcast
    # from memory once for KB (CB) products, each key (value) word loaded once for ROWS_T.
    # AVX2 has 16 registers of 256 bits: 4 queries, one block at a time there.
    comptime ROWS_T = 4 if path == 1 else 8
    comptime KB = 1 if path == 1 else 16 // ROWS_T
    comptime CB = 1 if path == 1 else min(channel_blocks, 16 // ROWS_T)
    var batch = qkv.dim_size(0)
    var n = qkv.dim_size(1)
    var width = y.dim_size(2)
    var heads = width // head_width
    if heads * head_width != width or qkv.dim_size(2) != 3 * width:
        raise Error("self_attention_int8: expected qkv (b, T, 3 * width), y (b, T, width)")
    if y.dim_size(0) != batch or y.dim_size(1) != n:
        raise Error("self_attention_int8: y must be (b, T, width)")
    if n == 0:
        return
    var xp = qkv.unsafe_ptr()
    var yp = y.unsafe_ptr()
    var key_blocks = (n + KB * LANES - 1) // (KB * LANES) * KB
    var n_keys = key_blocks * LANES  # padded with zero keys (masked out of the softmax)
    var token_groups = n_keys // 4  # 4-token groups of the values
    var scale = Float32(1.0) / sqrt(Float32(head_width))

    def head_task(task: Int) {var xp, var yp, var n, var width, var heads, var key_blocks, var n_keys, var token_groups, var scale}:
        var i = task // heads
        var head = task % heads
        var row0 = i * n * 3 * width

        # keys: mean over tokens, then each smoothed key quantized and packed
        var mean = SIMD[F32, head_width](0)
        for t in range(n):
            mean += xp.unsafe_load[width=head_width](row0 + t * 3 * width + width + head * head_width)
        mean = mean / Float32(n)
        var kw = alloc[Int32](key_blocks * groups * LANES)  # (block, group, lane): 4 bytes
        var k_scale = alloc[Float32](n_keys)
        var k_sum = alloc[Int32](n_keys)
        for j in range(n_keys):
            var blk = j // LANES
            var lane = j % LANES
            if j >= n:
                for g in range(groups):
                    kw.unsafe_store((blk * groups + g) * LANES + lane, Int32(0))
                k_scale.unsafe_store(j, Float32(0))
                k_sum.unsafe_store(j, Int32(0))
                continue
            var k = xp.unsafe_load[width=head_width](row0 + j * 3 * width + width + head * head_width) - mean
            var top = abs(k).reduce_max()
            var inv = QMAX / top if top > 0 else Float32(0)
            k_scale.unsafe_store(j, top / QMAX)
            var q = _quantize_vector(k, SIMD[F32, head_width](inv))
            k_sum.unsafe_store(j, q.reduce_add())
            var words = bitcast[I32, groups](q.cast[DType.int8]())  # 4 channels' bytes a word
            comptime for g in range(groups):
                kw.unsafe_store((blk * groups + g) * LANES + lane, words[g])

        # values: a scale per channel over the tokens; packed transposed (channel block, token
        # group, lane = channel): 4 tokens' bytes of one channel
        var v_top = SIMD[F32, head_width](0)
        for t in range(n):
            v_top = max(v_top, abs(xp.unsafe_load[width=head_width](row0 + t * 3 * width + 2 * width + head * head_width)))
        var v_scale = v_top / QMAX
        var v_inv = SIMD[F32, head_width](0)
        comptime for c in range(head_width):
            v_inv[c] = QMAX / v_top[c] if v_top[c] > 0 else Float32(0)
        var vw = alloc[Int32](channel_blocks * token_groups * LANES)
        for tg in range(token_groups):
            var words = SIMD[I32, head_width](0)  # channel c: tokens 4 tg .. 4 tg + 3, a byte each
            comptime for b in range(4):
                var t = 4 * tg + b
                if t < n:
                    var v = xp.unsafe_load[width=head_width](row0 + t * 3 * width + 2 * width + head * head_width)
                    words |= (_quantize_vector(v, v_inv) & Int32(0xFF)) << Int32(8 * b)
            comptime for cb in range(channel_blocks):
                vw.unsafe_store((cb * token_groups + tg) * LANES, words.slice[LANES, offset=cb * LANES]())

        # queries ROWS_T at a time: each packed key and value word is loaded once for all of them
        var scores = alloc[Float32](ROWS_T * n_keys)
        var pw = alloc[Int32](ROWS_T * token_groups)  # probabilities as bytes, 4 per word
        var pb = pw.unsafe_bitcast[UInt8]()
        var qw = alloc[Int32](ROWS_T * groups)  # the tile's quantized queries, 4 bytes per word

        def tile[rows: Int](t0: Int) {var xp, var yp, var n, var width, var head, var row0, var key_blocks, var n_keys, var token_groups, var scale, var kw, var k_scale, var k_sum, var vw, var v_scale, var scores, var pw, var pb, var qw, var i}:
            var q_scales = SIMD[F32, rows](0)
            comptime for r in range(rows):
                var qv = xp.unsafe_load[width=head_width](row0 + (t0 + r) * 3 * width + head * head_width)
                var q_top = abs(qv).reduce_max()
                var q_inv = QMAX / q_top if q_top > 0 else Float32(0)
                var shifted = (min(max(floor(qv * q_inv + Float32(0.5)), -QMAX), QMAX).cast[I32]() + Int32(shift)).cast[DType.uint8]()
                qw.unsafe_store(r * groups, bitcast[I32, groups](shifted))
                q_scales[r] = q_top / QMAX * scale * LOG2E  # scores in base 2
            var best_lanes = SIMD[F32, rows * LANES](Float32.MIN)  # each row's top per lane
            for blk0 in range(0, key_blocks, KB):
                # query r, key block j: (r * KB + j) * 16, from minus the queries' shift times
                # the key sums (VNNI takes unsigned queries)
                var acc = SIMD[I32, rows * KB * LANES](0)
                comptime if shift != 0:
                    comptime for j in range(KB):
                        var taken = k_sum.unsafe_load[width=LANES]((blk0 + j) * LANES) * Int32(-shift)
                        comptime for r in range(rows):
                            acc = acc.insert[offset=(r * KB + j) * LANES](taken)
                comptime for g in range(groups):
                    var kv = SIMD[I32, KB * LANES](0)
                    comptime for j in range(KB):
                        kv = kv.insert[offset=j * LANES](kw.unsafe_load[width=LANES](((blk0 + j) * groups + g) * LANES))
                    var k_abs = _abs_bytes[path](kv)
                    comptime for r in range(rows):
                        var qb = SIMD[I32, LANES](qw.unsafe_load(r * groups + g))
                        comptime for j in range(KB):
                            comptime at = (r * KB + j) * LANES
                            acc = acc.insert[offset=at](
                                _dot4[path](acc.slice[LANES, offset=at](), qb, kv.slice[LANES, offset=j * LANES](), k_abs.slice[4 * LANES, offset=4 * j * LANES]())
                            )
                comptime for j in range(KB):
                    var blk = blk0 + j
                    var ks = k_scale.unsafe_load[width=LANES](blk * LANES)
                    var valid = n - blk * LANES
                    comptime for r in range(rows):
                        var s = acc.slice[LANES, offset=(r * KB + j) * LANES]().cast[F32]() * ks  # the query's scale later
                        scores.unsafe_store(r * n_keys + blk * LANES, s)
                        if valid < LANES:  # padding keys: not in the top
                            s = _fill_from(s, max(valid, 0), Float32.MIN)
                        best_lanes = best_lanes.insert[offset=r * LANES](max(best_lanes.slice[LANES, offset=r * LANES](), s))
            var totals = SIMD[F32, rows](0)
            comptime for r in range(rows):
                var best = best_lanes.slice[LANES, offset=r * LANES]().reduce_max()
                var qs = SIMD[F32, LANES](q_scales[r])
                var less = SIMD[F32, LANES](-(best * q_scales[r]))  # (s - best) x the query's scale, one rounding
                var row = scores.unsafe_offset(r * n_keys)
                var bytes = pb.unsafe_offset(r * n_keys)
                var total = SIMD[F32, LANES](0)  # per lane, added across once per row
                for j in range(0, n_keys, LANES):
                    var e = _exp2[avx512](row.unsafe_load[width=LANES](j).fma(qs, less))
                    if j + LANES > n:
                        e = _zero_from(e, max(n - j, 0))
                    total += e
                    # unnormalised probabilities (the top one is 1) as 0 .. 127
                    bytes.unsafe_store(j, _probability_bytes[avx512](e))
                totals[r] = total.reduce_add()
            comptime for cb0 in range(0, channel_blocks, CB):
                var acc = SIMD[I32, rows * CB * LANES](0)  # row r, channel block c: (r * CB + c) * 16
                for tg in range(token_groups):
                    var vv = SIMD[I32, CB * LANES](0)
                    comptime for c in range(CB):
                        vv = vv.insert[offset=c * LANES](vw.unsafe_load[width=LANES](((cb0 + c) * token_groups + tg) * LANES))
                    comptime for r in range(rows):
                        var pg = SIMD[I32, LANES](pw.unsafe_load(r * token_groups + tg))
                        comptime for c in range(CB):
                            comptime at = (r * CB + c) * LANES
                            acc = acc.insert[offset=at](
                                _dot4_unsigned[path](acc.slice[LANES, offset=at](), pg, vv.slice[LANES, offset=c * LANES]())
                            )
                comptime for c in range(CB):
                    var v_s = v_scale.slice[LANES, offset=(cb0 + c) * LANES]()
                    comptime for r in range(rows):
                        var dst = yp.unsafe_offset((i * n + t0 + r) * width + head * head_width)
                        dst.unsafe_store((cb0 + c) * LANES, acc.slice[LANES, offset=(r * CB + c) * LANES]().cast[F32]() * v_s * (Float32(1.0) / (QMAX * totals[r])))

        var t = 0
        while t + ROWS_T <= n:
            tile[ROWS_T](t)
            t += ROWS_T
        while t < n:
            tile[1](t)
            t += 1
        scores.free()
        pw.free()
        qw.free()
        kw.free()
        k_scale.free()
        k_sum.free()
        vw.free()

    var cpu_ctx = Optional(rebind[DeviceContextBase[CompilationTarget()]](ctx))
    sync_parallelize(head_task, batch * heads, cpu_ctx)


@always_inline
def _fill_from(x: SIMD[F32, LANES], valid: Int, value: Float32) -> SIMD[F32, LANES]:
    """``x`` with lanes ``valid`` .. 15 set to ``value``."""
    var out = x
    for lane in range(valid, LANES):
        out[lane] = value
    return out


@always_inline
def _zero_from(e: SIMD[F32, LANES], valid: Int) -> SIMD[F32, LANES]:
    return _fill_from(e, valid, 0)


@register("self_attention_int8")
struct SelfAttentionInt8:
    """See the file header; ``head_width`` is a compile-time parameter (a multiple of 16)."""

    @staticmethod
    def execute[target: StaticString, head_width: Int](
        y: OutputTensor[dtype=F32, rank=3, ...],
        qkv: InputTensor[dtype=F32, rank=3, ...],
        ctx: DeviceContext,
    ) raises:
        comptime assert target == "cpu", "self_attention_int8 is a CPU kernel"
        comptime if CompilationTarget.has_vnni():
            _self_attention_int8[head_width, 2](y, qkv, ctx)
        else:
            comptime if CompilationTarget.has_avx2():
                _self_attention_int8[head_width, 1](y, qkv, ctx)
            else:
                _self_attention_int8[head_width, 0](y, qkv, ctx)


@register("self_attention_int8_portable")
struct SelfAttentionInt8Portable:
    """``self_attention_int8`` in plain SIMD: for its tests."""

    @staticmethod
    def execute[target: StaticString, head_width: Int](
        y: OutputTensor[dtype=F32, rank=3, ...],
        qkv: InputTensor[dtype=F32, rank=3, ...],
        ctx: DeviceContext,
    ) raises:
        comptime assert target == "cpu", "self_attention_int8_portable is a CPU kernel"
        _self_attention_int8[head_width, 0](y, qkv, ctx)


@register("self_attention_int8_avx2")
struct SelfAttentionInt8Avx2:
    """``self_attention_int8`` on its AVX2 path even where VNNI exists: for its tests."""

    @staticmethod
    def execute[target: StaticString, head_width: Int](
        y: OutputTensor[dtype=F32, rank=3, ...],
        qkv: InputTensor[dtype=F32, rank=3, ...],
        ctx: DeviceContext,
    ) raises:
        comptime assert target == "cpu", "self_attention_int8_avx2 is a CPU kernel"
        comptime assert CompilationTarget.has_avx2(), "self_attention_int8_avx2 needs AVX2"
        _self_attention_int8[head_width, 1](y, qkv, ctx)
