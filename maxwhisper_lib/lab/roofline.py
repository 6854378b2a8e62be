"""The memory floor of decoding: a bandwidth probe, the bytes each graph reads, the decoder step
against its floor.

A decoder step at small batch does little arithmetic per byte: it streams every decoder weight,
the cross-attention keys/values of each sequence and its self-attention cache once. Its floor is
therefore ``bytes it must read / memory bandwidth``. :func:`bandwidth_probe` measures that
bandwidth STREAM-style (copy, triad and a read-only sum, in NumPy and in a MAX graph), from memory when the
step's working set outgrows the last-level cache (arrays four times the cache, STREAM's rule),
else at the working set's size; :func:`graph_bytes` counts what each graph must read per call;
:func:`decoder_steps` times one-token steps of any engine that speaks the backend protocol (MAX, or openai-whisper's
PyTorch model) and sets them against the floor.

``python -m maxwhisper_lib.lab.roofline --help`` runs it from the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..decoding.backend import WhisperBackend

FLOAT32 = 4


@dataclass
class BandwidthResult:
    """One STREAM-style kernel: bytes moved per call (read + written) and the best rate."""

    method: str
    array_mb: float
    bytes_moved: int
    seconds: float
    gb_per_s: float


def _best_seconds(call: Callable[[], object], repeats: int) -> float:
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def numpy_stream(
    array_bytes: int, repeats: int = 10, threads: int | None = None
) -> list[BandwidthResult]:
    """NumPy copy ``c = a``, triad ``a = b + s * c`` and read ``sum(a)`` over float32 arrays of
    ``array_bytes``, split across ``threads`` (default: every usable core; NumPy releases the GIL
    in all three)."""
    threads = threads or len(os.sched_getaffinity(0))
    n = max(array_bytes // FLOAT32, threads * 16)
    a, b, c = (np.full(n, value, dtype=np.float32) for value in (1.0, 2.0, 0.0))
    chunks = np.array_split(np.arange(n), threads)
    bounds = [(int(ch[0]), int(ch[-1]) + 1) for ch in chunks if len(ch)]
    pool = ThreadPoolExecutor(threads)

    def parallel(kernel: Callable[[int, int], None]) -> Callable[[], None]:
        return lambda: list(pool.map(lambda span: kernel(*span), bounds))

    def copy(lo: int, hi: int) -> None:
        np.copyto(c[lo:hi], a[lo:hi])

    def triad(lo: int, hi: int) -> None:  # two passes: c*s into a, then a += b
        np.multiply(c[lo:hi], np.float32(3.0), out=a[lo:hi])
        np.add(a[lo:hi], b[lo:hi], out=a[lo:hi])

    def read(lo: int, hi: int) -> None:  # what a decoder step does: bytes read, none written
        b[lo:hi].sum()

    try:
        copy_s = _best_seconds(parallel(copy), repeats)
        triad_s = _best_seconds(parallel(triad), repeats)
        read_s = _best_seconds(parallel(read), repeats)
    finally:
        pool.shutdown()
    size = n * FLOAT32
    return [
        BandwidthResult("numpy copy", size / 1e6, 2 * size, copy_s, 2 * size / copy_s / 1e9),
        BandwidthResult(
            "numpy triad (2 passes)", size / 1e6, 5 * size, triad_s, 5 * size / triad_s / 1e9
        ),
        BandwidthResult("numpy read", size / 1e6, size, read_s, size / read_s / 1e9),
    ]


def max_stream(array_bytes: int, device: str = "cpu", repeats: int = 10) -> list[BandwidthResult]:
    """MAX graph copy ``c = -a`` and triad ``a = b + s * c`` (one fused elementwise kernel each)
    and read ``sum(a)`` (a reduction) over float32 arrays of ``array_bytes`` on ``device``."""
    from max.dtype import DType
    from max.graph import Graph, TensorType, ops

    from ..engine import runtime

    n = max(array_bytes // FLOAT32, 1024)
    ref = runtime.device_ref(device)
    vector = TensorType(DType.float32, ["n"], device=ref)
    with Graph("stream_copy", input_types=[vector]) as copy_graph:
        copy_graph.output(-copy_graph.inputs[0].tensor)
    with Graph("stream_triad", input_types=[vector, vector]) as triad_graph:
        b, c = (v.tensor for v in triad_graph.inputs)
        triad_graph.output(b + c * 3.0)
    with Graph("stream_read", input_types=[vector]) as read_graph:
        read_graph.output(ops.sum(read_graph.inputs[0].tensor, axis=0))
    copy_model = runtime.compile_graph(copy_graph, device)
    triad_model = runtime.compile_graph(triad_graph, device)
    read_model = runtime.compile_graph(read_graph, device)
    b = runtime.to_device(np.full(n, 2.0, np.float32), device)
    c = runtime.to_device(np.full(n, 1.0, np.float32), device)
    size = n * FLOAT32
    copy_s = _best_seconds(lambda: copy_model.execute(c), repeats)
    triad_s = _best_seconds(lambda: triad_model.execute(b, c), repeats)
    read_s = _best_seconds(lambda: read_model.execute(c), repeats)
    return [
        BandwidthResult("max copy", size / 1e6, 2 * size, copy_s, 2 * size / copy_s / 1e9),
        BandwidthResult("max triad", size / 1e6, 3 * size, triad_s, 3 * size / triad_s / 1e9),
        BandwidthResult("max read", size / 1e6, size, read_s, size / read_s / 1e9),
    ]


def last_level_cache_bytes() -> int | None:
    """The size of the CPU's largest cache (Linux sysfs), or None where it cannot be read."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    sizes = []
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = path.read_text().strip().upper()
        try:
            sizes.append(int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text))
        except (ValueError, IndexError):
            continue
    return max(sizes) if sizes else None


