"""The live peer: ÚFAL's ``whisper_streaming`` (``whisper_online.py``, the reference
LocalAgreement-2 implementation; Macháček, Dabre and Bojar, 2023) on the same audio at real
speed, measured as :mod:`.live_latency` measures MAX-Whisper's live mode.

``whisper_online.py`` is not on PyPI: a verbatim copy lives in ``scripts/peers/whisper_streaming/``
(commit ``1f25a1a``). Its faster-whisper backend is loaded on the CPU (the line its
``FasterWhisperASR.load_model`` carries commented out, ``compute_type="int8"``; or ``float32``) on
the same tiny.en weights, with its own decoding (beam 5, word timestamps, its prompt), its
default buffer trimming (completed segments past 15 s) and its simultaneous mode's loop: wait
until ``min_chunk`` seconds (its default, 1 s) have passed since the last step, insert all the
audio heard by now, ``process_iter``, print what it committed; ``finish`` at the end. Its VAC needs
Silero from torch.hub (a download), so it runs without, as by default.

``python -m maxwhisper_lib.lab.live_peer --output reports/FOLDER [--compute_type int8]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import types
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..atomic import atomic_text_file
from ..audio.constants import SAMPLE_RATE
from ..decoding.live import LiveWord
from ..paths import project_root
from .live_latency import StreamRun, percentile, summary

PEER = Path("scripts/peers/whisper_streaming/whisper_online.py")


def whisper_online():
    """ÚFAL's module, imported from its copy (librosa, used there only to read files, stubbed)."""
    sys.modules.setdefault("librosa", types.ModuleType("librosa"))
    spec = importlib.util.spec_from_file_location("whisper_online", project_root() / PEER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_asr(module, model_path: str, compute_type: str):
    """Its ``FasterWhisperASR`` on the CPU (its ``load_model`` hard-codes CUDA float16)."""
    from faster_whisper import WhisperModel

    from ..engine import machine

    class CpuASR(module.FasterWhisperASR):
        def load_model(self, modelsize=None, cache_dir=None, model_dir=None):
            return WhisperModel(
                model_dir,
                device="cpu",
                compute_type=compute_type,
                cpu_threads=machine.usable_cores(),
            )

    return CpuASR(lan="en", model_dir=model_path)


def run_stream(module, asr, samples: np.ndarray, min_chunk: float) -> list[tuple[float, str]]:
    """``samples`` through its ``OnlineASRProcessor`` at real speed, its main's simultaneous
    loop: ``(seconds since the start, committed text)`` per commit."""
    import io
    import logging

    logging.getLogger("whisper_online").setLevel(logging.WARNING)
    online = module.OnlineASRProcessor(asr, None, logfile=io.StringIO())
    duration = samples.size / SAMPLE_RATE
    commits: list[tuple[float, str]] = []
    start = time.time()
    beg = end = 0.0
    while True:
        now = time.time() - start
        if now < end + min_chunk:
            time.sleep(min_chunk + end - now)
        end = min(time.time() - start, duration)
        online.insert_audio_chunk(samples[int(beg * SAMPLE_RATE) : int(end * SAMPLE_RATE)])
        beg = end
        committed = online.process_iter()
        if committed[0] is not None:
            commits.append((time.time() - start, committed[2]))
        if end >= duration:
            break
    committed = online.finish()
    if committed[0] is not None:
        commits.append((time.time() - start, committed[2]))
    return commits


def run_clips(compute_type: str = "int8", min_chunk: float = 1.0) -> dict:
    from .. import load_model
    from ..checkpoints import ct2_path
    from .benchmark.clips import load_clips

    reference_model = load_model("tiny.en", "cpu")
    module = whisper_online()
    asr = make_asr(module, str(ct2_path("tiny.en")), compute_type)
    asr.transcribe(np.zeros(SAMPLE_RATE, np.float32))  # its warm-up, as its main does
    runs = []
    for clip in [c for c in load_clips() if c.reference]:
        offline = reference_model.transcribe(clip.samples, word_timestamps=True, progress=False)
        commits = run_stream(module, asr, clip.samples, min_chunk)
        # a commit is text: its words, each timed by the offline word it aligns with (else it
        # is left out of the delays: the peer gives no time per word)
        words = [
            (at, LiveWord(0.0, float("nan"), f" {t}")) for at, text in commits for t in text.split()
        ]
        run = StreamRun(clip.id, clip.seconds, offline=offline["text"], reference=clip.reference)
        run.confirm(words, offline)
        runs.append(run)
        print(
            f"{clip.id}: {len(run.words)} words, delay p50 {percentile(run.delays, 50):.2f} s "
            f"p95 {percentile(run.delays, 95):.2f} s, WER vs offline {run.wer:.3f}",
            flush=True,
        )
    return {
        "peer": "ufal/whisper_streaming 1f25a1a (faster-whisper)",
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
