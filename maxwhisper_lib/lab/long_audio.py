"""Long-audio benchmark: time and peak memory against file length, sequential and batched.

Long files are built from the dev clips (:func:`~maxwhisper_lib.lab.benchmark.build_long_audio`)
and written to a temporary 16-bit WAV, so that every engine decodes the file itself. Each
(engine, length) runs in a fresh process (``python -m maxwhisper_lib.lab.long_audio probe``): it
loads the model, transcribes a short clip to warm up, resets the kernel's RSS high-water mark,
then transcribes the file from its path; it reports wall seconds, the peak RSS of the whole
process (model included) and the text. Engines:

* ``max``: :func:`~maxwhisper_lib.decoding.transcribe.transcribe`, window after window;
* ``max-batched``: the same with ``batch_size`` and the VAD (one file batched);
* ``faster-whisper-int8``: ``WhisperModel.transcribe`` (no VAD), the sequential peer;
* ``faster-whisper-int8-batched``: ``BatchedInferencePipeline`` (its VAD), the batched peer.

All greedy at temperature 0 with timestamps, no fallback, the same weights (the benchmark's
engines and ``DECODING``). Each transcript's WER is taken against the file's reference
(:func:`~maxwhisper_lib.lab.benchmark.long_reference`): batched against sequential on the same
audio. The long dev clips are also transcribed each alone, sequential and batched (the worst
clip's cost is reported beside the file's).
``python -m maxwhisper_lib.lab.long_audio --output reports/NAME`` writes ``long_audio.json`` and
the plots there.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..audio.constants import SAMPLE_RATE
from ..decoding.text import word_error_rate
from ..engine import machine
from .benchmark import (
    DECODING,
    BenchmarkError,
    build_long_audio,
    load_clips,
    long_reference,
    make_engine,
)

LONG_ENGINES = ("max", "max-batched", "faster-whisper-int8", "faster-whisper-int8-batched")
DEFAULT_MINUTES = (1.0, 5.0, 10.0)
DEFAULT_MEMORY_MINUTES = (1.0, 5.0, 10.0, 60.0)
TARGET_MINUTES = 10.0
BATCHED_TARGETS = {"max": 3.0, "faster-whisper-int8-batched": 2.0}
"""max-batched's speed-up the issue asks for on the 10-minute file, per engine."""
MEMORY_TARGET = 1.2
"""The 60-minute file's peak RSS may be this many times the 5-minute file's at most."""
WER_POINTS = 1.0
"""Batched WER may exceed sequential WER by this many points on the same file (the issue's
target, on the 10-minute file; the long dev clips, each alone, are held to it too)."""


@dataclass
class Probe:
    """One engine on one file in its own process."""

    engine: str
    minutes: float
    seconds: float
    peak_rss_mb: float
    baseline_rss_mb: float
    text: str = ""
    wer: float | None = None
    """WER (%) against the file's reference (None where it was not taken)."""


