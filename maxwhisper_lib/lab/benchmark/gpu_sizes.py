"""Every model size at the batch sizes a GPU runs: MAX beside CTranslate2 (faster-whisper's
engine) and PyTorch (openai-whisper) on the same weights, each checked against PyTorch first.

    python -m maxwhisper_lib.lab.benchmark.gpu_sizes --device gpu --output reports/gpu-NAME-sizes
        [--models tiny.en,base,...] [--dtypes float16,bfloat16] [--encoder_batches 1,16]
        [--decoder_batches 1,8,64] [--steps 32] [--deadline SECONDS]

On a CPU (``--device cpu``, the rehearsal) every engine runs in float32. Weights as
:func:`~maxwhisper_lib.lab.benchmark.sizes.size_weights`: the real ones where a package ships
them, else random at the official dims (random weights decide nothing about speed). Per size:

- **agreement** first, at batch 1: each engine's encoder output, and MAX's and PyTorch's
  logits after a prompt and ``steps`` fed tokens, against PyTorch float32 on the same device
  (relative error; ``agrees`` when within :data:`TOLERANCE` of the engine's precision);
- the **encoder window** (one random 30-s log-mel window repeated ``batch`` times, already on
  the device): milliseconds per call, median of ``repeats`` after a warm-up, the device
  synchronised;
- a **decoder token** at each decoder batch (every row reads the window's encoder output and the
  same tokens, PyTorch float32's greedy choices at batch 1): milliseconds per one-token step over ``steps``
  steps after the prompt, logits left on the device. CTranslate2 takes no tokens from outside:
  its step is the slope of its greedy ``generate`` (end of text suppressed) over ``2 * steps``
  more tokens.

One engine is loaded at a time, and a row is written to ``sizes.csv`` as soon as it is measured,
so a run that meets its ``--deadline`` keeps what it measured (the sizes left are listed in
``skipped.json``). Ratios count within one run only.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from ...atomic import atomic_text_file
from ...engine.machine import cpu_model
from ..checks import compare
from .sizes import PACKAGED, language_of, size_weights

SIZES = (
    "tiny.en",
    "base",
    "small",
    "medium",
    "large-v3-turbo",
    "distil-large-v3",
    "large-v3",
)
"""Issue 40's sizes, smallest first (a deadline cuts the largest)."""
TOLERANCE = {"float32": 5e-3, "float16": 5e-2, "bfloat16": 1e-1}
"""Largest relative error against PyTorch float32 that counts as agreement, by precision
(random weights at full depth: float32 engines measured 3.8e-4 to 3.2e-3 on the CPU)."""


@dataclass(frozen=True)
class Plan:
    """What to measure: device, MAX's precisions, the batches and the steps."""

    device: str = "gpu"
    dtypes: tuple[str, ...] = ("float16", "bfloat16")
    encoder_batches: tuple[int, ...] = (1, 16)
    decoder_batches: tuple[int, ...] = (1, 8, 64)
    steps: int = 32
    repeats: int = 3

    @property
    def half(self) -> str:
        """The peers' precision: float16 on a GPU, float32 on a CPU."""
        return "float16" if self.device == "gpu" else "float32"


@dataclass
class Inputs:
    """One size's shared inputs: a log-mel window, the prompt and the tokens every engine reads,
    and PyTorch float32's encoder output and last logits (the reference: :func:`reference`)."""

    mel: np.ndarray
    prompt: list[int]
    tokens: list[int]
    eot: int
    encoder: np.ndarray | None = None
    logits: np.ndarray | None = None


def median_seconds(call: Callable[[], object], sync: Callable[[], None], repeats: int) -> float:
    """``call()`` once to warm up, then the median of ``repeats`` timed calls, each followed by
    ``sync()`` (the device's queue drained)."""
    call()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def step_seconds(
    start_session: Callable[[], object], inputs: Inputs, batch: int, sync, plan: Plan
) -> float:
    """Seconds per one-token step at ``batch`` rows: a new session, the prompt, then the tokens,
    each row fed the same (logits left on the device); the median of ``plan.repeats`` runs after
    a warm-up."""
    times = []
    prompt = np.repeat(np.array([inputs.prompt]), batch, 0)
    for _ in range(plan.repeats + 1):
        session = start_session()
        feed(session, prompt)
        sync()
        start = time.perf_counter()
        for token in inputs.tokens:
            feed(session, np.full((batch, 1), token, dtype=np.int64))
        sync()
        times.append((time.perf_counter() - start) / len(inputs.tokens))
    return float(np.median(times[1:]))


