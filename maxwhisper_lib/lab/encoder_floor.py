"""The encoder window against the floor of its operations on this CPU.

An encoder window is compute-bound: its products are ``(1500, d) x (d, n)`` and the
self-attention's ``1500 x 1500`` scores per head. Its floor is therefore the time its operations
take at this CPU's best rates, measured, not assumed: the float32 rate of a large MAX matmul and
the int8 rate of MAX-Whisper's int8 kernel on a large product (VNNI or AVX2, whichever the CPU
has). The operations of one window are counted by kind (the convolution stem, the linear layers,
the attention's two products ``Q K^T`` and ``P V``), the window's parts are timed as graphs of
their own at the encoder's shapes, and the whole window is timed in each mode (float32, int8).

``python -m maxwhisper_lib.lab.encoder_floor [--model tiny.en] [--output FILE.json]``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from ..dims import ModelDimensions
from .probe_cli import probe_main


def _best(call: Callable[[], object], repeats: int = 5, budget_s: float = 20.0) -> float:
    call()
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < repeats and (not times or time.perf_counter() < deadline):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


@dataclass(frozen=True)
class WindowOperations:
    """Multiply-adds x 2 of one 30-s window, by kind."""

    stem: float
    linear: float
    attention: float

    @property
    def total(self) -> float:
        return self.stem + self.linear + self.attention


def window_operations(dims: ModelDimensions) -> WindowOperations:
    """Operations of one window: the stem's two convolutions (3 taps), every block's qkv, out,
    fc1 and fc2 products, and the attention's ``Q K^T`` and ``P V`` (each ``2 T^2 d``)."""
    t, d, mels, layers = dims.n_audio_ctx, dims.n_audio_state, dims.n_mels, dims.n_audio_layer
    stem = 2 * (2 * t) * (3 * mels) * d + 2 * t * (3 * d) * d
    linear = layers * 2 * t * d * (3 * d + d + 4 * d + 4 * d)
    attention = layers * 2 * (2 * t * t * d)
    return WindowOperations(float(stem), float(linear), float(attention))


@dataclass
class Rate:
    """A measured rate: what ran, its operations, its best time, operations per second."""

    what: str
    operations: float
    seconds: float

    @property
    def gops(self) -> float:
        return self.operations / self.seconds / 1e9


def float32_rate(m: int = 1500, k: int = 1536, n: int = 1536) -> Rate:
    """MAX's float32 matmul on ``(m, k) x (k, n)``: the float32 rate this CPU reaches."""
    from max.dtype import DType
    from max.graph import DeviceRef, Graph, TensorType

    from ..engine import runtime

    device = DeviceRef.CPU()
    types = [
        TensorType(DType.float32, ["m", "k"], device=device),
        TensorType(DType.float32, ["k", "n"], device=device),
    ]
    with Graph("mw_float32_rate", input_types=types) as graph:
        graph.output(graph.inputs[0].tensor @ graph.inputs[1].tensor)
    model = runtime.compile_graph(graph, "cpu")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    seconds = _best(lambda: model.execute(a, b))
    return Rate(f"float32 matmul {m}x{k}x{n}", 2.0 * m * k * n, seconds)


def int8_rate(m: int = 1500, k: int = 1536, n: int = 1536) -> Rate:
    """MAX-Whisper's int8 kernel (this CPU's path) on ``(m, k) x (k, n)``, activations quantized
    inside it as in the encoder: the int8 rate this CPU reaches."""
    from ..engine import runtime
    from ..engine.graphs.custom_ops import build_int8_graph
    from ..engine.quantization import quantize_linear

    model = runtime.compile_graph(build_int8_graph(bias=True), "cpu")
    rng = np.random.default_rng(0)
    weight = quantize_linear(rng.standard_normal((n, k), dtype=np.float32))
    x = rng.standard_normal((m, k), dtype=np.float32)
    bias = np.zeros(n, np.float32)
    seconds = _best(lambda: model.execute(x, weight.packed, weight.scale, weight.weight_sum, bias))
    return Rate(f"int8 kernel {m}x{k}x{n}", 2.0 * m * k * n, seconds)


def attention_rate(dims: ModelDimensions) -> Rate:
    """One encoder block's self-attention as the encoder runs it (MAX ops, float32):
    ``softmax(Q K^T / sqrt(d_h)) V`` at ``(1, heads, 1500, d_h)``."""
    from max.dtype import DType
    from max.graph import DeviceRef, Graph, TensorType

    from ..engine import runtime
    from ..engine.graphs.layers import attend, attention_scores

    heads, t = dims.n_audio_head, dims.n_audio_ctx
    head_width = dims.n_audio_state // heads
    device = DeviceRef.CPU()
    q_type = TensorType(DType.float32, [1, heads, t, head_width], device=device)
    k_type = TensorType(DType.float32, [1, heads, head_width, t], device=device)
    with Graph("mw_encoder_attention", input_types=[q_type, k_type, q_type]) as graph:
        q, k_t, v = (value.tensor for value in graph.inputs)
        graph.output(attend(attention_scores(q, k_t), v))
    model = runtime.compile_graph(graph, "cpu")
    rng = np.random.default_rng(0)
    q = rng.standard_normal((1, heads, t, head_width), dtype=np.float32)
    k_t = rng.standard_normal((1, heads, head_width, t), dtype=np.float32)
    v = rng.standard_normal((1, heads, t, head_width), dtype=np.float32)
    seconds = _best(lambda: model.execute(q, k_t, v))
    return Rate("encoder self-attention, one block", 4.0 * t * t * dims.n_audio_state, seconds)


