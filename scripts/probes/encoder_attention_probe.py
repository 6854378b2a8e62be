"""Whether the encoder's self-attention gains from being one Mojo kernel: MAX's ops against
``scripts/probes/probe_kernels/encoder_attention.mojo``.

    python scripts/probes/encoder_attention_probe.py [--batch 1] [--repeats 7] [--portable]

The kernel takes the fused QKV projection of one layer (``(b, 1500, 3 x 384)``, tiny.en's
shape) and never writes the ``(b, heads, 1500, 1500)`` scores to memory (query blocks of 32
rows, their scores kept in the core's cache, register tiles of 4 rows x 2 SIMD vectors).
MAX's ops do what the encoder graph does (``layers.attention_scores`` and ``layers.attend``:
scores, softmax, weighted values, heads merged). Both are checked against NumPy in float64, then
timed alternately in one process; with ``--ablate`` the kernel's variants without the softmax,
without the scores product and without the values product show where its time goes.
``--portable`` compiles for x86-64-v3 (AVX2), the shipped build's target, on any x86 CPU.
Compiles in about 30 s (60 s with ``--ablate``) on 2 cores.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import numpy as np

KERNEL = Path(__file__).resolve().parent / "probe_kernels" / "encoder_attention.mojo"
ABLATIONS = {  # variant -> (text in the kernel, its replacement)
    "no softmax": (
        "inv.unsafe_store(r, _softmax_row(sp.unsafe_offset(r * stride), n))",
        "inv.unsafe_store(r, 1.0)",
    ),
    "no scores": (
        "for j0 in range(0, stride, COLUMNS):",
        "for j0 in range(0, 0, COLUMNS):",
    ),
    "no values": (
        "for c0 in range(0, head_width, COLUMNS):",
        "for c0 in range(0, 0, COLUMNS):",
    ),
}


def kernel_variants(folder: Path, ablate: bool) -> dict[str, str]:
    """Write the kernel (and its ablated variants) into ``folder`` as one Mojo package;
    label -> registered op name."""
    source = KERNEL.read_text()
    (folder / "__init__.mojo").write_text("")
    variants = {"kernel": source}
    if ablate:
        for label, (text, replacement) in ABLATIONS.items():
            if text not in source:
                raise RuntimeError(f"the kernel no longer contains {text!r}")
            variants[f"kernel, {label}"] = source.replace(text, replacement)
    ops_by_label = {}
    for i, (label, text) in enumerate(variants.items()):
        op = f"encoder_self_attention_{i}"
        text = text.replace('"encoder_self_attention"', f'"{op}"')
        text = re.sub(r"^struct EncoderSelfAttention", f"struct Variant{i}", text, flags=re.M)
        (folder / f"variant_{i}.mojo").write_text(text)
        ops_by_label[label] = op
    return ops_by_label


def reference(qkv: np.ndarray, heads: int) -> np.ndarray:
    """softmax(q k^T / sqrt(dh)) v per head in float64, merged."""
    b, n, w3 = qkv.shape
    w = w3 // 3
    dh = w // heads
    q, k, v = (
        qkv[..., i * w : (i + 1) * w]
        .astype(np.float64)
        .reshape(b, n, heads, dh)
        .transpose(0, 2, 1, 3)
        for i in range(3)
    )
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dh)
    s = np.exp(s - s.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    return (s @ v).transpose(0, 2, 1, 3).reshape(b, n, w)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--ablate", action="store_true")
    parser.add_argument("--portable", action="store_true")
    args = parser.parse_args()
    if args.portable:
        from max import driver

        driver.set_virtual_cpu_target("x86-64-v3")
    from max.dtype import DType
    from max.graph import DeviceRef, Graph, Module, TensorType, ops

    from maxwhisper_lib.engine import runtime
    from maxwhisper_lib.engine.graphs.layers import (
        attend,
        attention_scores,
        split_heads,
        split_heads_transposed,
    )
    from maxwhisper_lib.lab.benchmark.runs import alternating_medians

    n, heads, dh = 1500, 6, 64
    width = heads * dh
    cpu = DeviceRef.CPU()
    qkv_type = TensorType(DType.float32, ["b", n, 3 * width], cpu)
    out_type = TensorType(DType.float32, ["b", n, width], cpu)
    with tempfile.TemporaryDirectory() as folder:
        extensions = [Path(folder)]
        ops_by_label = kernel_variants(Path(folder), args.ablate)
        module = Module()
        for op in ops_by_label.values():
            with Graph(
                op, input_types=[qkv_type], custom_extensions=extensions, module=module
            ) as g:
                x = g.inputs[0].tensor
                (y,) = ops.custom(
                    op, device=cpu, values=[x], out_types=[out_type], parameters={"head_width": dh}
                )
                g.output(y.tensor)
        with Graph("max_ops", input_types=[qkv_type], module=module) as g:
            q, k, v = ops.split(g.inputs[0].tensor, [width] * 3, axis=-1)
            scores = attention_scores(split_heads(q, heads), split_heads_transposed(k, heads))
            g.output(attend(scores, split_heads(v, heads)))
        session = runtime.get_session("cpu")
        start = time.perf_counter()
        compiled = session.init_all(
            session.compile(module, custom_extensions=extensions), weights_registry={}
        )
    print(f"compiled in {time.perf_counter() - start:.0f} s")
    graphs = {"MAX ops": compiled["max_ops"]}
    graphs.update({label: compiled[op] for label, op in ops_by_label.items()})
    rng = np.random.default_rng(0)
    qkv = rng.standard_normal((args.batch, n, 3 * width), dtype=np.float32)
    qkv[..., : 2 * width] *= 2.0  # peaked softmax rows, as in a trained encoder
    device_qkv = runtime.to_device(qkv, "cpu")
    expected = reference(qkv, heads)
    for label in ("MAX ops", "kernel"):
        got = runtime.host_float32(graphs[label].execute(device_qkv)[0])
        error = np.abs(got - expected).max() / np.abs(expected).max()
        print(f"{label:<24} max relative error against float64: {error:.2e}")
    calls = {label: (lambda g=g: g.execute(device_qkv)) for label, g in graphs.items()}
    for call in calls.values():
        call()
    flops = 4.0 * args.batch * heads * n * n * dh
    for label, seconds in alternating_medians(calls, args.repeats).items():
        rate = (
            f"  {flops / seconds / 1e9:5.0f} GFLOP/s (both products)"
            if label in ("MAX ops", "kernel")
            else ""
        )
        print(f"{label:<24} {seconds * 1e3:8.2f} ms{rate}")


if __name__ == "__main__":
    main()
