"""MAX-Whisper's Mojo kernels against NumPy: random and real shapes, float16 and float32 weights,
tails that are not a multiple of the SIMD width or of the 4-row tile, NaN propagation."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from max.driver import Buffer
from max.dtype import DType

from maxwhisper_lib.engine import runtime
from maxwhisper_lib.engine.graphs.custom_ops import (
    build_cross_attention_graph,
    build_rows_graph,
    build_self_attention_graph,
)
from maxwhisper_lib.lab.checks import (
    ROW_KERNEL_TOLERANCE,
    causal_attention_reference,
    compare,
    cross_attention_reference,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rows_models():
    """(weight dtype, with bias) -> the compiled single-op graph (every size symbolic)."""
    return {
        (dtype, bias): runtime.compile_graph(build_rows_graph(DType.from_numpy(dtype), bias), "cpu")
        for dtype in (np.float16, np.float32)
        for bias in (True, False)
    }


def run_rows(models, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    model = models[w.dtype.type, b is not None]
    inputs = [x, w] + ([] if b is None else [b])
    out = model.execute(*(runtime.to_device(np.ascontiguousarray(a), "cpu") for a in inputs))[0]
    return out.to_numpy()


def exact_product(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """The float64 product of the stored values: what float32 accumulation approximates."""
    ref = x.astype(np.float64) @ w.astype(np.float64).T
    return ref if b is None else ref + b.astype(np.float64)


SHAPES = [  # (m, k, n): decode rows x input width x outputs
    (1, 384, 51864),  # tiny.en logits, one token
    (5, 384, 1152),  # five beams through the fused QKV projection
    (8, 1536, 384),  # MLP out, eight sequences
    (3, 512, 2048),  # base MLP in, odd row count
    (17, 72, 1001),  # k not a multiple of 16, n not a multiple of 4, m past 4 x 4
    (224, 384, 384),  # a long prompt
]


@pytest.mark.parametrize("weight_dtype", [np.float16, np.float32])
@pytest.mark.parametrize(("m", "k", "n"), SHAPES)
def test_linear_rows_matches_numpy(rows_models, weight_dtype, m, k, n):
    rng = np.random.default_rng(m * 7 + k + n)
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = (rng.standard_normal((n, k)) * 0.05).astype(weight_dtype)
    b = rng.standard_normal(n).astype(np.float32)
    out = run_rows(rows_models, x, w, b)
    assert out.shape == (m, n)
    _, relative = compare(out, exact_product(x, w, b))
    assert relative < ROW_KERNEL_TOLERANCE


@pytest.mark.parametrize("weight_dtype", [np.float16, np.float32])
def test_matmul_rows_has_no_bias(rows_models, weight_dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 384), dtype=np.float32)
    w = rng.standard_normal((4099, 384)).astype(weight_dtype)
    out = run_rows(rows_models, x, w, None)
    _, relative = compare(out, exact_product(x, w, None))
    assert relative < ROW_KERNEL_TOLERANCE


def test_float16_weights_are_widened_exactly(rows_models):
    """A float16 weight gives the float32 result of its widened values (the same arithmetic as
    openai-whisper float32 on a float16 checkpoint), not a float16 product."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 384), dtype=np.float32)
    w16 = rng.standard_normal((256, 384)).astype(np.float16)
    half = run_rows(rows_models, x, w16, None)
    wide = run_rows(rows_models, x, w16.astype(np.float32), None)
    np.testing.assert_array_equal(half, wide)


def test_real_tiny_weights_match_numpy(rows_models, max_tiny):
    """The model's own stored decoder weights (float16 from the checkpoint)."""
    registry = max_tiny.registry
    rng = np.random.default_rng(3)
    for name in ("decoder.blocks.2.mlp.fc1", "decoder.blocks.3.attn.qkv"):
        w, b = registry[f"{name}.weight"], registry[f"{name}.bias"]
        assert w.dtype == np.float16 and w.shape[1] == max_tiny.dims.n_text_state
        x = rng.standard_normal((5, w.shape[1]), dtype=np.float32)
        _, relative = compare(run_rows(rows_models, x, w, b), exact_product(x, w, b))
        assert relative < ROW_KERNEL_TOLERANCE


