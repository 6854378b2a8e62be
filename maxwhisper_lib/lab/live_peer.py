"""The live peer: ``whisper-streaming`` (PyPI 0.1.0, Niklas Kaaf's packaging of ÚFAL's
``whisper_streaming``: LocalAgreement-2 over faster-whisper) on the same audio at real speed,
measured as :mod:`.live_latency` measures MAX-Whisper's live mode.

Its audio comes from a receiver that hands on ``min_chunk`` seconds at a time as they would be
heard (``whisper_streaming``'s ``--min-chunk-size``, 1 s by default there), its buffer is trimmed
at 15 s (``TimeTrimming``: the package's sentence trimming is not implemented), decoding is
faster-whisper's defaults (beam 5, temperature fallback) on the same tiny.en weights (CTranslate2
``int8`` or ``float32``). Install it beside the lab without its microphone and resampling
dependencies, which this run does not use: ``pip install --no-deps whisper-streaming
opus-fast-mosestokenizer``.

``python -m maxwhisper_lib.lab.live_peer --output reports/FOLDER [--compute_type int8]``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..atomic import atomic_text_file
from ..audio.constants import SAMPLE_RATE
from ..decoding.live import LiveWord, words_of
from .live_latency import StreamRun, percentile, summary, word_ends


def run_stream(samples: np.ndarray, model_path: str, compute_type: str, min_chunk: float):
    """``samples`` through whisper-streaming at real speed: ``(seconds since the start,
    word)`` for every committed word."""
    from whisper_streaming import (
        ASRProcessor,
        AudioReceiver,
        Backend,
        OutputSender,
        TimeTrimming,
    )
    from whisper_streaming.backend import (
        FasterWhisperFeatureExtractorConfig,
        FasterWhisperModelConfig,
        FasterWhisperTranscribeConfig,
    )

    from ..engine import machine

    step = int(min_chunk * SAMPLE_RATE)
    start = [0.0]
    committed: list[tuple[float, LiveWord]] = []

    class Player(AudioReceiver):
        def __init__(self) -> None:
            super().__init__()
            self.at = 0

        def _do_receive(self):
            if self.at == 0:
                start[0] = time.monotonic()
            if self.at >= samples.size:
                return None
            piece = samples[self.at : self.at + step]
            self.at += piece.size
            wait = start[0] + self.at / SAMPLE_RATE - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            return piece

        def _do_close(self) -> None:
            pass

    class Collector(OutputSender):
        def _do_output(self, data) -> None:
            committed.append(
                (time.monotonic() - start[0], LiveWord(data.start, data.end, data.word))
            )

        def _do_close(self) -> None:
            pass

    processor = ASRProcessor(
        ASRProcessor.ProcessorConfig(
            sampling_rate=SAMPLE_RATE,
            prompt_size=200,
            audio_receiver_timeout=1.0,
            language="en",
            audio_trimming=TimeTrimming(15),
        ),
        Player(),
        Collector(),
        Backend.FASTER_WHISPER,
        FasterWhisperModelConfig(
            model_size_or_path=model_path,
            device="cpu",
            compute_type=compute_type,
            cpu_threads=machine.usable_cores(),
        ),
        FasterWhisperTranscribeConfig(),
        FasterWhisperFeatureExtractorConfig(),
    )
    processor.run()
    time.sleep(0.3)  # the sender thread takes its queue every 0.1 s
    return committed


def run_clips(compute_type: str = "int8", min_chunk: float = 1.0) -> dict:
    from .. import load_model
    from ..checkpoints import ct2_path
    from .benchmark.clips import load_clips

    reference_model = load_model("tiny.en", "cpu")
    model_path = str(ct2_path("tiny.en"))
    runs = []
    for clip in [c for c in load_clips() if c.reference]:
        offline = reference_model.transcribe(clip.samples, word_timestamps=True, progress=False)
        committed = run_stream(clip.samples, model_path, compute_type, min_chunk)
        # a commit is the words committed together joined into one: split back into words,
        # each timed by the offline word it aligns with (else the commit's end)
        words = [
            (at, LiveWord(commit.start, commit.end, f" {token}"))
            for at, commit in committed
            for token in commit.text.split()
        ]
        ends = word_ends(words_of(offline, 0.0)[0], [w for _, w in words])
        run = StreamRun(clip.id, clip.seconds, offline=offline["text"], reference=clip.reference)
        for (at, word), end in zip(words, ends, strict=True):
            run.words.append(
                {
                    "word": word.text,
                    "start": word.start,
                    "end": end,
                    "confirmed_at": at,
                    "delay": at - end,
                }
            )
        run.text = "".join(w.text for _, w in words)
        runs.append(run)
        print(
            f"{clip.id}: {len(run.words)} words, delay p50 {percentile(run.delays, 50):.2f} s "
            f"p95 {percentile(run.delays, 95):.2f} s, WER vs offline {run.wer:.3f}",
            flush=True,
        )
    return {
        "peer": "whisper-streaming 0.1.0 (faster-whisper)",
        "compute_type": compute_type,
        "min_chunk": min_chunk,
        "clock": "real",
        "summary": summary(runs),
        "runs": [{**asdict(r), "wer": r.wer} for r in runs],
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m " + __name__, description=__doc__)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--compute_type", default="int8", choices=["int8", "float32"])
    parser.add_argument("--min_chunk", type=float, default=1.0)
    args = parser.parse_args(argv)
    result = run_clips(args.compute_type, args.min_chunk)
    print(json.dumps(result["summary"], indent=1))
    args.output.mkdir(parents=True, exist_ok=True)
    with atomic_text_file(args.output / f"live-peer-{args.compute_type}.json") as out:
        json.dump(result, out, indent=1, default=str)


if __name__ == "__main__":
    main()