def feed(session, tokens: np.ndarray) -> object:
    """One decoder step with its logits left on the device: PyTorch's session's ``step``, MAX's
    ``_step`` (the step behind its ``logits``; the engine's sources key its compiled graphs, so
    the lab reaches in rather than change them)."""
    step = getattr(session, "step", None) or session._step
    return step(tokens)


def _rows(batch: int) -> np.ndarray:
    return np.zeros(batch, dtype=np.int64)


def _prompt_inputs(weights) -> Inputs:
    from ...decoding.tokenizer import get_tokenizer

    dims = weights.dims
    rng = np.random.default_rng(0)
    mel = rng.normal(-0.2, 0.4, size=(1, dims.n_mels, 2 * dims.n_audio_ctx)).astype(np.float32)
    tokenizer = get_tokenizer(dims, **language_of(dims))
    prompt = [*tokenizer.sot_sequence_including_notimestamps, *tokenizer.encode(" And so my")]
    return Inputs(mel, prompt, [], tokenizer.eot)


# -- the engines -------------------------------------------------------------------------------
def measure_max(weights, dtype: str, plan: Plan, inputs: Inputs) -> dict:
    """MAX at ``dtype``: load, agreement, encoder and decoder times."""
    from ...engine import runtime
    from ...engine.model import MaxWhisper

    start = time.perf_counter()
    model = MaxWhisper(weights, device=plan.device, dtype=dtype)
    model.warm_up()
    row: dict = {"engine": "max", "dtype": dtype, "load_s": time.perf_counter() - start}
    device = runtime.get_device(model.device_name)
    sync = device.synchronize
    features = model.embed_audio(inputs.mel)
    row.update(_agreement(model, features, inputs))
    for batch in plan.encoder_batches:
        mel = runtime.to_device_as(np.repeat(inputs.mel, batch, 0), model.dtype, model.device_name)
        seconds = median_seconds(lambda m=mel: model.embed_audio(m), sync, plan.repeats)
        row[f"encoder_ms_b{batch}"] = seconds * 1e3
    return row | _step_times(model, features, inputs, plan, sync)


def measure_torch(weights, dtype: str, plan: Plan, inputs: Inputs) -> dict:
    """openai-whisper's PyTorch model at ``dtype`` on the device, as :func:`measure_max`."""
    import torch

    from ...decoding.reference import TorchBackend

    device = "cuda" if plan.device == "gpu" else "cpu"
    start = time.perf_counter()
    model = TorchBackend(weights, device=device, dtype=getattr(torch, dtype))
    row: dict = {"engine": "pytorch", "dtype": dtype, "load_s": time.perf_counter() - start}

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    features = model.embed_audio(inputs.mel)
    row.update(_agreement(model, features, inputs))
    for batch in plan.encoder_batches:
        mel = np.repeat(inputs.mel, batch, 0)
        tensor = torch.as_tensor(mel, device=device).to(getattr(torch, dtype))
        with torch.no_grad():
            seconds = median_seconds(lambda t=tensor: model.model.encoder(t), sync, plan.repeats)
        row[f"encoder_ms_b{batch}"] = seconds * 1e3
    return row | _step_times(model, features, inputs, plan, sync)