@dataclass
class LongAudioResult:
    config: dict
    machine: dict
    probes: list[Probe] = field(default_factory=list)
    wer: list[dict] = field(default_factory=list)

    def seconds(self, engine: str, minutes: float) -> float | None:
        return next(
            (p.seconds for p in self.probes if p.engine == engine and p.minutes == minutes), None
        )

    def peak(self, engine: str, minutes: float) -> float | None:
        return next(
            (p.peak_rss_mb for p in self.probes if p.engine == engine and p.minutes == minutes),
            None,
        )

    def speedups(self, minutes: float = TARGET_MINUTES) -> dict[str, float]:
        """max-batched against each engine on the ``minutes`` file (same run)."""
        batched = self.seconds("max-batched", minutes)
        out = {}
        for engine in LONG_ENGINES:
            other = self.seconds(engine, minutes)
            if batched and other and engine != "max-batched":
                out[engine] = round(other / batched, 2)
        return out

    def file_wer_cost(self, minutes: float = TARGET_MINUTES) -> dict[str, float]:
        """Batched WER minus sequential WER on the ``minutes`` file, in points: MAX's
        (``max-batched`` against ``max``) and faster-whisper's, where both were taken."""
        wer = {p.engine: p.wer for p in self.probes if p.minutes == minutes and p.wer is not None}
        pairs = {"max": "max-batched", "faster-whisper-int8": "faster-whisper-int8-batched"}
        return {
            batched: round(wer[batched] - wer[sequential], 2)
            for sequential, batched in pairs.items()
            if sequential in wer and batched in wer
        }

    def memory_ratios(self) -> dict[str, float]:
        """Peak RSS of the longest memory file over the 5-minute file's, per engine."""
        longest = max(self.config["memory_minutes"], default=None)
        out = {}
        for engine in LONG_ENGINES:
            five, long = self.peak(engine, 5.0), self.peak(engine, longest)
            if five and long and longest != 5.0:
                out[engine] = round(long / five, 2)
        return out

    def verdicts(self) -> dict[str, str]:
        out = {}
        for engine, ratio in self.speedups().items():
            if engine in BATCHED_TARGETS:
                target = BATCHED_TARGETS[engine]
                met = "met" if ratio >= target else "missed"
                out[f"max-batched vs {engine}"] = f"{ratio}x (target {target}x: {met})"
        for engine, ratio in self.memory_ratios().items():
            met = "met" if ratio <= MEMORY_TARGET else "missed"
            out[f"{engine} memory"] = f"{ratio}x (target {MEMORY_TARGET}x: {met})"
        for engine, cost in self.file_wer_cost().items():
            name = f"{TARGET_MINUTES:g}-min file: {engine} WER cost"
            if engine == "max-batched":
                met = "met" if cost <= WER_POINTS else "missed"
                out[name] = f"{cost:+.2f} points (target {WER_POINTS}: {met})"
            else:
                out[name] = f"{cost:+.2f} points (same check)"
        worst = max((row["batched_minus_sequential"] for row in self.wer), default=None)
        if worst is not None:
            met = "met" if worst <= WER_POINTS else "missed"
            out["batched WER cost"] = f"{worst:+.2f} points (target {WER_POINTS}: {met})"
        peer = [row for row in self.wer if "peer_batched_minus_sequential" in row]
        if peer:
            worst = max(row["peer_batched_minus_sequential"] for row in peer)
            out[f"{peer[0]['peer']} batched WER cost"] = f"{worst:+.2f} points (same check)"
        return out

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "speedups": self.speedups(),
            "file_wer_cost": self.file_wer_cost(),
            "memory_ratios": self.memory_ratios(),
            "verdicts": self.verdicts(),
        }


def load_long_result(path: str | Path) -> LongAudioResult:
    data = json.loads(Path(path).read_text())
    return LongAudioResult(
        config=data["config"],
        machine=data["machine"],
        probes=[Probe(**p) for p in data["probes"]],
        wer=data["wer"],
    )


# --------------------------------------------------------------------------- one probe


def _engine(name: str, model: str, dtype: str, batch_size: int):
    """A callable transcribing a path to text, for ``name``: the benchmark's engines (loaded),
    and for ``max-batched`` its MAX model batched with the VAD."""
    if name not in LONG_ENGINES:
        raise BenchmarkError(f"unknown long-audio engine {name!r}; choose from {LONG_ENGINES}")
    engine = make_engine(name.removesuffix("-batched"), model, "cpu", dtype=dtype)
    engine.load()
    if name == "max-batched":
        from ..decoding.transcribe import transcribe

        return lambda audio: transcribe(
            engine.model, audio, batch_size=batch_size, vad_filter=True, **DECODING
        )["text"]
    if name.endswith("-batched"):
        return lambda audio: engine.transcribe_batch([audio], batch_size)[0].text
    return lambda audio: engine.transcribe(audio).text


