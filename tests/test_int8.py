"""The int8 mode: per-channel quantization and packing (NumPy), the Mojo int8 kernel against
a NumPy model of the same quantized arithmetic, and int8 transcripts against float32."""

from __future__ import annotations

import numpy as np
import pytest

from maxwhisper_lib.engine import machine, runtime
from maxwhisper_lib.engine.graphs.custom_ops import build_int8_graph
from maxwhisper_lib.engine.quantization import (
    LANES,
    TILE_OUTPUTS,
    int8_linear_reference,
    quantize_activations,
    quantize_linear,
)
from maxwhisper_lib.engine.weight_mapping import map_weights
from maxwhisper_lib.errors import DecodingOptionsError
from maxwhisper_lib.lab.checks import ROW_KERNEL_TOLERANCE, compare


def test_quantize_linear_round_trips_within_half_a_step():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((70, 12)).astype(np.float32)
    q = quantize_linear(w)
    assert q.packed.shape == (TILE_OUTPUTS * 2 // LANES, 3, 64) and q.packed.dtype == np.int8
    assert q.out_features == 70 and q.in_features == 12
    scale = np.abs(w).max(axis=1) / 127
    np.testing.assert_allclose(q.scale[:70], scale, rtol=1e-6)
    assert (q.scale[70:] == 0).all() and (q.weight_sum[70:] == 0).all()
    assert (np.abs(q.dequantized() - w).max(axis=1) <= scale / 2 * (1 + 1e-5)).all()
    assert (np.abs(q.quantized()).max(axis=1) == 127).all()  # each channel uses its full range
    np.testing.assert_array_equal(q.weight_sum[:70], q.quantized().astype(np.int32).sum(axis=1))


def test_packing_puts_four_inputs_of_sixteen_outputs_side_by_side():
    w = np.arange(64 * 8, dtype=np.float32).reshape(64, 8) - 200
    q = quantize_linear(w)
    unpacked = q.quantized()
    # block 1, inputs 4..7: output 16 + lane, 4 consecutive inputs per lane
    np.testing.assert_array_equal(q.packed[1, 1].reshape(LANES, 4), unpacked[16:32, 4:8])


@pytest.mark.parametrize(
    "weight, message",
    [
        (np.zeros((4, 6), np.float32), "in % 4 == 0"),
        (np.full((4, 8), np.nan, np.float32), "NaN or Inf"),
        (np.zeros(8, np.float32), "linear weight"),
    ],
)
def test_quantize_linear_refuses_bad_weights(weight, message):
    with pytest.raises(ValueError, match=message):
        quantize_linear(weight)


def test_activation_quantization_per_row():
    x = np.array([[0.5, -1.0, 0.25, 0.0], [0, 0, 0, 0]], np.float32)
    q, scale = quantize_activations(x)
    np.testing.assert_array_equal(q, [[64, -127, 32, 0], [0, 0, 0, 0]])
    np.testing.assert_allclose(scale, [1 / 127, 0])


def test_int8_weight_mapping_shapes_and_dtypes(tiny_weights):
    """(That the graphs declare exactly these tensors: tests/test_graphs.py, on TOY_DIMS.)"""
    registry = map_weights(tiny_weights, rows=True, int8=True)
    fc1 = "encoder.blocks.0.mlp.fc1.weight"
    assert registry[fc1].dtype == np.int8 and registry[fc1 + "_sum"].dtype == np.int32
    assert registry["decoder.logits.weight"].shape[0] * LANES >= tiny_weights.dims.n_vocab
    kv = registry["decoder.blocks.0.cross_attn.kv.weight"]  # (in, out) in the float layouts
    assert kv.dtype == np.int8 and kv.shape == (2 * 384 // LANES, 384 // 4, 64)
    assert registry["decoder.blocks.0.cross_attn.kv.bias"].dtype == np.float32


@pytest.fixture(scope="module")
def int8_models():
    """(out features, bias, kernel path) -> the compiled single-op graph (one for every width
    with a bias: its sizes are symbolic)."""
    cache = {}

    def get(out_features: int, bias: bool, path: str = "best"):
        key = (None if bias else out_features, bias, path)
        if key not in cache:
            graph = build_int8_graph(bias, None if bias else out_features, path)
            cache[key] = runtime.compile_graph(graph, "cpu")
        return cache[key]

    return get


def run_int8(model, x, quantized, bias=None) -> np.ndarray:
    inputs = [np.ascontiguousarray(x), quantized.packed, quantized.scale, quantized.weight_sum]
    if bias is not None:
        inputs.append(np.asarray(bias, np.float32))
    return model.execute(*inputs)[0].to_numpy().copy()


@pytest.mark.slow
@pytest.mark.parametrize(
    "m, k, n", [(1, 384, 1152), (3, 8, 17), (5, 64, 64), (70, 36, 100), (130, 1536, 70)]
)
def test_int8_kernel_matches_the_numpy_model(int8_models, m, k, n):
    """Same quantized arithmetic: equal to float32 rounding; rows past a 64-row chunk, outputs
    that fill no whole block, and inputs that fill no whole vector included."""
    rng = np.random.default_rng(m * 1000 + n)
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = (rng.standard_normal((n, k)) * 0.1).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    q = quantize_linear(w)
    out = run_int8(int8_models(n, True), x, q, b)
    _, relative = compare(out, int8_linear_reference(x, q, b))
    assert relative < ROW_KERNEL_TOLERANCE
    _, vs_float = compare(out, x @ w.T + b)
    assert 1e-4 < vs_float < 3e-2  # int8 is not float32, but close to it


@pytest.mark.slow
@pytest.mark.parametrize("path", ["portable", "avx2"])
@pytest.mark.parametrize("m", [6, 70])
def test_every_kernel_path_gives_the_same_sums(int8_models, path, m):
    """The plain-SIMD and AVX2 paths against this CPU's own (VNNI where present): the same
    exact int32 sums, so bit-equal outputs; weights at +-127 with activations at their row's
    maximum (the largest pair sums vpmaddubsw sees: no saturation), rows past one tile."""
    if path == "avx2" and "avx2" not in machine.cpu_flags():
        pytest.skip("no AVX2 on this CPU")
    rng = np.random.default_rng(7 + m)
    x = rng.standard_normal((m, 96)).astype(np.float32)
    x[0] = np.abs(x[0]).max()  # every activation of row 0 quantizes to 127
    x[1] = -np.abs(x[1]).max()  # and of row 1 to -127
    w = rng.standard_normal((80, 96)).astype(np.float32)
    w[:5] = np.sign(w[:5])  # outputs 0 .. 4: every weight quantizes to +-127
    q = quantize_linear(w)
    assert np.abs(q.packed).max() == 127
    fast = run_int8(int8_models(80, False), x, q)
    other = run_int8(int8_models(80, False, path), x, q)
    np.testing.assert_array_equal(fast, other)
    _, relative = compare(fast, int8_linear_reference(x, q))
    assert relative < ROW_KERNEL_TOLERANCE


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=1, keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=1, keepdims=True)
    return ((x64 - mean) / np.sqrt(var + 1e-5) * gamma + beta).astype(np.float32)


def _gelu(x: np.ndarray) -> np.ndarray:
    import math

    erf = np.vectorize(math.erf)
    return 0.5 * x * (1 + erf(x.astype(np.float64) / math.sqrt(2)))


@pytest.fixture(scope="module")
def fused_int8_model():
    """The four fused forms of the int8 kernel (the int8 encoder's) in one graph."""
    from max.dtype import DType
    from max.graph import DeviceRef, Graph, TensorType

    from maxwhisper_lib.engine.graphs.custom_ops import KERNEL_EXTENSIONS, int8_product_fused

    cpu = DeviceRef.CPU()
    types = [
        *(value.type for value in build_int8_graph(bias=True).inputs),  # x, weight, bias
        TensorType(DType.float32, ["k"], device=cpu),
        TensorType(DType.float32, ["k"], device=cpu),
        TensorType(DType.float32, ["m", "n"], device=cpu),
    ]
    with Graph("test_fused_int8", input_types=types, custom_extensions=KERNEL_EXTENSIONS) as g:
        x, packed, scale, wsum, b, gamma, beta, r = (v.tensor for v in g.inputs)
        weight = (x, packed, scale, wsum, b)
        g.output(
            int8_product_fused(*weight, norm=(gamma, beta)),
            int8_product_fused(*weight, norm=(gamma, beta), gelu=True),
            int8_product_fused(*weight, gelu=True),
            int8_product_fused(*weight, residual=r),
        )
    return runtime.compile_graph(g, "cpu")


@pytest.mark.slow
@pytest.mark.parametrize("m, k, n", [(70, 36, 100), (5, 384, 64)])
def test_fused_int8_kernels_match_layer_norm_gelu_and_residual(fused_int8_model, m, k, n):
    """The layer norm before the product, exact GELU and the residual addition after it, each
    inside the kernel, against the NumPy model of the product with float64 layer norm and GELU
    (``math.erf``): equal to float32 rounding (inputs and outputs past whole vectors
    included)."""
    rng = np.random.default_rng(m + k + n)
    x = (rng.standard_normal((m, k)) * 3 + 1).astype(np.float32)
    q = quantize_linear((rng.standard_normal((n, k)) * 0.1).astype(np.float32))
    b, r = rng.standard_normal(n).astype(np.float32), rng.standard_normal((m, n)).astype(np.float32)
    gamma = (1 + 0.1 * rng.standard_normal(k)).astype(np.float32)
    beta = (0.1 * rng.standard_normal(k)).astype(np.float32)
    inputs = [x, q.packed, q.scale, q.weight_sum, b, gamma, beta, r]
    normed, normed_gelu, gelu, added = (t.to_numpy() for t in fused_int8_model.execute(*inputs))
    after_norm = int8_linear_reference(_layer_norm(x, gamma, beta), q, b)
    plain = int8_linear_reference(x, q, b)
    # after the float32 layer norm an activation may round across a quantization step now and
    # then (one step: 1e-4 of a row's product at most); the product itself is exact
    for got, expected, bound in [
        (normed, after_norm, 1e-4),
        (normed_gelu, _gelu(after_norm), 1e-4),
        (gelu, _gelu(plain), ROW_KERNEL_TOLERANCE),
        (added, plain + r, ROW_KERNEL_TOLERANCE),
    ]:
        _, relative = compare(got, expected.astype(np.float32))
        assert relative < bound


def test_fused_int8_product_refuses_a_residual_after_gelu():
    from max.dtype import DType
    from max.graph import DeviceRef, Graph, TensorType

    from maxwhisper_lib.engine.graphs.custom_ops import int8_product_fused

    t = TensorType(DType.float32, [4, 4], device=DeviceRef.CPU())
    with Graph("refused", input_types=[t]) as g:
        x = g.inputs[0].tensor
        with pytest.raises(ValueError, match="residual only to a plain product"):
            int8_product_fused(x, x, x, x, x, gelu=True, residual=x)


def test_int8_kernel_path_follows_the_cpu_flags(monkeypatch):
    for flags, path in [
        ({"avx2", "avx512f", "avx512_vnni"}, "vnni"),
        ({"avx2", "fma"}, "avx2"),
        ({"sse4_2"}, "portable"),
        (set(), "portable"),
    ]:
        monkeypatch.setattr(machine, "cpu_flags", lambda flags=flags: flags)
        assert machine.int8_kernel_path() == path


@pytest.mark.slow
def test_int8_kernel_zero_rows_give_the_bias(int8_models):
    rng = np.random.default_rng(8)
    q = quantize_linear(rng.standard_normal((20, 16)).astype(np.float32))
    b = rng.standard_normal(20).astype(np.float32)
    x = np.zeros((2, 16), np.float32)
    np.testing.assert_array_equal(run_int8(int8_models(20, True), x, q, b), np.tile(b, (2, 1)))


@pytest.mark.slow
def test_int8_kernel_refuses_a_weight_that_does_not_fit(int8_models):
    q = quantize_linear(np.ones((20, 16), np.float32))
    with pytest.raises(Exception, match="does not cover"):
        run_int8(int8_models(80, False), np.ones((1, 16), np.float32), q)  # 20 rows packed


def test_int8_is_a_cpu_mode():
    with pytest.raises(DecodingOptionsError, match="CPU only"):
        runtime.resolve_dtype("int8", "gpu")
    assert runtime.resolve_dtype("int8", "cpu").name == "float32"  # activations stay float32


@pytest.mark.slow
def test_int8_needs_the_kernels(tiny_weights):
    from maxwhisper_lib.engine.model import MaxWhisper

    with pytest.raises(DecodingOptionsError, match="row_kernels"):
        MaxWhisper(tiny_weights, device="cpu", dtype="int8", row_kernels=False)


@pytest.fixture(scope="module")
def max_tiny_int8(tiny_weights):
    from maxwhisper_lib.engine.model import MaxWhisper

    return MaxWhisper(tiny_weights, device="cpu", dtype="int8")


@pytest.mark.slow
def test_int8_transcribes_jfk_with_float32s_words(max_tiny_int8, max_tiny, jfk_audio):
    from maxwhisper_lib.decoding.text import normalize
    from maxwhisper_lib.decoding.transcribe import transcribe

    assert repr(max_tiny_int8).endswith("dtype='int8')")
    int8_text = transcribe(max_tiny_int8, jfk_audio, temperature=0.0)["text"]
    exact_text = transcribe(max_tiny, jfk_audio, temperature=0.0)["text"]
    assert normalize(int8_text) == normalize(exact_text)
    assert "ask not what your country can do for you" in normalize(int8_text)


def test_cli_int8_is_for_the_max_engine():
    from maxwhisper_lib.cli import UsageError, build_parser, resolve_device

    assert build_parser().parse_args(["a.wav", "--dtype", "int8"]).dtype == "int8"
    assert resolve_device("max", "cpu", "int8") == "cpu"
    with pytest.raises(UsageError, match="--engine max"):
        resolve_device("torch", "cpu", "int8")


def test_cli_quantization_is_the_int8_mode():
    """``--quantization int8`` is ``--dtype int8``: the engine is loaded in int8, and the flag is
    not a transcription option."""
    from maxwhisper_lib.cli import TranscriptionPlan, build_parser

    args = build_parser().parse_args(["a.wav", "--quantization", "int8"])
    plan = TranscriptionPlan.from_args(args)
    assert args.dtype == "int8" and "quantization" not in plan.kwargs


def test_benchmark_has_an_int8_engine_with_its_own_targets():
    from maxwhisper_lib.lab.benchmark import INT8_TARGETS, make_engine

    engine = make_engine("max-int8", device="cpu")
    assert engine.name == "max-int8" and engine.dtype == "int8"
    assert INT8_TARGETS["faster-whisper-int8"] == 1.5
