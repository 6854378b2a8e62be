"""How close MAX's float32 encoder is to what this CPU can do: its pieces against NumPy's BLAS.

    python scripts/probes/encoder_ceiling.py [--model tiny.en] [--repeats 7]

Times, in one process and interleaved: MAX's matmul and NumPy's (OpenBLAS) at the encoder's
linear-layer shapes (GFLOP/s), MAX's self-attention pieces at one layer's shape (scores,
softmax, weighted values, each its own graph) and whole (one graph, as the encoder runs it:
MAX fuses the pieces, which costs much less than their sum), and a whole 30-s window through
MAX's encoder and openai-whisper's (PyTorch). The probe graphs compile together once (about a
minute on 2 cores, cached after). Run it on a quiet machine; compare ratios within one run only.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from max.dtype import DType
from max.graph import DeviceRef, Graph, Module, TensorType, ops

from maxwhisper_lib.checkpoints import load_weights
from maxwhisper_lib.engine import runtime
from maxwhisper_lib.engine.graphs.layers import attend, attention_scores
from maxwhisper_lib.engine.model import MaxWhisper
from maxwhisper_lib.lab.benchmark.runs import alternating_medians


def median_ms(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Each call once to warm up, then ``repeats`` rounds of every call in turn: medians, ms."""
    for call in calls.values():
        call()
    return {name: s * 1e3 for name, s in alternating_medians(calls, repeats).items()}


def linear_shapes(model: MaxWhisper) -> list[tuple[int, int, int]]:
    """(rows, inputs, outputs) of the encoder's products for one window."""
    d, ctx = model.dims.n_audio_state, model.dims.n_audio_ctx
    return [(ctx, d, 3 * d), (ctx, d, d), (ctx, d, 4 * d), (ctx, 4 * d, d)]


def probe_graphs(model: MaxWhisper) -> Module:
    """MAX matmuls at the linear shapes and one layer's attention, split into its pieces."""
    cpu = DeviceRef.CPU()
    h, ctx = model.dims.n_audio_head, model.dims.n_audio_ctx
    dh = model.dims.n_audio_state // h
    heads = TensorType(DType.float32, [1, h, ctx, dh], cpu)
    scores = TensorType(DType.float32, [1, h, ctx, ctx], cpu)
    module = Module()
    for m, k, n in linear_shapes(model):
        inputs = [TensorType(DType.float32, [m, k], cpu), TensorType(DType.float32, [k, n], cpu)]
        with Graph(f"matmul_{m}x{k}x{n}", input_types=inputs, module=module) as g:
            g.output(g.inputs[0].tensor @ g.inputs[1].tensor)
    with Graph("attention_scores", input_types=[heads, heads], module=module) as g:
        q, k = (v.tensor for v in g.inputs)
        g.output(attention_scores(q, ops.transpose(k, -1, -2)))
    with Graph("attention_softmax", input_types=[scores], module=module) as g:
        g.output(ops.softmax(g.inputs[0].tensor))
    with Graph("attention_values", input_types=[scores, heads], module=module) as g:
        g.output(g.inputs[0].tensor @ g.inputs[1].tensor)
    with Graph("attention_whole", input_types=[heads, heads, heads], module=module) as g:
        q, k, v = (value.tensor for value in g.inputs)
        g.output(attend(attention_scores(q, ops.transpose(k, -1, -2)), v))
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    weights = load_weights(args.model)
    model = MaxWhisper(weights, device="cpu")
    session = runtime.get_session("cpu")
    start = time.perf_counter()
    probes = session.init_all(session.compile(probe_graphs(model)), weights_registry={})
    print(f"probe graphs compiled in {time.perf_counter() - start:.0f} s")
    rng = np.random.default_rng(0)
    buffer = runtime.to_device

    calls: dict[str, Callable[[], object]] = {}
    flops: dict[str, float] = {}
    for m, k, n in linear_shapes(model):
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        graph = probes[f"matmul_{m}x{k}x{n}"]
        da, db = buffer(a, "cpu"), buffer(b, "cpu")
        calls[f"MAX matmul {m}x{k}x{n}"] = lambda g=graph, x=da, y=db: g.execute(x, y)
        calls[f"NumPy matmul {m}x{k}x{n}"] = lambda x=a, y=b: x @ y
        flops[f"MAX matmul {m}x{k}x{n}"] = flops[f"NumPy matmul {m}x{k}x{n}"] = 2.0 * m * k * n

    h, ctx = model.dims.n_audio_head, model.dims.n_audio_ctx
    dh = model.dims.n_audio_state // h
    q, k = (buffer(rng.standard_normal((1, h, ctx, dh), dtype=np.float32), "cpu") for _ in "qk")
    s = buffer(rng.standard_normal((1, h, ctx, ctx), dtype=np.float32), "cpu")
    calls["MAX attention scores (one layer)"] = lambda: probes["attention_scores"].execute(q, k)
    calls["MAX attention softmax (one layer)"] = lambda: probes["attention_softmax"].execute(s)
    calls["MAX attention values (one layer)"] = lambda: probes["attention_values"].execute(s, k)
    calls["MAX attention whole (one layer)"] = lambda: probes["attention_whole"].execute(q, k, k)

    import torch

    from maxwhisper_lib.decoding.reference import build_reference_model

    mel = rng.standard_normal((1, model.dims.n_mels, 2 * ctx), dtype=np.float32)
    reference = build_reference_model(weights)
    mel_torch = torch.from_numpy(mel)

    def torch_encoder() -> None:
        with torch.no_grad():
            reference.encoder(mel_torch)

    calls["MAX encoder (one window)"] = lambda: model.embed_audio(mel).numpy()
    calls["openai-whisper encoder (one window)"] = torch_encoder

    for name, ms in median_ms(calls, args.repeats).items():
        rate = f"  {flops[name] / ms / 1e6:6.0f} GFLOP/s" if name in flops else ""
        print(f"{name:<40} {ms:8.2f} ms{rate}")


if __name__ == "__main__":
    main()
