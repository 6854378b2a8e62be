"""The measurement loops: first calls, interleaved timed passes, time against length, batches,
decoder steps against their floor; :func:`run_benchmark` runs them all.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ...decoding.text import word_error_rate
from ...engine import machine
from ...engine.runtime import resolve_device_name
from .clips import ClipAudio, batch_files, build_long_audio, load_clips
from .engines import (
    DECODING,
    ENGINES,
    BenchmarkError,
    Engine,
    EngineUnavailable,
    MaxEngine,
    Transcript,
    check_engine_names,
    make_engine,
)
from .results import (
    NOTES,
    BatchResult,
    BenchmarkResult,
    ClipResult,
    EngineResult,
    ScalingResult,
    median_index,
)

DEFAULT_LENGTHS = (10, 30, 60, 120, 300, 600)


DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16)


Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def alternating_medians(calls: Mapping[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds of each call over ``rounds`` rounds, the calls taking turns (so that a
    noisy machine's slow moments fall on every engine alike)."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(values)) for name, values in times.items()}


def first_call(engine: Engine, audio: np.ndarray) -> tuple[EngineResult, Transcript]:
    """Load ``engine`` and transcribe once (the excluded warm-up), measuring time and memory."""
    peak_reset = machine.reset_peak_rss()
    rss_before = machine.rss_mb()
    peak_before = machine.peak_rss_mb()
    start = time.perf_counter()
    compile_seconds = engine.load()
    loaded = time.perf_counter() - start
    transcript = engine.transcribe(audio)
    total = time.perf_counter() - start
    result = EngineResult(
        engine=engine.name,
        available=True,
        settings=engine.settings(),
        load_seconds=loaded,
        first_call_seconds=total,
        compile_seconds={k: round(v, 3) for k, v in compile_seconds.items()},
        rss_growth_mb=round(machine.rss_mb() - rss_before, 1),
        peak_growth_mb=round(machine.peak_rss_mb() - peak_before, 1) if peak_reset else None,
    )
    return result, transcript


def timed_passes(
    engines: Sequence[Engine], clips: Sequence[ClipAudio], repeats: int, log: Log = _quiet
) -> dict[tuple[str, str], list[Transcript]]:
    """``repeats`` interleaved passes: for each repeat, each clip, each engine in turn."""
    runs: dict[tuple[str, str], list[Transcript]] = {}
    for repeat in range(repeats):
        for clip in clips:
            for engine in engines:
                transcript = engine.transcribe(clip.samples)
                runs.setdefault((engine.name, clip.id), []).append(transcript)
                log(
                    f"repeat {repeat + 1}/{repeats} {clip.id:<30} {engine.name:<20} "
                    f"{transcript.seconds:7.2f} s"
                )
    return runs


def clip_result(
    engine: str, clip: ClipAudio, runs: list[Transcript], openai: Transcript | None
) -> ClipResult:
    """The median run of ``engine`` on ``clip`` (its split too), scored against the reference."""
    seconds = [t.seconds for t in runs]
    median = runs[median_index(seconds)]
    value = statistics.median(seconds)
    parts = {f"{k}_seconds": v for k, v in median.parts.items()}
    return ClipResult(
        engine=engine,
        clip=clip.id,
        audio_seconds=clip.seconds,
        seconds=value,
        rtf=clip.seconds / value,
        tokens=len(median.tokens),
        tokens_per_second=len(median.tokens) / value,
        wer=word_error_rate([clip.reference], [median.text]) if clip.reference else None,
        same_text_as_openai=None if openai is None else median.text.strip() == openai.text.strip(),
        same_tokens_as_openai=None if openai is None else median.tokens == openai.tokens,
        text=median.text.strip(),
        seconds_all=[round(s, 4) for s in seconds],
        **parts,
    )


def engine_totals(
    result: EngineResult, rows: Sequence[ClipResult], clips: Sequence[ClipAudio]
) -> EngineResult:
    """Fill ``result``'s totals: summed audio / summed median seconds, corpus WER, identity."""
    result.clips = len(rows)
    result.audio_seconds = sum(r.audio_seconds for r in rows)
    result.seconds = sum(r.seconds for r in rows)
    result.rtf = result.audio_seconds / result.seconds
    result.tokens = sum(r.tokens for r in rows)
    result.tokens_per_second = result.tokens / result.seconds
    texts = {r.clip: r.text for r in rows}
    scored = [c for c in clips if c.reference]
    if scored:
        result.wer = word_error_rate([c.reference for c in scored], [texts[c.id] for c in scored])
    same = [r.same_tokens_as_openai for r in rows if r.same_tokens_as_openai is not None]
    same_text = [r.same_text_as_openai for r in rows if r.same_text_as_openai is not None]
    if same:
        result.identical_to_openai = (
            f"tokens {sum(same)}/{len(same)}, text {sum(same_text)}/{len(same_text)}"
        )
    return result


