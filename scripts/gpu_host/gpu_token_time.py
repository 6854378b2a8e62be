"""Where a decoded token's time goes on a GPU: wall time per token against the GPU's busy time.

    python scripts/gpu_host/gpu_token_time.py [--model tiny.en] [--dtype float16] [--batch 1,8,64]

For each batch size, ``transcribe_batch`` transcribes one clip repeated ``batch`` times, again and
again for ``--seconds``, while ``nvidia-smi`` samples the GPU's utilization every 100 ms (the
share of time one or more kernels were running). Wall time x utilization is the kernel time;
the rest is the host (Python, the logit rules, graph calls) and launch latency. A one-op graph's
call (launch, and launch plus copy back) gives the floor of one graph call. Prints JSON lines.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time

import numpy as np
from max.dtype import DType
from max.graph import Graph, TensorType

from maxwhisper_lib.audio.load import load_audio
from maxwhisper_lib.checkpoints import load_weights
from maxwhisper_lib.decoding.transcribe import transcribe_batch
from maxwhisper_lib.engine import runtime
from maxwhisper_lib.engine.model import MaxWhisper
from maxwhisper_lib.lab.manifest import clip


class Utilization:
    """``nvidia-smi``'s GPU utilization sampled every 100 ms while the block runs."""

    def __enter__(self) -> Utilization:
        command = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
        try:
            self.process = subprocess.Popen(
                [*command, "-lms", "100"], stdout=subprocess.PIPE, text=True
            )
        except FileNotFoundError:
            self.process = None
        return self

    def __exit__(self, *_) -> None:
        self.samples: list[float] = []
        if self.process is None:
            return
        self.process.terminate()
        out, _ = self.process.communicate()
        self.samples = [float(v) for v in out.split() if v.strip().replace(".", "").isdigit()]

    @property
    def mean(self) -> float | None:
        # the first sample covers the time before the block: leave it out
        kept = self.samples[1:] or self.samples
        return float(np.mean(kept)) / 100 if kept else None


def graph_call_floor(device: str, calls: int = 2000) -> dict:
    """Seconds per call of a one-op graph: queued only, and with the result copied back."""
    graph = Graph(
        "one_op", input_types=[TensorType(DType.float32, [1], device=runtime.device_ref(device))]
    )
    with graph:
        (x,) = graph.inputs
        graph.output(x.tensor + 1)
    model = runtime.compile_graph(graph, device)
    value = runtime.to_device(np.zeros(1, np.float32), device)
    model.execute(value)
    start = time.perf_counter()
    for _ in range(calls):
        out = model.execute(value)[0]
    runtime.host_float32(out)
    queued = (time.perf_counter() - start) / calls
    start = time.perf_counter()
    for _ in range(calls // 4):
        runtime.host_float32(model.execute(value)[0])
    round_trip = (time.perf_counter() - start) / (calls // 4)
    return {"one_op_call_us": queued * 1e6, "one_op_round_trip_us": round_trip * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--device", default="gpu")
    parser.add_argument("--dtype", default="float16")
    parser.add_argument("--clip", default="librispeech-1089-134686-0002")
    parser.add_argument("--batch", default="1,8,64")
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()

    print(json.dumps({"device": args.device, **graph_call_floor(args.device)}), flush=True)
    model = MaxWhisper(load_weights(args.model), device=args.device, dtype=args.dtype)
    audio = load_audio(clip(args.clip).path)
    options = {"temperature": 0.0, "language": "en", "condition_on_previous_text": False}
    for batch in [int(b) for b in args.batch.split(",")]:
        files = [audio] * batch
        transcribe_batch(model, files, batch_size=batch, **options)  # warm-up
        runs = tokens = 0
        with Utilization() as busy:
            start = time.perf_counter()
            while time.perf_counter() - start < args.seconds:
                results = transcribe_batch(model, files, batch_size=batch, **options)
                tokens += sum(len(s["tokens"]) for r in results for s in r["segments"])
                runs += 1
            wall = time.perf_counter() - start
        steps = tokens / batch  # decoder steps (every row decodes the same clip)
        row = {
            "batch": batch,
            "runs": runs,
            "wall_s": wall,
            "tokens": tokens,
            "ms_per_step": 1e3 * wall / steps,
            "us_per_token": 1e6 * wall / tokens,
            "gpu_busy": busy.mean,
            "gpu_samples": len(busy.samples),
            "audio_x_real_time": runs * batch * len(audio) / 16000 / wall,
        }
        if busy.mean is not None:
            row["kernel_ms_per_step"] = row["ms_per_step"] * busy.mean
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
