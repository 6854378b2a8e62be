"""The int8 mode's encoder self-attention (issue 38): the Mojo kernel against a NumPy model of
the same quantized arithmetic (exact integer sums; every code path), the model against float32
attention, and the int8 mode's transcripts."""

from __future__ import annotations

import numpy as np
import pytest

from maxwhisper_lib.lab.int8_attention import int8_attention_reference


def float32_attention(qkv: np.ndarray, heads: int) -> np.ndarray:
    batch, time, fused = qkv.shape
    width = fused // 3
    head_width = width // heads
    out = np.zeros((batch, time, width), np.float64)
    for i in range(batch):
        for h in range(heads):
            cols = slice(h * head_width, (h + 1) * head_width)
            q, k, v = (
                qkv[i, :, j * width : (j + 1) * width][:, cols].astype(np.float64) for j in range(3)
            )
            s = q @ k.T / np.sqrt(head_width)
            e = np.exp(s - s.max(axis=1, keepdims=True))
            out[i, :, cols] = (e / e.sum(axis=1, keepdims=True)) @ v
    return out.astype(np.float32)


def random_qkv(batch: int, time: int, heads: int, head_width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    qkv = rng.standard_normal((batch, time, 3 * heads * head_width)).astype(np.float32)
    qkv[..., heads * head_width : 2 * heads * head_width] += 3.0  # keys with a common offset
    return qkv


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_the_model_is_close_to_float32_attention():
    qkv = random_qkv(2, 200, 6, 64)
    assert relative_error(int8_attention_reference(qkv, 6), float32_attention(qkv, 6)) < 0.03


def test_smoothing_makes_the_keys_common_offset_disappear():
    """Softmax does not see a constant added to every key; the smoothed quantization does not
    either (the offset would otherwise take the keys' 8 bits)."""
    qkv = random_qkv(1, 100, 2, 64)
    shifted = qkv.copy()
    shifted[..., 128:256] += np.linspace(-50, 50, 128, dtype=np.float32)
    # equal up to a value crossing a rounding boundary here and there (k - mean in float32)
    shifted_out, out = int8_attention_reference(shifted, 2), int8_attention_reference(qkv, 2)
    assert relative_error(shifted_out, out) < 1e-3


@pytest.fixture(scope="module")
def attention_models():
    from maxwhisper_lib.engine import runtime
    from maxwhisper_lib.engine.graphs.custom_ops import build_attention_int8_graph

    cache = {}

    def get(heads: int, head_width: int, path: str):
        key = (heads, head_width, path)
        if key not in cache:
            graph = build_attention_int8_graph(heads, head_width, path)
            cache[key] = runtime.compile_graph(graph, "cpu")
        return cache[key]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("path", ["best", "avx2", "portable"])
@pytest.mark.parametrize(("batch", "time"), [(1, 1), (2, 37), (1, 1500)])
def test_the_kernel_is_the_model(attention_models, path, batch, time):
    from maxwhisper_lib.engine.machine import cpu_flags

    if path == "avx2" and "avx2" not in cpu_flags():
        pytest.skip("no AVX2")
    qkv = random_qkv(batch, time, 6, 64, seed=time)
    got = attention_models(6, 64, path).execute(qkv)[0].to_numpy()
    expected = int8_attention_reference(qkv, 6)
    # the integer sums are exact on both sides and so is 2^x (the same float32 operations):
    # every probability byte is the model's; only the order of each row's float32 total
    # differs (measured 2.9e-7 at T = 1500; float32 attention: 1e-2)
    assert relative_error(got, expected) < 2e-6
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.slow
def test_every_path_gives_the_same_result(attention_models):
    from maxwhisper_lib.engine.machine import cpu_flags

    qkv = random_qkv(1, 300, 6, 64, seed=3)
    paths = ["best", "portable"] + (["avx2"] if "avx2" in cpu_flags() else [])
    outputs = [attention_models(6, 64, p).execute(qkv)[0].to_numpy() for p in paths]
    for other in outputs[1:]:
        np.testing.assert_array_equal(other, outputs[0])