def scaling_runs(
    engines: Sequence[Engine],
    clips: Sequence[ClipAudio],
    lengths: Sequence[float],
    log: Log = _quiet,
) -> list[ScalingResult]:
    """Each engine once on audio of each length built from the clips (interleaved per length)."""
    english = [c.samples for c in clips if c.reference] or [c.samples for c in clips]
    rows = []
    for length in lengths:
        audio = build_long_audio(english, length)
        for engine in engines:
            transcript = engine.transcribe(audio)
            seconds = transcript.seconds
            rows.append(
                ScalingResult(
                    engine.name, length, seconds, length / seconds, len(transcript.tokens)
                )
            )
            log(f"length {length:>6g} s  {engine.name:<20} {seconds:7.2f} s")
    return rows


def batch_runs(
    engines: Sequence[Engine],
    files: Sequence[ClipAudio],
    batch_sizes: Sequence[int],
    log: Log = _quiet,
) -> list[BatchResult]:
    """Throughput of each engine's batched transcription over ``files`` at each batch size (a
    warm-up at the largest size on the first two files first, excluded)."""
    audios = [f.samples for f in files]
    audio_seconds = sum(f.seconds for f in files)
    scored = [i for i, f in enumerate(files) if f.reference]
    for engine in engines:
        engine.transcribe_batch(audios[:2], max(batch_sizes))
    rows = []
    for size in batch_sizes:
        for engine in engines:
            transcripts = engine.transcribe_batch(audios, size)
            seconds = transcripts[0].seconds
            wer = (
                word_error_rate(
                    [files[i].reference for i in scored], [transcripts[i].text for i in scored]
                )
                if scored
                else None
            )
            encoder = transcripts[0].parts.get("encoder")
            rows.append(
                BatchResult(
                    engine.name,
                    size,
                    len(files),
                    audio_seconds,
                    seconds,
                    audio_seconds / seconds,
                    wer,
                    None if encoder is None else encoder / seconds,
                )
            )
            log(f"batch {size:>2} {engine.name:<20} {seconds:7.2f} s")
    return rows


def _batch_engines(engines: Sequence[Engine], device: str) -> list[Engine]:
    """MAX (float and int8 modes), and faster-whisper's batched pipeline as its peer (int8 on
    CPU, fp16 on GPU)."""
    peer = "faster-whisper-fp16" if device == "gpu" else "faster-whisper-int8"
    return [e for e in engines if e.name in ("max", "max-int8", peer)]


