"""The greedy device loop on a GPU, part by part, each under its own deadline (JSON lines).

    python scripts/gpu_host/gpu_decode_loop.py --out loop.jsonl [--model tiny.en] [--dtype float16]
        [--batches 1,64] [--steps 64] [--device gpu|cpu] [--part-seconds 90]

Parts, in order (each line names its part; a part past its deadline, or failing, says so and
the next one runs):

1. ``kernels``: the kernels one token costs. On a GPU ``max.driver`` records the launches of one
   decoder step of the host loop (the logits graph, then the host's filters) and of one step
   graph of the device loop (decoder, filters, choice, state): names and counts. On the CPU the
   compiled programs' kernel summaries stand in.
2. ``capture``: ``Model.capture`` of the step graph at each batch size, ``debug_verify_replay``
   (eager launches against the captured graph), and a decode of one window with and without
   capture: the same tokens.
3. ``step``: per batch size, ``--steps`` steps queued back to back, timed by the wall clock (host
   time to queue them: what a token costs the host) and by device events (what it costs the
   GPU), plain ``execute`` against ``replay``; the host loop's step (logits to the host, NumPy
   filters) beside them.

Token identity on the dev clips and the peers' benchmark are the pipeline's stages 03 and 04
(``scripts/gpu_host/gpu_lease.sh stage``); this script is the loop's own evidence. It runs on the CPU
too (``--device cpu``, the rehearsal), where capture and launch traces do not exist.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from maxwhisper_lib.audio.features import N_SAMPLES  # noqa: E402
from maxwhisper_lib.audio.load import load_audio  # noqa: E402
from maxwhisper_lib.checkpoints import load_weights  # noqa: E402
from maxwhisper_lib.decoding.decode import DecodingOptions, DecodingTask  # noqa: E402
from maxwhisper_lib.engine import runtime  # noqa: E402
from maxwhisper_lib.engine.model import MaxWhisper  # noqa: E402
from maxwhisper_lib.lab.manifest import clip  # noqa: E402

CLIP = "jfk"


class Deadline(Exception):
    pass


@contextmanager
def deadline(seconds: float):
    """Raise :class:`Deadline` in the block after ``seconds`` (SIGALRM)."""

    def expire(*_):
        raise Deadline(f"past its {seconds:.0f} s deadline")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Window:
    """One window of ``CLIP`` repeated ``batch`` times, encoded, with its decode's inputs."""

    def __init__(self, model: MaxWhisper, batch: int) -> None:
        samples = load_audio(clip(CLIP).path)
        mel = model.log_mel(samples[:N_SAMPLES], N_SAMPLES - min(len(samples), N_SAMPLES))
        self.model = model
        self.batch = batch
        self.audio = model.embed_audio(np.repeat(mel[None, :, :3000], batch, axis=0))
        self.task = DecodingTask(model, DecodingOptions(language="en", temperature=0.0))
        self.initial = np.array([self.task.initial_tokens()] * batch, dtype=np.int64)
        filters = self.task.logit_filters(self.initial.shape[1])
        self.masks = filters.masks(model.dims.n_vocab)
        no_speech = self.task.tokenizer.no_speech
        self.settings = filters.settings(model.dims.n_vocab, -1 if no_speech is None else no_speech)
        self.sot_index = self.task.initial_tokens().index(self.task.tokenizer.sot)

    def session(self):
        return self.model.start_decoding(self.audio, np.arange(self.batch))

    def decode(self) -> np.ndarray:
        """The greedy tokens of every row (the device loop)."""
        result = self.session().decode_greedy(
            self.initial, self.sot_index, self.task.sample_len, self.masks, self.settings
        )
        return result.tokens

    def started(self):
        """The start graph queued; the loop and its :class:`~maxwhisper_lib.engine.greedy_loop.Started`."""
        loop = self.model.greedy_loop
        return loop, loop.start(
            self.session(), self.initial, self.sot_index, *self.masks, self.settings
        )


def timed(device, run: Callable[[], None], n: int) -> dict:
    """Queue ``run`` ``n`` times: host ms per call (queueing), wall ms per call until the device
    is done, and device-event ms per call where the device keeps time."""
    from max.driver import DeviceEvent

    events = None
    if not device.is_host:
        events = (DeviceEvent(device, enable_timing=True), DeviceEvent(device, enable_timing=True))
        device.default_queue.record_event(events[0])
    start = time.perf_counter()
    for _ in range(n):
        run()
    queued = time.perf_counter() - start
    if events is not None:
        device.default_queue.record_event(events[1])
    device.synchronize()
    wall = time.perf_counter() - start
    out = {"host_ms": 1e3 * queued / n, "wall_ms": 1e3 * wall / n}
    if events is not None:
        out["device_ms"] = events[0].elapsed_time(events[1]) / n
    return out


