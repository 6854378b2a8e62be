"""Where a MAX decoder step spends its time: the step graph with one part removed at a time.

    python scripts/decoder_ablation.py [--model tiny.en] [--batch 1,5] [--steps 80]

Builds variants of ``build_decoder_step_graph`` (full; without the logits projection; without
cross-attention; without self-attention over the cache), times one-token steps of each at the
given batch sizes, and prints the median per variant and the difference to the full step. The
variants compute wrong logits on purpose: this is a cost model, not a decoder. Each variant is
one more graph to compile the first time (45-90 s on 2 cores, cached afterwards). Run it on a
quiet machine: MAX's CPU thread pool is very sensitive to other load.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from max.graph import TensorValue

import maxwhisper_lib.graphs.decoder as decoder_graphs
from maxwhisper_lib.audio import load_audio
from maxwhisper_lib.graphs import layers
from maxwhisper_lib.manifest import clip
from maxwhisper_lib.mel import log_mel_spectrogram_reference, pad_or_trim
from maxwhisper_lib.model import GRAPHS, MaxWhisper
from maxwhisper_lib.weights import load_weights

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
    x = x + L.linear(L.merge_heads(v), p, "attn.out")  # projections kept, attention dropped
    if cache is not None:  # the step graph stores nothing itself when the kernel would have
        k_t = v = None
    x, _ = L.cross_attention(x, p, n_head, cross_k, cross_v, cross_rows)
    return x + L.mlp(L.layer_norm(x, p, "mlp_ln"), p), k_t, v, None


def no_logits(x: TensorValue, p) -> TensorValue:
    return x


VARIANTS: dict[str, tuple[Callable | None, Callable | None]] = {
    "full step": (None, None),
    "without logits": (None, no_logits),
    "without cross-attention": (block_without_cross, None),
    "without self-attention": (block_without_self_attention, None),
}


def time_variant(name: str, weights, batches: list[int], steps: int, mel: np.ndarray) -> dict:
    block, logits = VARIANTS[name]
    original = decoder_graphs.decoder_block, decoder_graphs.logits
    decoder_graphs.decoder_block = block or original[0]
    decoder_graphs.logits = logits or original[1]
    try:
        model = MaxWhisper(weights, device="cpu")
        model.compiled("decoder_step")  # built now, with the patched pieces
    finally:
        decoder_graphs.decoder_block, decoder_graphs.logits = original
    features = model.embed_audio(mel)
    medians = {}
    for batch in batches:
        session = model.start_decoding(features, np.zeros(batch, dtype=np.int64))
        session.logits(np.full((batch, 3), 50257, dtype=np.int64))
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            session.logits(np.full((batch, 1), 440, dtype=np.int64))
            times.append(time.perf_counter() - start)
        medians[batch] = 1e3 * float(np.median(times[steps // 8 :]))
    return medians


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
    results = {name: time_variant(name, weights, batches, args.steps, mel) for name in VARIANTS}
    full = results["full step"]
    print(f"{'variant':<26}" + "".join(f"{f'batch {b} (ms)':>16}{'saved':>8}" for b in batches))
    for name, medians in results.items():
        cells = "".join(f"{medians[b]:>16.2f}{full[b] - medians[b]:>8.2f}" for b in batches)
        print(f"{name:<26}{cells}")


if __name__ == "__main__":
    main()