def run_benchmark(
    model: str = "tiny.en",
    device: str = "auto",
    engines: Sequence[str] = ENGINES,
    repeats: int = 3,
    manifest: str | Path | None = None,
    clips: Sequence[str] | None = None,
    lengths: Sequence[float] = (),
    batch_sizes: Sequence[int] = (),
    batch_count: int = 8,
    dtype: str = "float32",
    max_model=None,
    log: Log | None = print,
    roofline_batches: Sequence[int] = (),
) -> BenchmarkResult:
    """Benchmark ``engines`` on the manifest's clips (all, or ``clips``), then optionally the
    time-vs-length scaling (``lengths`` in seconds), batch throughput (``batch_sizes``) and, on
    the CPU, the decoder step against its memory floor per batch size (``roofline_batches``).

    ``max_model``: an already built :class:`~maxwhisper_lib.engine.model.MaxWhisper` to reuse.
    Unavailable engines are kept in the result with the reason. ``log`` gets progress lines.
    """
    if repeats < 1:
        raise BenchmarkError(f"repeats must be at least 1, got {repeats}")
    names = check_engine_names(engines)
    log = log or _quiet
    device = resolve_device_name(device)
    started = machine.machine_info()
    audio = load_clips(manifest, clips)
    config = {
        "model": str(model),
        "device": device,
        "dtype": dtype,
        "engines": names,
        "repeats": repeats,
        "clips": [c.id for c in audio],
        "lengths": list(lengths),
        "batch_sizes": list(batch_sizes),
        "batch_count": batch_count,
        "roofline_batches": list(roofline_batches),
        "decoding": {**DECODING, "beam_size": 1, "vad": False, "fallback": False},
    }
    ready, results, skipped = [], {}, []
    for name in names:
        try:
            engine = make_engine(name, model, device, dtype=dtype, max_model=max_model)
        except EngineUnavailable as error:
            skipped.append(EngineResult(name, available=False, reason=str(error)))
            log(f"skipping {name}: {error}")
            continue
        results[name], _ = first_call(engine, audio[0].samples)
        log(f"{name}: first call {results[name].first_call_seconds:.1f} s")
        ready.append(engine)
    runs = timed_passes(ready, audio, repeats, log)
    openai_runs = {c.id: runs.get(("openai-whisper", c.id)) for c in audio}
    rows = []
    for engine in ready:
        engine_rows = []
        for clip in audio:
            reference = openai_runs[clip.id]
            openai = reference[median_index([t.seconds for t in reference])] if reference else None
            engine_rows.append(clip_result(engine.name, clip, runs[engine.name, clip.id], openai))
        engine_totals(results[engine.name], engine_rows, audio)
        rows.extend(engine_rows)
    scaling = scaling_runs(ready, audio, lengths, log) if lengths else []
    batch = []
    if batch_sizes:
        files = batch_files([c for c in audio if c.reference] or audio, batch_count)
        batch = batch_runs(_batch_engines(ready, device), files, batch_sizes, log)
    roofline = (
        decoder_roofline(ready, model, roofline_batches, log)
        if roofline_batches and device == "cpu"
        else {}
    )
    return BenchmarkResult(
        config=config,
        machine={**started, "load_average_after": machine.machine_info()["load_average"]},
        versions=machine.package_versions(),
        engines=[results[n.name] for n in ready] + skipped,
        clips=rows,
        scaling=scaling,
        batch=batch,
        notes=NOTES,
        roofline=roofline,
    )


def decoder_roofline(
    engines: Sequence[Engine], model: str, batch_sizes: Sequence[int], log: Log = _quiet
) -> dict:
    """The loaded MAX engines' decoders and openai-whisper's PyTorch decoder (if benchmarked)
    stepped against the memory floor (:mod:`maxwhisper_lib.lab.roofline`)."""
    from ...checkpoints import load_weights
    from .. import roofline

    weights = load_weights(model)
    backends = {e.name: e.model for e in engines if isinstance(e, MaxEngine)}
    if any(e.name == "openai-whisper" for e in engines):
        backends.update(roofline.roofline_backends(weights, ["openai-whisper"]))
    mel, prompt = roofline.step_inputs(weights)
    return roofline.measure_roofline(backends, mel, prompt, batch_sizes, log=log)
