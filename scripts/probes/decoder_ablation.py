"""Where a MAX decoder step spends its time: the step graph with one part removed at a time.

    python scripts/probes/decoder_ablation.py [--model tiny.en] [--batch 1,5] [--steps 80]

Builds variants of ``build_decoder_step_graph`` (full; without the logits projection; without
cross-attention; without self-attention over the cache; without the MLP; without any block),
times one-token steps of each at the given batch sizes, the variants taking turns, and prints
the median per variant and the difference to the full step. The variants compute wrong logits
on purpose: this is a cost model, not a decoder. Each variant's step graph is compiled on its
own (45-90 s on 2 cores, cached by MAX afterwards; the model's store is not used, its key does
not see the patch). Run it on a quiet machine: MAX's CPU thread pool is very sensitive to
other load.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from max.graph import Module, TensorValue

import maxwhisper_lib.engine.graphs.decoder as decoder_graphs
from maxwhisper_lib.audio.features import log_mel_spectrogram_reference, pad_or_trim
from maxwhisper_lib.audio.load import load_audio
from maxwhisper_lib.checkpoints import load_weights
from maxwhisper_lib.engine import runtime
from maxwhisper_lib.engine.graphs import layers
from maxwhisper_lib.engine.graphs.custom_ops import KERNEL_EXTENSIONS
from maxwhisper_lib.engine.model import GRAPHS, MaxWhisper
from maxwhisper_lib.lab.manifest import clip

L = layers


def block_without_cross(
    x, p, n_head, cross_k, cross_v, mask, past=None, cross_rows=None, cache=None
):
    x, k_t, v = L.self_attention(x, p, n_head, mask, past, cache)
    return x + L.mlp(L.layer_norm(x, p, "mlp_ln"), p), k_t, v, None


def block_without_self_attention(
    x, p, n_head, cross_k, cross_v, mask, past=None, cross_rows=None, cache=None
):
    _q, k_t, v = L.self_attention_qkv(L.layer_norm(x, p, "attn_ln"), p, "attn", n_head)
    # projections kept, attention dropped
    x = x + L.linear(L.merge_heads(v), p, "attn.out", int(x.shape[-1]))
    if cache is not None:  # the step graph stores nothing itself when the kernel would have
        k_t = v = None
    x, _ = L.cross_attention(x, p, n_head, cross_k, cross_v, cross_rows)
    return x + L.mlp(L.layer_norm(x, p, "mlp_ln"), p), k_t, v, None


def block_without_mlp(x, p, n_head, cross_k, cross_v, mask, past=None, cross_rows=None, cache=None):
    x, k_t, v = L.self_attention(x, p, n_head, mask, past, cache)
    x, _ = L.cross_attention(x, p, n_head, cross_k, cross_v, cross_rows)
    return x, k_t, v, None


def no_block(x, p, n_head, cross_k, cross_v, mask, past=None, cross_rows=None, cache=None):
    return x, None, None, None


def no_logits(x: TensorValue, p, n_vocab: int) -> TensorValue:
    return x


VARIANTS: dict[str, tuple[Callable | None, Callable | None]] = {
    "full step": (None, None),
    "without logits": (None, no_logits),
    "without cross-attention": (block_without_cross, None),
    "without self-attention": (block_without_self_attention, None),
    "without MLP": (block_without_mlp, None),
    "without blocks": (no_block, None),
}


def compile_step(model: MaxWhisper, block: Callable | None, logits: Callable | None):
    """The step graph with ``block``/``logits`` patched in, compiled alone (not through the
    model's store, whose key does not see the patch) and bound to the model's weights."""
    original = decoder_graphs.decoder_block, decoder_graphs.logits
    decoder_graphs.decoder_block = block or original[0]
    decoder_graphs.logits = logits or original[1]
    try:
        module = Module()
        decoder_graphs.build_decoder_step_graph(
            model.dims,
            model.dtype,
            runtime.device_ref(model.device_name),
            row_dtype=model.row_dtype,
            module=module,
        )
        session = runtime.get_session(model.device_name)
        compiled = session.compile(module, custom_extensions=list(KERNEL_EXTENSIONS))
    finally:
        decoder_graphs.decoder_block, decoder_graphs.logits = original
    (step,) = session.init_all(compiled, weights_registry=dict(model.registry)).values()
    return step


def time_variants(
    steps_by_name: dict, model: MaxWhisper, batches: list[int], steps: int, mel: np.ndarray
) -> dict[str, dict[int, float]]:
    """Median ms per one-token step of each variant at each batch size; the variants take
    turns, eight steps at a time, so that load on the machine falls on all of them alike."""
    full_step = model.compiled("decoder_step")
    features = model.embed_audio(mel)
    times: dict[str, dict[int, list[float]]] = {n: {b: [] for b in batches} for n in steps_by_name}
    try:
        for batch in batches:
            sessions = {}
            for name, step in steps_by_name.items():
                model._models["decoder_step"] = step
                sessions[name] = model.start_decoding(features, np.zeros(batch, dtype=np.int64))
                sessions[name].logits(np.full((batch, 3), 50257, dtype=np.int64))
            token = np.full((batch, 1), 440, dtype=np.int64)
            for _ in range(max(1, steps // 8)):
                for name, step in steps_by_name.items():
                    model._models["decoder_step"] = step
                    for _ in range(8):
                        start = time.perf_counter()
                        sessions[name].logits(token)
                        times[name][batch].append(time.perf_counter() - start)
    finally:
        model._models["decoder_step"] = full_step
    return {n: {b: 1e3 * float(np.median(t[8:])) for b, t in by.items()} for n, by in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--batch", default="1,5")
    parser.add_argument("--steps", type=int, default=80)
    args = parser.parse_args()
    batches = [int(b) for b in args.batch.split(",")]
    weights = load_weights(args.model)
    audio = load_audio(clip("jfk").path)
    mel = pad_or_trim(log_mel_spectrogram_reference(audio, weights.dims.n_mels), 3000)[None]
    assert GRAPHS["decoder_step"] is decoder_graphs.build_decoder_step_graph
    model = MaxWhisper(weights, device="cpu")
    model.compiled("decoder_step")  # the model's own graphs (encoder, cross K/V) first
    steps_by_name = {}
    for name, (block, logits) in VARIANTS.items():
        start = time.perf_counter()
        steps_by_name[name] = compile_step(model, block, logits)
        print(f"{name}: compiled in {time.perf_counter() - start:.0f} s", flush=True)
    results = time_variants(steps_by_name, model, batches, args.steps, mel)
    full = results["full step"]
    print(f"{'variant':<26}" + "".join(f"{f'batch {b} (ms)':>16}{'saved':>8}" for b in batches))
    for name, medians in results.items():
        cells = "".join(f"{medians[b]:>16.2f}{full[b] - medians[b]:>8.2f}" for b in batches)
        print(f"{name:<26}{cells}")


if __name__ == "__main__":
    main()