PROBE_ARRAY_CAP = 1 << 30
"""The largest array the probe allocates (three of them for the triad)."""


def probe_array_bytes(working_set_bytes: int, cache_bytes: int | None) -> int:
    """Bytes per probe array. A working set larger than the last-level cache is read from
    memory on every step (a cyclic sweep larger than the cache keeps none of it), so its probe
    follows STREAM's own rule: each array at least four times the cache (an array that fits,
    or is still there from the previous pass, measures the cache), up to
    :data:`PROBE_ARRAY_CAP`. A working set that fits the cache is probed at its own size (a
    third per array)."""
    array_bytes = max(working_set_bytes // 3, 1 << 20)
    if cache_bytes is not None and working_set_bytes > cache_bytes:
        array_bytes = max(array_bytes, min(4 * cache_bytes, PROBE_ARRAY_CAP))
    return array_bytes


def bandwidth_probe(
    working_set_bytes: int, device: str = "cpu", repeats: int = 10, with_max: bool = True
) -> list[BandwidthResult]:
    """Copy and triad in NumPy (and MAX) over arrays sized by :func:`probe_array_bytes`: the
    bandwidth a decoder step that streams ``working_set_bytes`` per call can expect."""
    array_bytes = probe_array_bytes(working_set_bytes, last_level_cache_bytes())
    results = numpy_stream(array_bytes, repeats) if device == "cpu" else []
    if with_max:
        results += max_stream(array_bytes, device, repeats)
    return results


def best_bandwidth(results: Sequence[BandwidthResult]) -> float:
    """The highest rate the probe reached, GB/s: the floor's denominator."""
    return max(r.gb_per_s for r in results)


# --------------------------------------------------------------------------- bytes per call


def _nbytes(registry: dict, keep: Callable[[str], bool]) -> int:
    return sum(int(np.asarray(v).nbytes) for k, v in registry.items() if keep(k))


def _cross_item(model) -> int:
    """Bytes per stored cross key/value element (float16 in the int8 mode)."""
    from ..engine.graphs.decoder import cross_dtype

    return cross_dtype(model.dtype, getattr(model, "int8", False)).size_in_bytes


def _decoder_step_weight(name: str) -> bool:
    return name.startswith("decoder.") and ".cross_attn.kv." not in name


def decoder_step_bytes(
    model, batch: int, n_new: int = 1, windows: int | None = None, cached: int | None = None
) -> dict[str, int]:
    """What one decoder step of ``model`` (a :class:`~maxwhisper_lib.engine.model.MaxWhisper`) must
    read for ``batch`` sequences over ``windows`` audio windows (default: one each): its weights
    once (in the precision they are stored in on the device), the cross-attention keys/values
    (float16 in the int8 mode) once per window when sequences share them (the row kernels) else
    once per sequence, the ``cached`` filled positions of each sequence's self-attention cache (default: its full
    capacity) plus the new ones it writes, and the logits it writes back. Embedding
    lookups read one row per token (counted with the weights only when the table doubles as the
    logits projection)."""
    dims = model.dims
    item = model.dtype.size_in_bytes  # activations and caches (keys/values: _cross_item)
    width = dims.n_text_state
    tables = {"decoder.positional_embedding"}
    if "decoder.logits.weight" in model.registry:
        tables.add("decoder.token_embedding")  # separate table: only rows are gathered
    weights = _nbytes(model.registry, lambda k: _decoder_step_weight(k) and k not in tables)
    shared = getattr(model, "row_kernels", False)
    readers = (batch if windows is None else windows) if shared else batch
    cross = readers * dims.n_text_layer * 2 * dims.n_audio_ctx * width * _cross_item(model)
    positions = dims.n_text_ctx if cached is None else min(cached + n_new, dims.n_text_ctx)
    cache = batch * dims.n_text_layer * 2 * positions * width * item
    logits = batch * n_new * dims.n_vocab * FLOAT32
    return {
        "weights": weights,
        "cross_attention_kv": cross,
        "self_attention_cache": cache,
        "logits": logits,
        "total": weights + cross + cache + logits,
    }


def graph_bytes(model, batch: int = 1) -> list[dict]:
    """Per graph of ``model``: the weight bytes it binds and the input/output bytes of one call
    at ``batch`` windows (or sequences), and the resulting floor at no reuse."""
    dims = model.dims
    item = model.dtype.size_in_bytes  # activations and caches (keys/values: _cross_item)
    features = batch * dims.n_audio_ctx * dims.n_audio_state * item
    mel = batch * dims.n_mels * 2 * dims.n_audio_ctx * item
    cross = (
        batch * dims.n_text_layer * 2 * dims.n_audio_ctx * dims.n_text_state * _cross_item(model)
    )
    step = decoder_step_bytes(model, batch)
    rows = [
        ("encoder", _nbytes(model.registry, lambda k: k.startswith("encoder.")), mel + features),
        ("cross_kv", _nbytes(model.registry, lambda k: ".cross_attn.kv." in k), features + cross),
        ("decoder_step", step["weights"], step["total"] - step["weights"]),
    ]
    return [
        {
            "graph": name,
            "batch": batch,
            "weight_mb": weights / 1e6,
            "activation_mb": activations / 1e6,
            "total_mb": (weights + activations) / 1e6,
        }
        for name, weights, activations in rows
    ]


# --------------------------------------------------------------------------- decoder steps


@dataclass
class StepResult:
    """One engine's one-token decoder step at one batch size, against the floor."""

    engine: str
    batch: int
    ms_per_step: float
    ms_per_token: float
    bytes_per_step: int | None
    floor_ms: float | None
    achieved_gb_per_s: float | None
    probe_gb_per_s: float | None

    @property
    def floor_ratio(self) -> float | None:
        """Measured / floor (1.0 would be the memory bound)."""
        return None if not self.floor_ms else self.ms_per_step / self.floor_ms


def step_sessions(
    backend: WhisperBackend, mel: np.ndarray, batch: int, prompt: Sequence[int]
) -> Callable[[], None]:
    """A one-token step for ``batch`` sequences on one window of ``mel`` (``(n_mels, 3000)``: the
    beams of one window), ready after ``prompt``; each call feeds the prompt's last token again
    (a step's cost does not depend on which token it is)."""
    audio = backend.embed_audio(np.asarray(mel, np.float32)[None])
    session = backend.start_decoding(audio, np.zeros(batch, dtype=np.int64))
    session.logits(np.tile(np.asarray(prompt, np.int64), (batch, 1)))
    token = np.full((batch, 1), prompt[-1], dtype=np.int64)
    return lambda: session.logits(token)


STEP_TURN = 8
"""Timed one-token steps an engine takes in a row in :func:`decoder_steps`."""


def median_cached_positions(prompt_length: int, steps: int, turn: int = STEP_TURN) -> int:
    """Positions in the cache at the median timed step of :func:`decoder_steps`: ``steps`` timed
    one-token steps after a prompt, in turns of ``turn``, each turn after one untimed step."""
    turns = -(-steps // turn)
    return prompt_length + turns * (turn + 1) // 2


def decoder_steps(
    engines: dict[str, WhisperBackend],
    mel: np.ndarray,
    prompt: Sequence[int],
    batch_sizes: Sequence[int] = (1, 2, 4, 8, 16),
    steps: int = 64,
    probe_gb_per_s: float | None = None,
    bytes_model=None,
    log: Callable[[str], None] | None = None,
    turn: int = STEP_TURN,
) -> list[StepResult]:
    """Each engine's median one-token step per batch size (``batch`` beams of one window), with
    the floor of the bytes ``bytes_model`` (a MaxWhisper; default: each MAX engine itself) must
    read at the median step's cache length (:func:`median_cached_positions`).

    The engines take turns of ``turn`` timed steps, so that load on the machine hits them alike;
    each turn starts with one untimed step. Each engine's threads keep spinning for a while
    after its calls: on two cores (2026-12-04) MAX's first step after PyTorch's took 10.8 ms at
    batch 1 against 4.9 ms alone, PyTorch's first after MAX's 45 ms against 13 ms, and steps
    interleaved one by one measured MAX 1.9x and PyTorch 1.2x slower than in turns of eight."""
    cached = median_cached_positions(len(prompt), steps, turn)
    rows = []
    for batch in batch_sizes:
        step = {name: step_sessions(b, mel, batch, prompt) for name, b in engines.items()}
        times: dict[str, list[float]] = {name: [] for name in engines}
        for _ in range(-(-steps // turn)):
            for name, call in step.items():
                call()
                for _ in range(turn):
                    start = time.perf_counter()
                    call()
                    times[name].append(time.perf_counter() - start)
        for name, backend in engines.items():
            seconds = statistics.median(times[name])
            counter = bytes_model or (backend if hasattr(backend, "registry") else None)
            step_bytes = (
                decoder_step_bytes(counter, batch, windows=1, cached=cached)["total"]
                if counter
                else None
            )
            floor = step_bytes / (probe_gb_per_s * 1e9) if step_bytes and probe_gb_per_s else None
            rows.append(
                StepResult(
                    engine=name,
                    batch=batch,
                    ms_per_step=seconds * 1e3,
                    ms_per_token=seconds * 1e3 / batch,
                    bytes_per_step=step_bytes,
                    floor_ms=None if floor is None else floor * 1e3,
                    achieved_gb_per_s=step_bytes / seconds / 1e9 if step_bytes else None,
                    probe_gb_per_s=probe_gb_per_s,
                )
            )
            if log:
                log(f"decoder step  batch {batch:>2}  {name:<16} {seconds * 1e3:7.2f} ms")
    return rows


def measure_roofline(
    backends: dict[str, WhisperBackend],
    mel: np.ndarray,
    prompt: Sequence[int],
    batch_sizes: Sequence[int] = (1, 2, 4, 8, 16),
    steps: int = 64,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Probe at the working set of the first MAX backend's step, bytes per graph, and every
    backend's decoder steps against that floor, as one JSON-able dict."""
    ours = next((b for b in backends.values() if hasattr(b, "registry")), None)
    working_set = decoder_step_bytes(ours, 1)["total"] if ours else 64 << 20
    probe = bandwidth_probe(working_set)
    bandwidth = best_bandwidth(probe)
    if log:
        array_mb = probe[0].array_mb if probe else 0.0
        log(
            f"bandwidth probe for a {working_set / 1e6:.0f} MB working set "
            f"({array_mb:.0f} MB arrays): best {bandwidth:.1f} GB/s"
        )
    rows = decoder_steps(backends, mel, prompt, batch_sizes, steps, bandwidth, ours, log)
    return {
        "probe": [asdict(r) for r in probe],
        "probe_gb_per_s": bandwidth,
        "graph_bytes": graph_bytes(ours) if ours else [],
        "cached_positions": median_cached_positions(len(prompt), steps),
        "step_turn": STEP_TURN,
        "steps": [{**asdict(r), "floor_ratio": r.floor_ratio} for r in rows],
    }


def roofline_backends(weights, engines: Sequence[str]) -> dict[str, WhisperBackend]:
    """``max`` (row kernels at the checkpoint's precision), ``max-matmul`` (MAX's float32
    matmuls), ``openai-whisper`` (PyTorch float32), all on the CPU and the same weights."""
    from ..engine.model import MaxWhisper

    backends: dict[str, WhisperBackend] = {}
    for name in engines:
        if name == "max":
            backends[name] = MaxWhisper(weights, device="cpu")
        elif name == "max-matmul":
            backends[name] = MaxWhisper(weights, device="cpu", row_kernels=False)
        elif name == "openai-whisper":
            from ..decoding.reference import TorchBackend

            backends[name] = TorchBackend(weights)
        else:
            raise ValueError(f"unknown engine {name!r} for the roofline")
    return backends


def step_inputs(weights, clip_id: str = "jfk") -> tuple[np.ndarray, list[int]]:
    """A real window (``clip_id``'s log-mel) and the start-of-transcript prompt."""
    from .checks import real_inputs

    mel, tokens = real_inputs(weights, clip_id)
    return mel, [int(t) for t in tokens[:3]]


def run_roofline(
    model: str = "tiny.en",
    engines: Sequence[str] = ("max", "max-matmul", "openai-whisper"),
    batch_sizes: Sequence[int] = (1, 2, 4, 8, 16),
    steps: int = 64,
    log: Callable[[str], None] | None = print,
) -> dict:
    """:func:`measure_roofline` for ``engines`` (see :func:`roofline_backends`) on CPU."""
    from ..checkpoints import load_weights

    weights = load_weights(model)
    mel, prompt = step_inputs(weights)
    backends = roofline_backends(weights, engines)
    return {"model": model, **measure_roofline(backends, mel, prompt, batch_sizes, steps, log)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m maxwhisper_lib.lab.roofline", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--engines", default="max,max-matmul,openai-whisper")
    parser.add_argument("--batch-sizes", default="1,2,4,8,16")
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--output", type=Path, default=None, help="write roofline.json here")
    args = parser.parse_args(argv)
    import pandas as pd

    result = run_roofline(
        args.model,
        [e for e in args.engines.split(",") if e],
        [int(b) for b in args.batch_sizes.split(",") if b],
        args.steps,
    )
    print(pd.DataFrame(result["steps"]).to_string(index=False))
    if args.output:
        args.output.mkdir(parents=True, exist_ok=True)
        (args.output / "roofline.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