def probe(engine: str, path: Path, model: str, dtype: str, batch_size: int) -> dict:
    """Load, warm up on a short clip, reset the RSS high-water mark, transcribe ``path``."""
    from .manifest import clip

    run = _engine(engine, model, dtype, batch_size)
    run(str(clip("jfk").path))  # paths as str: every engine takes those
    machine.reset_peak_rss()
    baseline = machine.rss_mb()
    start = time.perf_counter()
    text = run(str(path))
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "peak_rss_mb": machine.peak_rss_mb(),
        "baseline_rss_mb": baseline,
        "text": text,
    }


def run_probe(engine: str, path: Path, minutes: float, model: str, dtype: str, batch_size: int):
    """:func:`probe` in a fresh Python process."""
    command = [
        sys.executable,
        "-m",
        "maxwhisper_lib.lab.long_audio",
        "probe",
        engine,
        str(path),
        "--model",
        model,
        "--dtype",
        dtype,
        "--batch_size",
        str(batch_size),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchmarkError(f"{engine} on {minutes} min failed:\n{done.stderr[-2000:]}")
    return Probe(engine, minutes, **json.loads(done.stdout.strip().splitlines()[-1]))


# --------------------------------------------------------------------------- the benchmark


def write_wav(samples: np.ndarray, path: Path) -> Path:
    """16 kHz mono 16-bit PCM (what the dev clips decode to, so nothing is lost)."""
    import wave

    pcm = np.clip(np.round(samples * 32768.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.tobytes())
    return path


def batched_wer(model: str, dtype: str, batch_size: int, log=print) -> list[dict]:
    """Sequential and batched (VAD) MAX WER on each dev clip longer than 30 s, in-process; and
    the same for faster-whisper at the same precision (``WhisperModel`` against its
    ``BatchedInferencePipeline``): what batching costs a peer on the same clips."""
    from ..checkpoints import load_weights
    from ..decoding.transcribe import transcribe
    from ..engine.model import MaxWhisper

    backend = MaxWhisper(load_weights(model), "cpu", dtype)
    peer_name = "faster-whisper-" + ("fp32" if dtype == "float32" else dtype)
    peer = make_engine(peer_name, model, "cpu")
    peer.load()
    rows = []
    for clip in load_clips():
        if not clip.reference or clip.seconds <= 30:
            continue
        sequential = transcribe(backend, clip.samples, **DECODING)["text"]
        batched = transcribe(
            backend, clip.samples, batch_size=batch_size, vad_filter=True, **DECODING
        )["text"]
        row = {
            "clip": clip.id,
            "seconds": round(clip.seconds, 2),
            "sequential_wer": round(100 * word_error_rate([clip.reference], [sequential]), 2),
            "batched_wer": round(100 * word_error_rate([clip.reference], [batched]), 2),
            "sequential": sequential,
            "batched": batched,
        }
        row["batched_minus_sequential"] = round(row["batched_wer"] - row["sequential_wer"], 2)
        peer_texts = (
            peer.transcribe(clip.samples).text,
            peer.transcribe_batch([clip.samples], batch_size)[0].text,
        )
        row["peer"] = peer_name
        row["peer_sequential_wer"], row["peer_batched_wer"] = (
            round(100 * word_error_rate([clip.reference], [text]), 2) for text in peer_texts
        )
        row["peer_batched_minus_sequential"] = round(
            row["peer_batched_wer"] - row["peer_sequential_wer"], 2
        )
        log(
            f"WER {clip.id}: sequential {row['sequential_wer']} batched {row['batched_wer']}; "
            f"{peer_name} {row['peer_sequential_wer']} / {row['peer_batched_wer']}"
        )
        rows.append(row)
    return rows


def run_long_benchmark(
    model: str = "tiny.en",
    dtype: str = "float32",
    engines=LONG_ENGINES,
    minutes=DEFAULT_MINUTES,
    memory_minutes=DEFAULT_MEMORY_MINUTES,
    batch_size: int = 8,
    log=print,
) -> LongAudioResult:
    """Every engine on every length of ``minutes`` (time and memory), the MAX engines also on
    ``memory_minutes`` (memory), then the batched WER cost on the long dev clips."""
    unknown = [e for e in engines if e not in LONG_ENGINES]
    if unknown:
        raise BenchmarkError(f"unknown long-audio engine(s) {unknown}; choose from {LONG_ENGINES}")
    english = [c for c in load_clips() if c.reference]
    result = LongAudioResult(
        config={
            "model": model,
            "dtype": dtype,
            "engines": list(engines),
            "minutes": list(minutes),
            "memory_minutes": list(memory_minutes),
            "batch_size": batch_size,
            "decoding": {**DECODING, "beam_size": 1, "fallback": False},
        },
        machine=machine.machine_info(),
    )
    plan = [(m, e) for m in minutes for e in engines]
    plan += [(m, e) for m in memory_minutes if m not in minutes for e in engines if "max" in e]
    with tempfile.TemporaryDirectory() as folder:
        for length in sorted({m for m, _ in plan}):
            path = write_wav(
                build_long_audio([c.samples for c in english], length * 60),
                Path(folder) / f"{length:g}min.wav",
            )
            reference = long_reference(english, length * 60)
            for m, engine in plan:
                if m == length:
                    row = run_probe(engine, path, length, model, dtype, batch_size)
                    row.wer = round(100 * word_error_rate([reference], [row.text]), 2)
                    log(
                        f"{length:>5g} min {engine:<28} {row.seconds:7.1f} s  "
                        f"peak {row.peak_rss_mb:7.0f} MiB  WER {row.wer:.2f}%"
                    )
                    result.probes.append(row)
            path.unlink()
    result.wer = batched_wer(model, dtype, batch_size, log)
    return result


def plot_long_audio(result: LongAudioResult):
    """Processing time and peak RSS against file length, one line per engine (every probe is
    timed: the memory-only lengths, MAX's engines, show on both panels)."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for engine in result.config["engines"]:
        rows = sorted((p for p in result.probes if p.engine == engine), key=lambda p: p.minutes)
        style = {"marker": "o", "lw": 2.5 if engine.startswith("max") else 1.5, "label": engine}
        left.plot([p.minutes for p in rows], [p.seconds for p in rows], **style)
        right.plot([p.minutes for p in rows], [p.peak_rss_mb / 1024 for p in rows], **style)
    left.set_xlabel("audio length (min)")
    left.set_ylabel("processing time (s)")
    left.set_title("time vs length")
    right.set_xlabel("audio length (min)")
    right.set_ylabel("peak RSS of the process (GiB)")
    right.set_title("memory vs length")
    right.set_ylim(bottom=0)
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m maxwhisper_lib.lab.long_audio", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command")
    one = sub.add_parser("probe", help="one engine on one file (used by the benchmark)")
    one.add_argument("engine", choices=LONG_ENGINES)
    one.add_argument("path", type=Path)
    for p in (parser, one):
        p.add_argument("--model", default="tiny.en")
        p.add_argument("--dtype", default="float32", choices=["float32", "int8"])
        p.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--engines", default=",".join(LONG_ENGINES))
    parser.add_argument("--minutes", default=",".join(f"{m:g}" for m in DEFAULT_MINUTES))
    parser.add_argument(
        "--memory_minutes", default=",".join(f"{m:g}" for m in DEFAULT_MEMORY_MINUTES)
    )
    parser.add_argument("--output", type=Path, required=False)
    args = parser.parse_args(argv)
    if args.command == "probe":
        print(json.dumps(probe(args.engine, args.path, args.model, args.dtype, args.batch_size)))
        return 0
    if args.output is None:
        parser.error("--output is required")
    result = run_long_benchmark(
        args.model,
        args.dtype,
        [e for e in args.engines.split(",") if e],
        [float(m) for m in args.minutes.split(",") if m],
        [float(m) for m in args.memory_minutes.split(",") if m],
        args.batch_size,
    )
    args.output.mkdir(parents=True, exist_ok=True)
    from ..atomic import atomic_text_file

    with atomic_text_file(args.output / "long_audio.json") as out:
        json.dump(result.to_dict(), out, indent=2)
    plot_long_audio(result).savefig(args.output / "long_audio.png", dpi=120)
    for name, verdict in result.verdicts().items():
        print(f"{name}: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
