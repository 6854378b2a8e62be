"""Live transcription measured: each confirmed word's delay, and the confirmed text's WER against
the offline transcript of the same audio.

A stream is replayed at real speed (``clock="real"``: the audio handed on as it would be heard,
:func:`~maxwhisper_lib.audio.live_input.played`, through :func:`~maxwhisper_lib.decoding.live.
run_live`), or on a virtual clock (``clock="virtual"``: no waiting; the clock moves by each
step's measured compute time and to each piece's arrival, which is what the real loop does, so it
gives the same chunks and delays without spending the audio's duration). A confirmed word's
delay is the time from the moment it ends in the audio to the moment it is confirmed; where it
ends is taken from the offline transcript's word timestamps (the words matched by alignment),
else from its own.

``python -m maxwhisper_lib.lab.live_latency --output reports/FOLDER [--clock real]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_text_file
from ..audio.constants import SAMPLE_RATE
from ..audio.live_input import PIECE_SECONDS, played
from ..decoding.live import (
    LiveOptions,
    LiveTranscriber,
    LiveUpdate,
    LiveWord,
    run_live,
    words_of,
)
from ..decoding.text import word_error_rate


@dataclass
class StreamRun:
    """One replayed stream: every confirmed word with the moment it was confirmed (seconds since
    the stream began), the confirmed text, and the decodes it took."""

    name: str
    seconds: float
    words: list[dict] = field(default_factory=list)
    text: str = ""
    offline: str = ""
    reference: str = ""
    decodes: int = 0
    compute_seconds: float = 0.0
    wall_seconds: float = 0.0

    def confirm(self, confirmed: list[tuple[float, LiveWord]], offline: dict) -> None:
        """Take the confirmed words (each with the moment it was confirmed) as this run's
        text and delays, each word's end in the audio from ``offline`` (:func:`word_ends`;
        a word with no end known is left out of the delays)."""
        ends = word_ends(words_of(offline, 0.0)[0], [w for _, w in confirmed])
        for (at, word), end in zip(confirmed, ends, strict=True):
            if end == end:  # not NaN
                self.words.append(
                    {
                        "word": word.text,
                        "start": word.start,
                        "end": end,
                        "confirmed_at": at,
                        "delay": at - end,
                    }
                )
        self.text = "".join(w.text for _, w in confirmed)

    @property
    def delays(self) -> list[float]:
        return [w["delay"] for w in self.words]

    @property
    def wer(self) -> float:
        return word_error_rate([self.offline], [self.text])


def replay_virtual(
    transcriber: LiveTranscriber, samples: np.ndarray, piece_seconds: float = PIECE_SECONDS
) -> list[tuple[float, LiveUpdate]]:
    """The real loop on a virtual clock: pieces arrive at their time, each step takes all that
    has arrived and moves the clock by its compute time; ``(clock, update)`` per step."""
    step = max(1, int(piece_seconds * SAMPLE_RATE))
    total, fed, clock = samples.size, 0, 0.0
    updates = []
    while fed < total:
        clock = max(clock, min(fed + step, total) / SAMPLE_RATE)  # wait for the next piece
        heard = int(clock * SAMPLE_RATE + 1e-6)
        arrived = total if heard >= total else max(fed + step, heard // step * step)
        transcriber.transcript.push(samples[fed:arrived])
        fed = arrived
        begun = time.perf_counter()
        update = transcriber.finish() if fed >= total else transcriber.step()
        clock += time.perf_counter() - begun
        updates.append((clock, update))
    return updates


def replay_real(
    transcriber: LiveTranscriber, samples: np.ndarray
) -> list[tuple[float, LiveUpdate]]:
    """``samples`` played at real speed through the live loop; ``(seconds since the start,
    update)`` per step."""
    updates: list[tuple[float, LiveUpdate]] = []
    start = time.monotonic()

    def on_update(update: LiveUpdate) -> None:
        updates.append((time.monotonic() - start, update))

    run_live(transcriber, played(samples), on_update)
    return updates


def word_ends(offline_words: Sequence[LiveWord], confirmed: Sequence[LiveWord]) -> list[float]:
    """Where each confirmed word ends in the audio: the offline word it aligns with, else its
    own end."""
    a = [w.key for w in offline_words]
    b = [w.key for w in confirmed]
    ends = [w.end for w in confirmed]
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            ends[block.b + k] = offline_words[block.a + k].end
    return ends


def measure_stream(
    make: Callable[[], LiveTranscriber],
    name: str,
    samples: np.ndarray,
    offline: dict,
    clock: str = "virtual",
) -> StreamRun:
    """Replay ``samples`` through a new transcriber; delays against ``offline`` (a
    ``transcribe`` result with word timestamps)."""
    transcriber = make()
    began = time.perf_counter()
    if clock == "real":
        updates = replay_real(transcriber, samples)
    elif clock == "virtual":
        updates = replay_virtual(transcriber, samples)
    else:
        raise ValueError(f"clock must be 'real' or 'virtual', got {clock!r}")
    wall = time.perf_counter() - began
    run = StreamRun(name, samples.size / SAMPLE_RATE, offline=offline["text"], wall_seconds=wall)
    confirmed: list[tuple[float, LiveWord]] = [
        (at, word) for at, update in updates for c in update.confirmed for word in c.words
    ]
    run.confirm(confirmed, offline)
    run.decodes = transcriber.decodes
    return run


def stream_to_server(
    url: str, samples: np.ndarray, speed: float = 1.0, piece_seconds: float = PIECE_SECONDS
) -> tuple[list[tuple[float, dict]], float]:
    """``samples`` sent to a server's ``/v1/audio/live`` (``url``: ``ws://host:port/v1/audio/
    live?...``) as PCM, ``piece_seconds`` at a time at ``speed`` times real time (0: at once),
    then ``end``; every message received with its time (seconds since the first piece was
    sent, times ``speed``: on the audio's clock), and that start's offset."""
    import threading

    from websockets.sync.client import connect

    messages: list[tuple[float, dict]] = []
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with connect(url, max_size=None) as socket:
        start = time.monotonic()

        def receive() -> None:
            for text in socket:
                messages.append(((time.monotonic() - start) * (speed or 1.0), json.loads(text)))

        reader = threading.Thread(target=receive, daemon=True)
        reader.start()
        step = int(piece_seconds * SAMPLE_RATE)
        pieces = (
            played(pcm, speed, piece_seconds)
            if speed > 0
            else (pcm[at : at + step] for at in range(0, pcm.size, step))
        )
        for piece in pieces:
            socket.send(piece.tobytes())
        socket.send(json.dumps({"type": "end"}))
        reader.join(600)
    return messages, start


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def summary(runs: Sequence[StreamRun]) -> dict:
    delays = [d for r in runs for d in r.delays]
    return {
        "streams": len(runs),
        "audio_seconds": sum(r.seconds for r in runs),
        "words": len(delays),
        "delay_p50": percentile(delays, 50),
        "delay_p95": percentile(delays, 95),
        "delay_max": max(delays, default=float("nan")),
        "wer_vs_offline": word_error_rate([r.offline for r in runs], [r.text for r in runs]),
        "wer_live": word_error_rate([r.reference for r in runs], [r.text for r in runs]),
        "wer_offline": word_error_rate([r.reference for r in runs], [r.offline for r in runs]),
        "decodes": sum(r.decodes for r in runs),
    }


def run_clips(
    model: str = "tiny.en",
    dtype: str = "float32",
    clock: str = "virtual",
    clip_ids: Sequence[str] | None = None,
    long_seconds: float = 0.0,
    options: LiveOptions | None = None,
) -> dict:
    """The dev clips (English, with a reference; or ``clip_ids``) and optionally a long input
    built from them, each as one stream; their runs and summary."""
    from .. import load_model
    from ..api import split_dtype
    from .benchmark.clips import build_long_audio, load_clips

    precision, quantization = split_dtype(dtype)
    whisper = load_model(model, "cpu", precision, quantization)
    clips = [c for c in load_clips(clip_ids=clip_ids) if clip_ids or c.reference]
    streams = [(c.id, c.samples, c.reference) for c in clips]
    if long_seconds:
        long = build_long_audio([c.samples for c in clips], long_seconds)
        streams.append((f"long-{long_seconds:g}s", long, ""))
    runs = []
    for name, samples, reference in streams:
        offline = whisper.transcribe(samples, word_timestamps=True, progress=False)
        run = measure_stream(
            lambda: LiveTranscriber(whisper.backend, options), name, samples, offline, clock
        )
        run.reference = reference
        runs.append(run)
        print(
            f"{name}: {run.seconds:.1f} s, {len(run.words)} words, delay p50 "
            f"{percentile(run.delays, 50):.2f} s p95 {percentile(run.delays, 95):.2f} s, "
            f"WER vs offline {run.wer:.3f}, {run.decodes} decodes",
            flush=True,
        )
    return {
        "model": model,
        "dtype": dtype,
        "clock": clock,
        "options": asdict(options or LiveOptions()),
        "summary": summary(runs),
        "runs": [{**asdict(r), "wer": r.wer} for r in runs],
    }


def run_server_streams(
    model: str = "tiny.en",
    dtype: str = "float32",
    streams: int = 4,
    seconds: float = 60.0,
    chunk_seconds: float = LiveOptions.chunk_seconds,
    max_tentative_seconds: float = LiveOptions.max_tentative_seconds,
    buffer_seconds: float = LiveOptions.buffer_seconds,
) -> dict:
    """``streams`` clients at once on one ``maxwhisper-server``'s ``/v1/audio/live``, each
    sending ``seconds`` of speech built from the dev clips (each starting at another clip) at
    real speed; delays as above, per stream and overall."""
    import sys
    import threading

    from .. import load_model
    from ..api import split_dtype
    from .benchmark.clips import build_long_audio, load_clips
    from .server_load import server

    precision, quantization = split_dtype(dtype)
    clips = [c.samples for c in load_clips() if c.reference]
    inputs = [build_long_audio(clips[i % len(clips) :] + clips, seconds) for i in range(streams)]
    whisper = load_model(model, "cpu", precision, quantization)
    offline = [whisper.transcribe(x, word_timestamps=True, progress=False) for x in inputs]
    del whisper
    command = [sys.executable, "-m", "maxwhisper_lib.server", "--model", model, "--device", "cpu"]
    command += ["--quantization", "int8"] if dtype == "int8" else []
    received: dict[int, list[tuple[float, dict]]] = {}
    with server(command) as running:
        url = (
            running.url.replace("http://", "ws://")
            + f"/v1/audio/live?chunk_seconds={chunk_seconds}"
            + f"&max_tentative_seconds={max_tentative_seconds}&buffer_seconds={buffer_seconds}"
        )
        stream_to_server(url, inputs[0][: 5 * SAMPLE_RATE], speed=0)  # first-call costs
        threads = [
            threading.Thread(
                target=lambda i=i: received.setdefault(i, stream_to_server(url, inputs[i])[0])
            )
            for i in range(streams)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    runs = []
    for i in range(streams):
        words = [
            (at, LiveWord(w["start"], w["end"], w["word"]))
            for at, message in received[i]
            if message["type"] == "confirmed"
            for w in message["words"]
        ]
        run = StreamRun(f"stream-{i}", seconds, offline=offline[i]["text"])
        run.confirm(words, offline[i])
        done = received[i][-1][1] if received[i] else {}
        run.wall_seconds = received[i][-1][0] if received[i] else float("nan")
        assert done.get("type") == "done", done
        runs.append(run)
        print(
            f"stream {i}: {len(run.words)} words, delay p50 {percentile(run.delays, 50):.2f} s "
            f"p95 {percentile(run.delays, 95):.2f} s, WER vs offline {run.wer:.3f}, done at "
            f"{run.wall_seconds:.1f} s of {seconds:g}",
            flush=True,
        )
    return {
        "model": model,
        "dtype": dtype,
        "clock": "real",
        "streams": streams,
        "chunk_seconds": chunk_seconds,
        "max_tentative_seconds": max_tentative_seconds,
        "buffer_seconds": buffer_seconds,
        "summary": summary(runs),
        "runs": [{**asdict(r), "wer": r.wer} for r in runs],
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m " + __name__, description=__doc__)
    parser.add_argument("--output", type=Path, required=True, help="report folder")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--dtype", default="float32", choices=["float32", "int8"])
    parser.add_argument("--clock", default="virtual", choices=["virtual", "real"])
    parser.add_argument("--clips", default=None, help="comma-separated clip ids")
    parser.add_argument("--long_seconds", type=float, default=0.0)
    parser.add_argument("--chunk_seconds", type=float, default=LiveOptions.chunk_seconds)
    parser.add_argument("--agreement", type=int, default=LiveOptions.agreement)
    parser.add_argument(
        "--max_tentative_seconds", type=float, default=LiveOptions.max_tentative_seconds
    )
    parser.add_argument("--buffer_seconds", type=float, default=LiveOptions.buffer_seconds)
    parser.add_argument("--tag", default="", help="added to the output file's name")
    parser.add_argument("--vad", type=int, default=1)
    parser.add_argument("--min_silence_ms", type=int, default=None)
    parser.add_argument(
        "--server_streams", type=int, default=0, help="instead: this many streams on a server"
    )
    parser.add_argument("--server_seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    if args.server_streams:
        result = run_server_streams(
            args.model,
            args.dtype,
            args.server_streams,
            args.server_seconds,
            args.chunk_seconds,
            args.max_tentative_seconds,
            args.buffer_seconds,
        )
        print(json.dumps(result["summary"], indent=1))
        args.output.mkdir(parents=True, exist_ok=True)
        name = f"live-server-{args.server_streams}-{args.dtype}-chunk{args.chunk_seconds:g}"
        name += f"{args.tag}.json"
        with atomic_text_file(args.output / name) as out:
            json.dump(result, out, indent=1, default=str)
        return
    vad = LiveOptions().vad_parameters
    if args.min_silence_ms is not None:
        vad = dataclasses.replace(vad, min_silence_duration_ms=args.min_silence_ms)
    options = LiveOptions(
        chunk_seconds=args.chunk_seconds,
        agreement=args.agreement,
        max_tentative_seconds=args.max_tentative_seconds,
        buffer_seconds=args.buffer_seconds,
        vad=bool(args.vad),
        vad_parameters=vad,
    )
    result = run_clips(
        args.model,
        args.dtype,
        args.clock,
        args.clips.split(",") if args.clips else None,
        args.long_seconds,
        options,
    )
    print(json.dumps(result["summary"], indent=1))
    args.output.mkdir(parents=True, exist_ok=True)
    name = f"live-{args.dtype}-{args.clock}{args.tag}.json"
    with atomic_text_file(args.output / name) as out:
        json.dump(result, out, indent=1, default=str)


if __name__ == "__main__":
    main()