def int8_attention_rate(dims: ModelDimensions) -> Rate | None:
    """The int8 mode's self-attention kernel on one block's fused projection ``(1, 1500, 3d)``
    (None where this build has no such kernel)."""
    from ..engine import runtime
    from ..engine.graphs import custom_ops

    if not hasattr(custom_ops, "build_attention_int8_graph"):
        return None
    heads, t, width = dims.n_audio_head, dims.n_audio_ctx, dims.n_audio_state
    graph = custom_ops.build_attention_int8_graph(heads, width // heads)
    model = runtime.compile_graph(graph, "cpu")
    qkv = np.random.default_rng(0).standard_normal((1, t, 3 * width), dtype=np.float32)
    seconds = _best(lambda: model.execute(qkv))
    return Rate("int8 self-attention kernel, one block", 4.0 * t * t * width, seconds)


def window_seconds(model_name: str, quantization: str | None) -> float:
    """One window through the whole encoder at batch 1 (best of a few), compiled for this CPU
    where that may be faster than the shipped build (as the benchmark does, and as the rates
    above are: the floor is this CPU's)."""
    from ..checkpoints import load_weights
    from ..engine import compiled
    from ..engine.model import MaxWhisper

    backend = MaxWhisper(
        load_weights(model_name),
        "cpu",
        quantization or "float32",
        shipped_build=not compiled.native_may_be_faster(),
    )
    dims = backend.dims
    mel = np.random.default_rng(0).standard_normal(
        (1, dims.n_mels, 2 * dims.n_audio_ctx), dtype=np.float32
    )
    return _best(lambda: backend.embed_audio(mel).numpy())


def encoder_floor(model_name: str = "tiny.en") -> dict:
    """Every measurement above for ``model_name``'s dims, and the floors they give."""
    from ..checkpoints.catalog import official_dims
    from ..engine.machine import cpu_flags, int8_kernel_path, machine_info

    dims = official_dims(model_name)
    ops = window_operations(dims)
    f32, i8 = float32_rate(), int8_rate()
    attention = attention_rate(dims)
    attention8 = int8_attention_rate(dims)
    f32_s, i8_s = window_seconds(model_name, None), window_seconds(model_name, "int8")
    attention_window = attention.seconds * dims.n_audio_layer
    int8_window = None if attention8 is None else attention8.seconds * dims.n_audio_layer
    floor = {
        "float32 mode": ops.total / (f32.gops * 1e9),
        # the stem and linear layers at the int8 rate, the attention as its kernel runs
        "int8, attention as measured": (ops.stem + ops.linear) / (i8.gops * 1e9)
        + (int8_window if int8_window is not None else ops.attention / (f32.gops * 1e9)),
        # what issue 38 aims at: every product at the int8 rate
        "integer floor": ops.total / (i8.gops * 1e9),
    }
    rates = [r for r in (f32, i8, attention, attention8) if r is not None]
    return {
        "model": model_name,
        "machine": machine_info(),
        "int8_path": int8_kernel_path(),
        "vnni": bool({"avx512_vnni", "avx_vnni"} & cpu_flags()),
        "operations": {**asdict(ops), "total": ops.total},
        "rates_gops": {r.what: round(r.gops, 1) for r in rates},
        "window_ms": {"float32": round(f32_s * 1e3, 1), "int8": round(i8_s * 1e3, 1)},
        "float32_attention_ms_per_window": round(attention_window * 1e3, 1),
        "int8_attention_ms_per_window": None
        if int8_window is None
        else round(int8_window * 1e3, 1),
        "int8_window_attention_share": round((int8_window or attention_window) / i8_s, 3),
        "floor_ms": {k: round(v * 1e3, 1) for k, v in floor.items()},
        "window_over_floor": {
            "float32 / its floor": round(f32_s / floor["float32 mode"], 2),
            "int8 / its floor with the attention as measured": round(
                i8_s / floor["int8, attention as measured"], 2
            ),
            "int8 / the integer floor": round(i8_s / floor["integer floor"], 2),
        },
    }


def main(argv: list[str] | None = None) -> int:
    return probe_main("python -m maxwhisper_lib.lab.encoder_floor", encoder_floor, argv)


if __name__ == "__main__":
    raise SystemExit(main())