def test_nan_propagates_and_never_passes_a_check(rows_models):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 64), dtype=np.float32)
    w = rng.standard_normal((10, 64)).astype(np.float16)
    w[6, 5] = np.nan
    x[1, 9] = np.nan
    out = run_rows(rows_models, x, w, None)
    assert np.isnan(out[:, 6]).all()  # a NaN weight poisons its output column
    assert np.isnan(out[1]).all()  # a NaN activation poisons its row
    finite = np.ones_like(out, dtype=bool)
    finite[:, 6] = False
    finite[1] = False
    assert np.isfinite(out[finite]).all()
    assert all(np.isnan(compare(out, exact_product(x, w, None))))


def test_mismatched_shapes_are_refused(rows_models):
    x = np.zeros((1, 384), np.float32)
    w = np.zeros((16, 383), np.float16)
    with pytest.raises(Exception, match=r"linear_rows|\bk\b"):
        run_rows(rows_models, x, w, None)


# ------------------------------------------------------------------ cross-attention


@pytest.fixture(scope="module", params=["float32", "float16"])
def cross_model(request):
    """The kernel over float32 keys/values, and over float16 ones (the int8 mode's)."""
    stored = DType.float16 if request.param == "float16" else DType.float32
    model = runtime.compile_graph(build_cross_attention_graph(6, 64, stored), "cpu")
    return SimpleNamespace(model=model, stored=np.dtype(request.param))


def run_cross(model, q, k, v, rows):
    """``k``/``v`` are stored in the kernel's precision; the NumPy references take the stored
    values (:func:`stored`)."""
    arrays = [q, k.astype(model.stored), v.astype(model.stored), rows]
    return model.model.execute(
        *(runtime.to_device(np.ascontiguousarray(a), "cpu") for a in arrays)
    )[0].to_numpy()


def stored(model, *arrays):
    """The arrays as the kernel reads them (rounded to float16 for the float16 kernel)."""
    return [a.astype(model.stored).astype(np.float32) for a in arrays]


@pytest.mark.parametrize(
    ("batch", "n_new", "windows", "ctx"), [(1, 1, 1, 1500), (5, 1, 1, 1500), (3, 4, 2, 37)]
)
def test_cross_attention_matches_numpy(cross_model, batch, n_new, windows, ctx):
    rng = np.random.default_rng(batch + ctx)
    q = rng.standard_normal((batch, n_new, 384), dtype=np.float32)
    k = rng.standard_normal((windows, 6, ctx, 64), dtype=np.float32)
    v = rng.standard_normal((windows, 6, ctx, 64), dtype=np.float32)
    rows = (np.arange(batch) % windows).astype(np.int64)
    out = run_cross(cross_model, q, k, v, rows)
    _, relative = compare(out, cross_attention_reference(q, *stored(cross_model, k, v), rows))
    assert relative < ROW_KERNEL_TOLERANCE


def test_cross_attention_beams_share_their_window(cross_model):
    """Sequences reading the same window row get what a private copy of it would give."""
    rng = np.random.default_rng(5)
    q = rng.standard_normal((4, 1, 384), dtype=np.float32)
    k = rng.standard_normal((2, 6, 50, 64), dtype=np.float32)
    v = rng.standard_normal((2, 6, 50, 64), dtype=np.float32)
    shared = run_cross(cross_model, q, k, v, np.array([1, 1, 0, 1], np.int64))
    private = run_cross(cross_model, q, k[[1, 1, 0, 1]], v[[1, 1, 0, 1]], np.arange(4))
    np.testing.assert_array_equal(shared, private)


def test_cross_attention_windows_in_any_order_some_unused(cross_model):
    """The kernel walks windows, not sequences: sequences out of window order and a window
    no sequence reads still give every sequence its own window's attention."""
    rng = np.random.default_rng(8)
    q = rng.standard_normal((4, 2, 384), dtype=np.float32)
    k = rng.standard_normal((3, 6, 41, 64), dtype=np.float32)
    v = rng.standard_normal((3, 6, 41, 64), dtype=np.float32)
    rows = np.array([2, 0, 2, 2], np.int64)
    out = run_cross(cross_model, q, k, v, rows)
    _, relative = compare(out, cross_attention_reference(q, *stored(cross_model, k, v), rows))
    assert relative < ROW_KERNEL_TOLERANCE