def measure_ct2(weights, dtype: str, plan: Plan, inputs: Inputs) -> dict:
    """CTranslate2 at ``dtype`` (its compute type): its encoder output's agreement, encoder times, and a
    decoder step as the slope of greedy ``generate`` over ``2 * steps`` more tokens."""
    import ctranslate2

    from .sizes import load_ct2

    device = "cuda" if plan.device == "gpu" else "cpu"
    start = time.perf_counter()
    model = load_ct2(weights, dtype, device)
    row: dict = {"engine": "ctranslate2", "dtype": dtype}
    row["load_s"] = time.perf_counter() - start

    def encode(mel: np.ndarray, to_cpu: bool = False):
        return model.encode(ctranslate2.StorageView.from_array(mel), to_cpu=to_cpu)

    row.update(_errors(np.array(encode(inputs.mel, to_cpu=True)), None, inputs))
    for batch in plan.encoder_batches:
        mel = np.ascontiguousarray(np.repeat(inputs.mel, batch, 0))
        seconds = median_seconds(lambda m=mel: encode(m), lambda: None, plan.repeats)
        row[f"encoder_ms_b{batch}"] = seconds * 1e3
    short = 2 * len(inputs.prompt)  # generate returns at most max_length // 2 new tokens
    long = short + 4 * plan.steps
    for batch in plan.decoder_batches:
        features = encode(np.ascontiguousarray(np.repeat(inputs.mel, batch, 0)))
        prompts = [inputs.prompt] * batch

        def generate(length: int, f=features, p=prompts) -> tuple[float, int]:
            start = time.perf_counter()
            result = model.generate(
                f,
                p,
                beam_size=1,
                max_length=length,
                suppress_blank=False,
                suppress_tokens=[inputs.eot],
                return_scores=False,
            )
            return time.perf_counter() - start, len(result[0].sequences_ids[0])

        generate(short)
        times: dict[int, list[float]] = {short: [], long: []}
        counts = {}
        for _ in range(plan.repeats):
            for length in (short, long):
                seconds, counts[length] = generate(length)
                times[length].append(seconds)
        slope = (np.median(times[long]) - np.median(times[short])) / max(
            counts[long] - counts[short], 1
        )
        row[f"step_ms_b{batch}"] = float(slope) * 1e3
    return row


def _agreement(model, features, inputs: Inputs) -> dict:
    """A MAX or PyTorch model's errors at batch 1: its encoder output, and its logits after the
    prompt and the tokens."""
    session = model.start_decoding(features, _rows(1))
    logits = session.logits(np.array([inputs.prompt]))
    for token in inputs.tokens:
        logits = session.logits(np.array([[token]]))
    return _errors(features.numpy(), logits, inputs)


def _step_times(model, features, inputs: Inputs, plan: Plan, sync) -> dict:
    """A MAX or PyTorch model's milliseconds per decoder token at each decoder batch."""
    times = {}
    for batch in plan.decoder_batches:
        start_session = partial(model.start_decoding, features, _rows(batch))
        times[f"step_ms_b{batch}"] = step_seconds(start_session, inputs, batch, sync, plan) * 1e3
    return times


def _errors(encoder: np.ndarray, logits: np.ndarray | None, inputs: Inputs) -> dict:
    """Relative errors against the reference (none while the reference itself is measured)."""
    if inputs.encoder is None:
        return {}
    errors = {"encoder_rel_error": compare(encoder, inputs.encoder)[1]}
    if logits is not None and inputs.logits is not None:
        errors["logits_rel_error"] = compare(logits, inputs.logits)[1]
    return errors


def reference(weights, plan: Plan, inputs: Inputs) -> None:
    """PyTorch float32 on the device: its ``steps`` greedy tokens after the prompt (the
    sequence every engine then reads), its encoder output and its last logits."""

    from ...decoding.reference import TorchBackend

    model = TorchBackend(weights, device="cuda" if plan.device == "gpu" else "cpu")
    features = model.embed_audio(inputs.mel)
    session = model.start_decoding(features, _rows(1))
    logits = session.logits(np.array([inputs.prompt]))
    for _ in range(plan.steps):
        inputs.tokens.append(int(np.argmax(logits[0, -1])))
        logits = session.logits(np.array([inputs.tokens[-1:]]))
    inputs.encoder, inputs.logits = features.numpy(), logits


