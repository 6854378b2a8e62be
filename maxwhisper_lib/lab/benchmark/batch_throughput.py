"""Batched transcription throughput of many files: MAX's ``transcribe_batch`` against
faster-whisper's ``BatchedInferencePipeline`` on the same weights and audio (time only).

    python -m maxwhisper_lib.lab.benchmark.batch_throughput --device gpu --model large-v3-turbo
        [--files 64] [--batches 16,64] [--dtype float16] [--output reports/gpu-NAME-sizes]

The files are ``--files`` inputs of ``--seconds`` (30) of real speech each, built from the dev
clips (each starting at another clip). Weights as :func:`~maxwhisper_lib.lab.benchmark.sizes.
size_weights`: real where a package ships them, else random at the official dims, whose text
means nothing; so both engines decode greedily at temperature 0 with no fallback and no
thresholds, and each is reported with the tokens it generated, the seconds, and the tokens and
audio seconds per second. MAX takes the files as files (``batch_size`` windows at a time);
faster-whisper's pipeline batches the 30-s chunks of one input, so it gets the files joined
into one, cut back into the same 30-s clips (``clip_timestamps``): the same windows, batched.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import time
from collections.abc import Sequence
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np

from ...atomic import atomic_text_file
from ...audio.constants import SAMPLE_RATE
from ...engine.machine import cpu_model, usable_cores
from ...errors import WeightsError
from .sizes import PACKAGED, language_of, size_weights

GREEDY = {
    "temperature": 0.0,
    "compression_ratio_threshold": None,
    "condition_on_previous_text": False,
    "without_timestamps": False,
}
"""Both engines' decoding: greedy, no fallback, no previous text, timestamps on."""


def speech_files(count: int, seconds: float) -> list[np.ndarray]:
    """``count`` inputs of ``seconds`` of the dev clips' speech, each starting at another clip."""
    from .clips import build_long_audio, load_clips

    clips = [c.samples for c in load_clips() if c.reference]
    return [build_long_audio(clips[i % len(clips) :] + clips, seconds) for i in range(count)]


def run_max(weights, files: list[np.ndarray], batch: int, device: str, dtype: str) -> dict:
    """MAX's ``transcribe_batch`` over ``files`` at ``batch`` windows at a time (after one
    warm-up call on the first file)."""
    from ...decoding.transcribe import transcribe_batch
    from ...engine.model import MaxWhisper

    model = MaxWhisper(weights, device=device, dtype=dtype)
    options = {**GREEDY, "logprob_threshold": None, "no_speech_threshold": None}
    options.update(language_of(weights.dims))
    transcribe_batch(model, files[:1], batch_size=1, progress=False, **options)
    start = time.perf_counter()
    results = transcribe_batch(model, files, batch_size=batch, progress=False, **options)
    seconds = time.perf_counter() - start
    tokens = sum(len(s["tokens"]) for r in results for s in r["segments"])
    return {"seconds": seconds, "tokens": tokens}


def run_faster_whisper(
    name: str, weights, files: list[np.ndarray], batch: int, device: str, compute_type: str
) -> dict:
    """faster-whisper's ``BatchedInferencePipeline`` on the files joined, cut into the same
    clips, ``batch`` at a time (after one warm-up call on the first file)."""
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    with TemporaryDirectory(prefix="maxwhisper-fw-") as temporary:
        folder = ct2_folder(name, weights, Path(temporary))
        model = WhisperModel(
            str(folder),
            device="cuda" if device == "gpu" else "cpu",
            compute_type=compute_type,
            cpu_threads=usable_cores(),
        )
    pipeline = BatchedInferencePipeline(model)
    options = {
        **GREEDY,
        "beam_size": 1,
        "log_prob_threshold": None,
        "no_speech_threshold": None,
    }
    options.update(language_of(weights.dims))  # faster-whisper takes language and task too

    def transcribe(audio: list[np.ndarray]) -> int:
        joined = np.concatenate(audio)
        edges = np.cumsum([0, *(len(a) for a in audio)]) / SAMPLE_RATE
        clips = [{"start": float(a), "end": float(b)} for a, b in itertools.pairwise(edges)]
        segments, _ = pipeline.transcribe(
            joined, batch_size=batch, clip_timestamps=clips, **options
        )
        return sum(len(s.tokens) for s in segments)

    transcribe(files[:1])
    start = time.perf_counter()
    tokens = transcribe(files)
    return {"seconds": time.perf_counter() - start, "tokens": tokens}


