"""Time to a first transcript, from an empty MAX cache (cold) and from a filled one (warm).

Each run is the ``maxwhisper`` command in its own process, ``MODULAR_CACHE_DIR`` pointed at a
new folder for the cold run and at the same folder again for the warm runs, so nothing compiled
before (by tests, notebooks, other models) is found. The cold run meets what a fresh machine
has: the package's shipped portable build of the default model (:mod:`maxwhisper_lib.engine.compiled`);
``--compile_run`` adds a cold run with it turned off (``MAXWHISPER_PRECOMPILED=0``: every graph
compiled on this machine, minutes). The wall time is the whole command: Python start-up,
imports, weights, compilation or reading back the compiled model, decoding the audio and
writing the transcript.

    python -m maxwhisper_lib.lab.cold_start --output reports/cpu-2core-tiny.en-cold-start
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..atomic import atomic_text_file
from ..engine import machine
from ..engine.compiled import SHIPPED_SWITCH

DEFAULT_AUDIO = Path(__file__).resolve().parents[2] / "data" / "jfk.flac"
COLD_TARGET_S = 60.0
WARM_TARGET_S = 5.0
COMPILED = "cold, compiled"


@dataclass
class Run:
    """One ``maxwhisper`` process: which cache state it met (``cold``: empty, the shipped build
    allowed; ``cold, compiled``: empty, everything compiled; ``warm``), seconds, its transcript."""

    cache: str
    seconds: float
    text: str
    stderr_tail: str


@dataclass
class ColdStartResult:
    model: str
    device: str
    audio: str
    runs: list[Run] = field(default_factory=list)
    graph_alone_seconds: dict[str, float] = field(default_factory=dict)
    """Each graph of the model compiled on its own, each on an empty cache (the old way)."""
    machine: dict = field(default_factory=dict)

    def seconds(self, cache: str) -> float | None:
        """The fastest run that met ``cache`` (``cold`` or ``warm``)."""
        times = [r.seconds for r in self.runs if r.cache == cache]
        return min(times) if times else None

    def verdicts(self) -> dict[str, str]:
        verdicts = {}
        for cache, target in (
            ("cold", COLD_TARGET_S),
            ("warm", WARM_TARGET_S),
            (COMPILED, COLD_TARGET_S),
        ):
            seconds = self.seconds(cache)
            if seconds is not None:
                met = "met" if seconds < target else "missed"
                verdicts[cache] = f"{seconds:.1f} s (target < {target:.0f} s: {met})"
        return verdicts


def run_once(
    model: str, device: str, audio: Path, cache_dir: Path, output_dir: Path, cache: str
) -> Run:
    """The CLI on ``audio`` with ``MODULAR_CACHE_DIR=cache_dir``, timed from process start
    (``cache`` ``cold, compiled``: with the shipped builds turned off)."""
    env = {**os.environ, "MODULAR_CACHE_DIR": str(cache_dir)}
    env[SHIPPED_SWITCH] = "0" if cache == COMPILED else "1"
    command = [
        sys.executable, "-c", "from maxwhisper_lib.cli import main; raise SystemExit(main())",
        str(audio), "--model", model,
        "--device", device, "--output_dir", str(output_dir), "--output_format", "txt",
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"maxwhisper failed ({done.returncode}): {done.stderr[-2000:]}")
    text = (output_dir / f"{audio.stem}.txt").read_text().strip()
    return Run(cache, round(seconds, 2), text, done.stderr[-600:])


def compile_alone(model: str, device: str, name: str) -> float:
    """Seconds to compile graph ``name`` of ``model`` by itself (in this process's cache)."""
    from ..checkpoints import load_weights
    from ..engine import runtime
    from ..engine.model import MaxWhisper

    max_model = MaxWhisper(load_weights(model), device=device)
    graph = max_model.graphs()[name]  # built on its own, not into the model's module
    start = time.perf_counter()
    runtime.compile_graph(graph, device, max_model.registry)
    return time.perf_counter() - start


def graph_alone_seconds(model: str, device: str) -> dict[str, float]:
    """:func:`compile_alone` for every graph, each in its own process and empty cache."""
    from ..engine.model import ALL_GRAPHS

    seconds = {}
    for name in ALL_GRAPHS:
        with tempfile.TemporaryDirectory(prefix="maxwhisper-graph-") as cache_dir:
            env = {**os.environ, "MODULAR_CACHE_DIR": cache_dir}
            command = [sys.executable, "-m", "maxwhisper_lib.lab.cold_start", "--graph", name,
                       "--model", model, "--device", device]  # fmt: skip
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            seconds[name] = round(float(done.stdout.split()[-1]), 1)
            print(f"{name} alone: {seconds[name]:.1f} s", flush=True)
    return seconds


def measure(
    model: str = "tiny.en",
    device: str = "cpu",
    audio: Path = DEFAULT_AUDIO,
    warm_runs: int = 2,
    per_graph: bool = False,
    compile_run: bool = False,
) -> ColdStartResult:
    """One cold run on a new cache folder, then ``warm_runs`` on the same folder; with
    ``compile_run`` then a cold run on another new folder, compiling everything (minutes); with
    ``per_graph`` first each graph compiled alone (minutes each)."""
    result = ColdStartResult(model, device, str(audio), machine=machine.machine_info())
    if per_graph:
        result.graph_alone_seconds = graph_alone_seconds(model, device)
    with tempfile.TemporaryDirectory(prefix="maxwhisper-cold-") as scratch:
        cache_dir, output_dir = Path(scratch) / "cache", Path(scratch) / "out"
        for cache in ["cold"] + ["warm"] * warm_runs + [COMPILED] * compile_run:
            if cache == COMPILED:
                cache_dir = Path(scratch) / "cache-compiled"
            result.runs.append(run_once(model, device, audio, cache_dir, output_dir, cache))
            print(f"{cache}: {result.runs[-1].seconds:.1f} s", flush=True)
    return result


def write_report(result: ColdStartResult, output: Path) -> Path:
    output.mkdir(parents=True, exist_ok=True)
    payload = {**asdict(result), "verdicts": result.verdicts()}
    path = output / "cold_start.json"
    with atomic_text_file(path) as out:
        json.dump(payload, out, indent=1)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--audio", type=Path, default=DEFAULT_AUDIO)
    parser.add_argument("--warm_runs", type=int, default=2)
    parser.add_argument("--per_graph", action="store_true", help="also each graph alone, cold")
    parser.add_argument(
        "--compile_run", action="store_true", help="also a cold run that compiles everything"
    )
    parser.add_argument("--graph", help=argparse.SUPPRESS)  # one graph alone, in a subprocess
    parser.add_argument("--output", type=Path, default=None, help="folder for cold_start.json")
    args = parser.parse_args(argv)
    if args.graph:
        print(compile_alone(args.model, args.device, args.graph))
        return 0
    result = measure(
        args.model, args.device, args.audio, args.warm_runs, args.per_graph, args.compile_run
    )
    for cache, verdict in result.verdicts().items():
        print(f"{cache}: {verdict}")
    if args.output is not None:
        print(write_report(result, args.output))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
