"""``maxwhisper --live FILE_OR_-``: live transcription on the command line.

A file is played at its real speed (``--live_speed``; ``0``: as fast as it decodes, fixed
chunks), ``-`` reads raw PCM from standard input (16 kHz mono signed 16-bit little-endian:
``arecord -f S16_LE -r 16000 -c 1`` or ``ffmpeg ... -f s16le -ar 16000 -ac 1 -``). Each
confirmation is one line on stdout the moment it is confirmed (``[start --> end] text``, never
revised); the tentative text (on a terminal) and a summary go to stderr. Decoding is greedy at
``--temperature``, with word timestamps (the policy needs them); only an utterance's last decode
falls back to higher temperatures.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    import numpy as np

    from .cli import BackendLoader
    from .decoding.live import LiveUpdate

DECODE_OPTIONS = (
    "language",
    "task",
    "initial_prompt",
    "suppress_tokens",
    "prepend_punctuations",
    "append_punctuations",
)
"""The transcription options that apply to live decodes (the rest are file-mode options)."""
LIVE_OPTIONS = ("live", "live_speed", "live_chunk", "live_agreement", "live_buffer", "live_vad")
"""The live command's own options."""


def add_live_options(p: argparse.ArgumentParser, flag: dict) -> None:
    # fmt: off
    p.add_argument("--live", default=None, metavar="FILE_OR_-", help="live transcription of a file played at real speed, or of raw PCM on stdin ('-': 16 kHz mono s16le); confirmations to stdout")
    p.add_argument("--live_speed", type=float, default=1.0, help="(with --live FILE) playback speed; 0: as fast as it decodes")
    p.add_argument("--live_chunk", type=float, default=0.5, help="(with --live) seconds of new audio between decodes, at least")
    p.add_argument("--live_agreement", type=int, default=2, help="(with --live) successive hypotheses that must agree to confirm words (LocalAgreement-n)")
    p.add_argument("--live_buffer", type=float, default=15.0, help="(with --live) seconds of audio after which the buffer is cut at a confirmed segment")
    p.add_argument("--live_vad", default=True, **flag, help="(with --live) only speech reaches Whisper (Silero VAD); an utterance's end confirms it")
    # fmt: on


def live_options(args: argparse.Namespace):
    """:class:`~maxwhisper_lib.decoding.live.LiveOptions` from the command line (checked)."""
    from .decoding.live import LiveOptions

    if args.live_speed < 0:
        raise ValueError(f"--live_speed must be 0 or more, got {args.live_speed}")
    return LiveOptions(
        chunk_seconds=args.live_chunk,
        agreement=args.live_agreement,
        buffer_seconds=args.live_buffer,
        vad=args.live_vad,
    )


def _pieces(source: str, speed: float) -> Iterator[np.ndarray]:
    from .audio.live_input import pcm_pieces, played
    from .audio.load import stream_audio

    if source == "-":
        return pcm_pieces(sys.stdin.buffer)
    pieces = stream_audio(source, piece_samples=16000)
    return played(pieces, speed) if speed > 0 else pieces


class Printer:
    """Confirmations to ``out``, one line each at once; the tentative tail to ``err`` when it
    is a terminal (one line, rewritten)."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out, self.err = out, err
        self.tty = err.isatty()
        self.words = 0

    def __call__(self, update: LiveUpdate) -> None:
        from .decoding.transcribe import format_timestamp

        if self.tty:
            self.err.write("\r\033[K")
        for confirmed in update.confirmed:
            self.words += len(confirmed.words)
            start, end = format_timestamp(confirmed.start), format_timestamp(confirmed.end)
            print(f"[{start} --> {end}] {confirmed.text.strip()}", file=self.out, flush=True)
        if self.tty and update.tentative:
            self.err.write(f"[{update.seconds:7.1f} s] ...{update.tentative[-70:]}")
            self.err.flush()


def run_live(args: argparse.Namespace, load: BackendLoader) -> int:
    """Check the options, load the model, transcribe ``args.live`` live."""
    from .audio.load import check_audio
    from .cli import UsageError, fold_quantization, report, resolve_device
    from .decoding.live import LiveTranscriber, run_live
    from .errors import AudioError, DecodingOptionsError

    if args.audio:
        raise UsageError("--live takes its one source itself: give no other audio files")
    fold_quantization(args)
    try:
        options = live_options(args)
    except ValueError as error:
        raise UsageError(str(error)) from error
    decode = {k: getattr(args, k) for k in DECODE_OPTIONS}
    decode["temperature"] = args.temperature
    device = resolve_device(args.engine, args.device, args.dtype)
    if args.live != "-":
        try:
            check_audio(args.live)
        except AudioError as error:
            report(str(error))
            return 1
    backend = load(args.model, args.model_dir, args.engine, device, args.dtype)
    try:
        transcriber = LiveTranscriber(backend, options, **decode)
    except DecodingOptionsError as error:
        raise UsageError(str(error)) from error
    printer = Printer(sys.stdout, sys.stderr)
    source = "standard input" if args.live == "-" else args.live
    report(f"live: {source}; confirmed text on stdout, Ctrl-C to stop")
    try:
        if args.live != "-" and args.live_speed == 0:
            _fixed_chunks(transcriber, _pieces(args.live, 0), printer)
        else:
            run_live(transcriber, _pieces(args.live, args.live_speed), printer)
    except AudioError as error:
        report(f"{source}: {error}")
        return 1
    finally:
        if printer.tty:
            sys.stderr.write("\r\033[K")
    seconds = transcriber.transcript.seconds
    report(
        f"live: {seconds:.1f} s of audio, {printer.words} words confirmed, "
        f"{transcriber.decodes} decodes"
    )
    return 0


def _fixed_chunks(transcriber, pieces: Iterable[np.ndarray], printer: Printer) -> None:
    """Feed the audio a tenth of a second at a time, without waiting for real time."""
    from .audio.live_input import PIECE_SECONDS
    from .decoding.live import replay

    for update in replay(transcriber, pieces, PIECE_SECONDS):
        printer(update)


__all__ = ["LIVE_OPTIONS", "add_live_options", "live_options", "run_live"]