def ct2_folder(name: str, weights, temporary: Path) -> Path:
    """A CTranslate2 folder faster-whisper loads: the packaged one (tiny.en), else ``weights``
    written under ``temporary`` with a word-level ``tokenizer.json`` of the same vocabulary
    (faster-whisper reads the special tokens' ids from it; the text of random weights means
    nothing, and no BPE tokenizer for the larger vocabularies is offline)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    from ...checkpoints import ct2_path
    from ...checkpoints.ct2 import ct2_vocabulary, write_ct2_folder
    from ...decoding.tokenizer import get_tokenizer

    if name in PACKAGED:
        with contextlib.suppress(WeightsError):  # a package without a CTranslate2 copy (base)
            return ct2_path(name)
    folder = write_ct2_folder(weights, temporary / "model")
    vocabulary = {token: i for i, token in enumerate(ct2_vocabulary(weights.dims))}
    tokenizer = Tokenizer(WordLevel(vocabulary, unk_token=next(iter(vocabulary))))
    tokenizer.save(str(folder / "tokenizer.json"))
    ours = get_tokenizer(weights.dims, **language_of(weights.dims))
    config = {  # what faster-whisper's converter writes: its generate reads the suppressions
        "alignment_heads": [list(h) for h in weights.alignment_heads],
        "lang_ids": sorted(ours.all_language_tokens),
        "suppress_ids": sorted(ours.non_speech_tokens),
        "suppress_ids_begin": [220, ours.eot],
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def measure(
    name: str, device: str, dtype: str, files: int, seconds: float, batches: Sequence[int]
) -> list[dict]:
    """One row per engine and batch size."""
    weights = size_weights(name)
    audio = speech_files(files, seconds)
    total = files * seconds
    peer_type = "float16" if device == "gpu" else dtype
    rows = []
    for batch in batches:
        for engine, run in (
            ("max", lambda b=batch: run_max(weights, audio, b, device, dtype)),
            (
                "faster-whisper",
                lambda b=batch: run_faster_whisper(name, weights, audio, b, device, peer_type),
            ),
        ):
            result = run()
            gc.collect()
            row = {
                "model": name,
                "weights": "real" if name in PACKAGED else "random (float16)",
                "engine": engine,
                "dtype": dtype if engine == "max" else peer_type,
                "files": files,
                "batch": batch,
                **result,
                "x_real_time": total / result["seconds"],
                "tokens_per_s": result["tokens"] / result["seconds"],
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="large-v3-turbo")
    parser.add_argument("--device", default="gpu", choices=["gpu", "cpu"])
    parser.add_argument("--dtype", default=None, help="MAX's (gpu: float16; cpu: float32)")
    parser.add_argument("--files", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--batches", default="16,64")
    parser.add_argument("--output", type=Path, default=None, help="report folder")
    args = parser.parse_args(argv)
    dtype = args.dtype or ("float16" if args.device == "gpu" else "float32")
    batches = [int(b) for b in args.batches.split(",")]
    rows = measure(args.model, args.device, dtype, args.files, args.seconds, batches)
    if args.output:
        args.output.mkdir(parents=True, exist_ok=True)
        with atomic_text_file(args.output / f"throughput-{args.model}.json") as out:
            json.dump({"cpu": cpu_model(), "rows": rows}, out, indent=1)


if __name__ == "__main__":
    main()
