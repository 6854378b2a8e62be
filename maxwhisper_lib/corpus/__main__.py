"""``maxwhisper-corpus INPUT --output_dir DIR [options]``: a corpus transcribed on Ray.

INPUT is a manifest (``.csv`` with a ``file`` column, optional ``id`` and ``reference_text``),
a folder (its audio files, recursively) or a quoted glob. The model, device, decoding, VAD and
output options are ``maxwhisper``'s; ``--batch_size`` files are decoded together inside an actor
(each file window after window, as ``transcribe`` does). Added: ``--address`` (a running Ray
cluster; default: Ray embedded on this machine), ``--actors`` and ``--threads`` (cores per actor).

Writes ``DIR/results.jsonl`` (one line per file: text, segments, language, timings, error),
the transcript files, and ``DIR/summary.json``. A re-run skips the files already done. Exit
status: 0, 1 when some file failed (its line says why), 2 for bad options.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..cli import ArgumentParser, TranscriptionPlan, UsageError, add_transcription_options

PROG = "maxwhisper-corpus"
OWN_OPTIONS = ("input", "address", "actors", "threads")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog=PROG,
        description="Transcribe a corpus with Whisper on MAX, scaled out with Ray.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("input", help="manifest (.csv), folder of audio files, or a quoted glob")
    add_transcription_options(p)
    for action in p._actions:
        if action.dest == "output_dir":
            action.required, action.default = True, None
        if action.dest == "batch_size":
            action.help = "files decoded together inside an actor (each one window after window)"
    # fmt: off
    p.add_argument("--address", default=None, help="a running Ray cluster ('auto' or HOST:PORT); default: Ray embedded on this machine")
    p.add_argument("--actors", type=int, default=None, help="model replicas (default: one per GPU on a GPU device, else 1)")
    p.add_argument("--threads", type=int, default=None, help="CPU cores per actor (default: the CPUs shared out between the actors)")
    # fmt: on
    return p


def report(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``maxwhisper-corpus`` on ``argv``; return the exit status (0, 1 or 2)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    from ..errors import DecodingOptionsError, MaxWhisperError, WeightsError
    from .inputs import CorpusInputError
    from .run import CorpusRunError

    try:
        return run(args)
    except (UsageError, DecodingOptionsError, CorpusInputError, CorpusRunError) as error:
        report(f"error: {error}")
        return 2
    except (WeightsError, MaxWhisperError) as error:
        report(f"error: {error}")
        return 1
    except KeyboardInterrupt:
        report("interrupted (a re-run resumes where this one stopped)")
        return 130


def run(args: argparse.Namespace) -> int:
    from .actors import ModelSettings
    from .inputs import collect_inputs
    from .run import run_corpus

    for name in ("actors", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name} must be at least 1, got {value}")
    plan = TranscriptionPlan.from_args(args, own=OWN_OPTIONS)
    items = collect_inputs(args.input)
    settings = ModelSettings(
        model=args.model,
        model_dir=args.model_dir,
        engine=args.engine,
        device=args.device,
        dtype=args.dtype,
        batch_size=args.batch_size,
        transcribe_kwargs={**plan.kwargs, **plan.vad},
    )
    summary = run_corpus(
        items,
        args.output_dir,
        settings,
        formats=args.output_format,
        writer_options=plan.writer_options,
        actors=args.actors,
        threads=args.threads,
        address=args.address,
        progress=not args.verbose,
    )
    print(summary.line(), flush=True)
    return 1 if summary.errors else 0


__all__ = ["build_parser", "main"]


if __name__ == "__main__":
    raise SystemExit(main())