def test_cross_attention_rejects_a_window_out_of_range(cross_model):
    q = np.zeros((1, 1, 384), np.float32)
    k = np.zeros((1, 6, 8, 64), np.float32)
    with pytest.raises(Exception, match="out of range"):
        run_cross(cross_model, q, k, k, np.array([3], np.int64))


# ------------------------------------------------------------------ cached self-attention

HEADS, HEAD_WIDTH, CAPACITY = 6, 64, 16
WIDTH = HEADS * HEAD_WIDTH


@pytest.fixture(scope="module")
def self_model():
    return runtime.compile_graph(build_self_attention_graph(HEADS, HEAD_WIDTH, CAPACITY), "cpu")


def run_self(model, qkv: np.ndarray, offset: int, keys: Buffer, values: Buffer) -> np.ndarray:
    inputs = [runtime.to_device(np.ascontiguousarray(qkv), "cpu"), np.array(offset, np.int64)]
    return model.execute(*inputs, keys, values)[0].to_numpy()


def test_self_attention_decodes_like_full_causal_attention(self_model):
    """A prompt, then single tokens, then two at once: each step attends to everything so far,
    the cache holds exactly the keys/values written, and slots past them are never read."""
    rng = np.random.default_rng(3)
    batch = 2
    unused = np.full((batch, HEADS, CAPACITY, HEAD_WIDTH), np.nan, np.float32)
    keys, values = Buffer.from_numpy(unused.copy()), Buffer.from_numpy(unused.copy())
    steps, offset = [], 0
    for n in (3, 1, 1, 2):
        steps.append(rng.standard_normal((batch, n, 3 * WIDTH), dtype=np.float32))
        out = run_self(self_model, steps[-1], offset, keys, values)
        offset += n
        assert np.isfinite(out).all()  # the NaN slots past the filled ones were not read
        _, relative = compare(out, causal_attention_reference(steps, HEADS))
        assert relative < ROW_KERNEL_TOLERANCE
    _, k, v = np.split(np.concatenate(steps, axis=1), 3, axis=-1)
    cached_k = keys.to_numpy()
    np.testing.assert_array_equal(
        cached_k[:, :, :offset], k.reshape(batch, offset, HEADS, HEAD_WIDTH).transpose(0, 2, 1, 3)
    )
    np.testing.assert_array_equal(
        values.to_numpy()[:, :, :offset],
        v.reshape(batch, offset, HEADS, HEAD_WIDTH).transpose(0, 2, 1, 3),
    )
    assert np.isnan(cached_k[:, :, offset:]).all()


def test_fresh_zeroed_caches_keep_their_first_keys():
    """``runtime.zeros`` is filled before a kernel writes into it: ``Buffer.zeros`` alone queues
    its fill, which then wiped a just-written prompt in ~2% of fresh decoder-sized caches (seen
    in CI)."""
    capacity, batch = 448, 5  # the decoder's context: a fill large enough to lag
    model = runtime.compile_graph(build_self_attention_graph(HEADS, HEAD_WIDTH, capacity), "cpu")
    rng = np.random.default_rng(5)
    device = runtime.get_device("cpu")
    wrong = 0
    for _ in range(300):
        keys, values = (
            runtime.zeros([batch, HEADS, capacity, HEAD_WIDTH], DType.float32, device) for _ in "kv"
        )
        steps = [rng.standard_normal((batch, n, 3 * WIDTH), dtype=np.float32) for n in (3, 1)]
        for offset, step in zip((0, 3), steps, strict=True):
            out = run_self(model, step, offset, keys, values)
        _, relative = compare(out, causal_attention_reference(steps, HEADS))
        wrong += int(relative >= ROW_KERNEL_TOLERANCE)
    assert wrong == 0


def test_self_attention_refuses_positions_past_the_cache(self_model):
    keys = Buffer.from_numpy(np.zeros((1, HEADS, CAPACITY, HEAD_WIDTH), np.float32))
    qkv = np.zeros((1, 2, 3 * WIDTH), np.float32)
    with pytest.raises(Exception, match="do not fit the cache"):
        run_self(self_model, qkv, CAPACITY - 1, keys, keys)