def measure_size(name: str, plan: Plan) -> Iterator[dict]:
    """The rows of size ``name``: MAX at each of ``plan.dtypes``, then PyTorch and CTranslate2
    at the peers' precision, each with its agreement against PyTorch float32."""
    weights = size_weights(name)
    inputs = _prompt_inputs(weights)
    reference(weights, plan, inputs)
    measured = {
        "model": name,
        "weights": "real" if name in PACKAGED else "random (float16)",
        "parameters_m": round(sum(t.size for t in weights.tensors.values()) / 1e6, 1),
    }
    engines = [partial(measure_max, dtype=dtype) for dtype in plan.dtypes]
    engines += [partial(measure_torch, dtype=plan.half), partial(measure_ct2, dtype=plan.half)]
    for measure in engines:
        row = measure(weights, plan=plan, inputs=inputs)
        _free()  # each engine's memory before the next loads
        yield _checked({**measured, **row})


def _free() -> None:
    gc.collect()
    try:
        import torch
    except ImportError:  # pragma: no cover: the lab has torch
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _checked(row: dict) -> dict:
    worst = max(row.get("encoder_rel_error", 0.0), row.get("logits_rel_error", 0.0))
    row["agrees"] = bool(worst <= TOLERANCE[row["dtype"]])
    return row


def speedups(table: pd.DataFrame) -> pd.DataFrame:
    """Per size and MAX precision: the peers' time over MAX's for each measured column."""
    rows = []
    timed = [c for c in table.columns if c.startswith(("encoder_ms_", "step_ms_"))]
    for model, group in table.groupby("model", sort=False):
        peers = {r["engine"]: r for _, r in group.iterrows() if r["engine"] != "max"}
        for _, ours in group[group["engine"] == "max"].iterrows():
            row = {"model": model, "dtype": ours["dtype"]}
            for engine, peer in peers.items():
                for column in timed:
                    row[f"{column}_vs_{engine}"] = peer[column] / ours[column]
            rows.append(row)
    return pd.DataFrame(rows)


def run(models: Sequence[str], plan: Plan, output: Path | None, deadline: float | None) -> dict:
    """Measure ``models`` in order under ``plan``, stopping before a size once ``deadline``
    seconds have passed; rows written to ``output/sizes.csv`` as they come."""
    start = time.monotonic()
    rows: list[dict] = []
    skipped: list[str] = []
    for name in models:
        if deadline is not None and time.monotonic() - start > deadline:
            skipped.append(name)
            continue
        for row in measure_size(name, plan):
            rows.append(row)
            print(json.dumps(row), flush=True)
            if output is not None:
                _write(output, rows, skipped, plan)
    if output is not None:
        _write(output, rows, skipped, plan)
    return {"rows": rows, "skipped": skipped}


def _write(output: Path, rows: list[dict], skipped: list[str], plan: Plan) -> None:
    output.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(rows)
    with atomic_text_file(output / "sizes.csv") as out:
        table.to_csv(out, index=False)
    with atomic_text_file(output / "speedups.csv") as out:
        speedups(table).to_csv(out, index=False)
    with atomic_text_file(output / "skipped.json") as out:
        json.dump({"skipped": skipped, "plan": plan.__dict__, "cpu": cpu_model()}, out, indent=1)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(SIZES))
    parser.add_argument("--device", default="gpu", choices=["gpu", "cpu"])
    parser.add_argument("--dtypes", default=None, help="MAX's (gpu: float16,bfloat16)")
    parser.add_argument("--encoder_batches", type=_ints, default=(1, 16))
    parser.add_argument("--decoder_batches", type=_ints, default=(1, 8, 64))
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--deadline", type=float, default=None, help="seconds: no size after")
    parser.add_argument("--output", type=Path, default=None, help="report folder")
    args = parser.parse_args(argv)
    default = "float16,bfloat16" if args.device == "gpu" else "float32"
    plan = Plan(
        args.device,
        tuple((args.dtypes or default).split(",")),
        args.encoder_batches,
        args.decoder_batches,
        args.steps,
        args.repeats,
    )
    result = run(args.models.split(","), plan, args.output, args.deadline)
    table = pd.DataFrame(result["rows"])
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if len(table):
        print(speedups(table).to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if result["skipped"]:
        print("skipped (deadline):", ", ".join(result["skipped"]))


if __name__ == "__main__":
    main()