def part_kernels(model: MaxWhisper, window: Window) -> dict:
    from max import driver

    out: dict = {}
    if model.device_name == "cpu" or not hasattr(driver, "begin_launch_trace"):
        for name in ("decoder_step", "decode_step"):
            out[name] = {"kernel_summaries": len(model.compiled(name).kernel_summaries)}
        return out
    loop, started = window.started()
    try:
        device = loop.device
        device.synchronize()
        driver.begin_launch_trace()
        model.compiled("decode_step").execute(*started.inputs)
        device.synchronize()
        trace = driver.take_launch_trace()
    finally:
        started.space.in_use = False
    out["decode_step"] = _trace_summary(trace)
    session = window.session()
    session.logits(window.initial)
    tokens = np.full((window.batch, 1), window.initial[0, -1], dtype=np.int64)
    device.synchronize()
    driver.begin_launch_trace()
    session.logits(tokens)
    trace = driver.take_launch_trace()
    out["host_loop_step"] = _trace_summary(trace)
    return out


def _trace_summary(trace) -> dict:
    """Counts per kind (kernel launch, memcpy, memset) and every entry's kind and name."""
    entries = [f"{entry.kind.name}:{entry.name}" for entry in trace]
    counts: dict[str, int] = {}
    for entry in trace:
        counts[entry.kind.name] = counts.get(entry.kind.name, 0) + 1
    return {"counts": counts, "entries": entries}


def part_capture(model: MaxWhisper, window: Window) -> dict:
    loop = model.greedy_loop
    if not loop.capture:
        return {"skipped": "no capture on this device"}
    captured = window.decode()
    out = {"capture_failed": loop.capture_failed}
    space = loop.workspaces.get(window.batch)
    if space is not None and space.captured is not None:
        _, started = window.started()
        try:
            model.compiled("decode_step").debug_verify_replay(window.batch, *started.inputs)
            out["debug_verify_replay"] = "ok"
        except Exception as error:  # reported, not raised
            out["debug_verify_replay"] = f"{type(error).__name__}: {error}"
        finally:
            started.space.in_use = False
    loop.capture = False
    try:
        plain = window.decode()
    finally:
        loop.capture = True
    out["same_tokens_with_and_without_capture"] = bool(np.array_equal(captured, plain))
    out["tokens"] = int(captured.shape[1] - window.initial.shape[1])
    return out


def _queued_steps(model: MaxWhisper, window: Window, steps: int, replay: bool) -> dict:
    """``steps`` step graphs queued on one started window batch, captured (``replay``) or not."""
    loop = model.greedy_loop
    capture = loop.capture
    loop.capture = replay
    try:
        _, started = window.started()
    finally:
        loop.capture = capture
    space, inputs = started.space, started.inputs
    try:
        if replay and space.captured is None:
            return {"skipped": loop.capture_failed}
        return timed(loop.device, lambda: loop._queue_step(space, inputs), steps)
    finally:
        space.in_use = False


def part_step(model: MaxWhisper, window: Window, steps: int) -> dict:
    loop = model.greedy_loop
    window.decode()  # warm: compiled, captured where it can be
    out = {"execute": _queued_steps(model, window, steps, replay=False)}
    if loop.capture:
        out["replay"] = _queued_steps(model, window, steps, replay=True)
    session = window.session()
    session.logits(window.initial)
    tokens = np.full((window.batch, 1), window.initial[0, -1], dtype=np.int64)
    filters = window.task.logit_filters(window.initial.shape[1])

    def host_step() -> None:
        logits = session.logits(tokens)[:, 0]
        filters.apply(logits, window.initial)
        logits.argmax(axis=-1)

    out["host_loop"] = timed(loop.device, host_step, min(steps, 400 - window.initial.shape[1]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--dtype", default="float16")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--part-seconds", type=float, default=90.0)
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    device = runtime.resolve_device_name(args.device)
    dtype = args.dtype if device == "gpu" else "float32"

    def write(record: dict) -> None:
        record = {"model": args.model, "device": device, "dtype": dtype, **record}
        line = json.dumps(record, default=str)
        print(line[:400], flush=True)
        with args.out.open("a") as f:
            f.write(line + "\n")

    start = time.perf_counter()
    with deadline(args.part_seconds * 2):
        model = MaxWhisper(load_weights(args.model), device=device, dtype=dtype)
        model.warm_up(("encoder", "cross_kv", "decoder_step", "decode_start", "decode_step"))
    write({"part": "load", "seconds": time.perf_counter() - start, "from_store": model.from_store})
    for batch in (int(b) for b in args.batches.split(",") if b):
        window = Window(model, batch)
        for name, part in (
            ("kernels", lambda w=window: part_kernels(model, w)),
            ("capture", lambda w=window: part_capture(model, w)),
            ("step", lambda w=window: part_step(model, w, args.steps)),
        ):
            began = time.perf_counter()
            try:
                with deadline(args.part_seconds):
                    result = part()
                write({"part": name, "batch": batch, **result})
            except Exception as error:  # each part reports; the next runs
                write(
                    {
                        "part": name,
                        "batch": batch,
                        "error": f"{type(error).__name__}: {error}",
                        "trace": traceback.format_exc()[-1500:],
                    }
                )
            finally:
                print(f"[{name} batch {batch}: {time.perf_counter() - began:.1f} s]", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
