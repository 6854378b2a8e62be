"""``maxwhisper AUDIO... [options]``: openai-whisper's command line, running on MAX Graph.

Flags, defaults and ``True``/``False``/``None`` conventions are openai-whisper's (``whisper
--help``; beam search of 5 with temperature fallback), except ``--model tiny.en`` and a progress
bar unless ``--verbose``. Added: ``--engine`` (``max``, or ``torch`` for openai-whisper's model
on the same weights), ``--dtype``, ``--batch_size`` (windows decoded together: files cut into spans, and files side by side), ``--model_dir``,
comma-separated ``--output_format`` lists, and bare boolean flags (``--verbose`` = ``True``).

Expected failures are one line on stderr, never a traceback: bad options exit 2 before the model
is loaded, bad weights exit 1, and an audio file that is missing, empty, corrupt, silent or not
audio is reported and skipped while the others are still transcribed (exit status 1).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from .choices import DEVICE_CHOICES, DTYPE_CHOICES, ENGINES, QUANTIZATIONS
from .cli_live import LIVE_OPTIONS, add_live_options
from .errors import DecodingOptionsError

if TYPE_CHECKING:
    from .decoding.backend import WhisperBackend
    from .dims import ModelDimensions

    BackendLoader = Callable[[str, str | None, str, str, str], WhisperBackend]
    """Loads the model for (model, model_dir, engine, device, dtype)."""

PROG = "maxwhisper"
WORD_OPTIONS = (
    "highlight_words",
    "max_line_width",
    "max_line_count",
    "max_words_per_line",
    "hallucination_silence_threshold",
)
"""Options that need ``--word_timestamps True``."""
CLI_ONLY = (
    "audio",
    "model",
    "model_dir",
    "engine",
    "device",
    "dtype",
    "quantization",
    "output_dir",
    "output_format",
    "verbose",
    "batch_size",
    "temperature",
    "temperature_increment_on_fallback",
    "highlight_words",
    "max_line_width",
    "max_line_count",
    "max_words_per_line",
    "vad_filter",
    "vad_threshold",
    "vad_min_speech_duration_ms",
    "vad_min_silence_duration_ms",
    "vad_speech_pad_ms",
    *LIVE_OPTIONS,
)
"""Arguments that are not ``transcribe`` keyword arguments."""


class UsageError(Exception):
    """Options that contradict each other or the model: exit status 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors (``maxwhisper: error: ...``) instead of usage + error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# openai-whisper's argument conventions (whisper.utils; kept here so --help needs no torch)
def str2bool(string: str) -> bool:
    values = {"True": True, "False": False}
    if string not in values:
        hint = " (a bare flag takes the next word: put audio files first)" * Path(string).exists()
        raise argparse.ArgumentTypeError(f"expected True or False, got {string!r}{hint}")
    return values[string]


def optional_int(string: str) -> int | None:
    return None if string == "None" else int(string)


def optional_float(string: str) -> float | None:
    return None if string == "None" else float(string)


def optional_str(string: str) -> str | None:
    return None if string == "None" else string


def output_formats(string: str) -> tuple[str, ...]:
    from .decoding.writers import parse_formats

    try:
        return parse_formats(string)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


BOOL_FLAG: dict[str, Any] = {"type": str2bool, "nargs": "?", "const": True, "metavar": "True|False"}
"""``--flag``, ``--flag True`` or ``--flag False``."""


def build_parser() -> ArgumentParser:
    """The argument parser: openai-whisper's flags plus ``--engine``, ``--dtype``,
    ``--batch_size`` and ``--model_dir``."""
    p = ArgumentParser(
        prog=PROG,
        description="Transcribe audio files with Whisper on Modular's MAX Graph.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("audio", nargs="*", help="audio file(s) to transcribe")
    add_transcription_options(p)
    add_live_options(p, BOOL_FLAG)
    return p


def add_transcription_options(p: argparse.ArgumentParser) -> None:
    """Every ``maxwhisper`` option but the audio files: model, device, outputs, decoding, VAD
    (shared with ``maxwhisper-corpus``)."""
    flag = BOOL_FLAG
    # fmt: off
    p.add_argument("--model", default="tiny.en", help="named model (tiny.en, base), extracted weights folder, or checkpoint file")
    p.add_argument("--model_dir", default=None, help="folder of extracted weights (default: $MAXWHISPER_WEIGHTS_DIR or weights/)")
    p.add_argument("--engine", default="max", choices=ENGINES, help="max: MAX Graph; torch: openai-whisper's PyTorch model on the same weights (the reference)")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="auto picks the GPU when there is one")
    p.add_argument("--dtype", default="float32", choices=DTYPE_CHOICES, help="precision of weights and activations (half precision on GPU only; int8: int8 weights on the CPU, engine max)")
    p.add_argument("--quantization", default=None, choices=QUANTIZATIONS, help="int8: int8 weights in the Mojo kernels, float32 activations (the CPU, engine max); the same as --dtype int8")
    p.add_argument("--output_dir", "-o", default=".", help="directory to save the outputs")
    p.add_argument("--output_format", "-f", type=output_formats, default="all", help="txt, vtt, srt, tsv, json, a comma-separated list of them, or all")
    p.add_argument("--verbose", default=False, **flag, help="print each segment as it is decoded (instead of a progress bar)")
    p.add_argument("--batch_size", type=int, default=1, help="windows decoded together: above 1, each file is cut into spans of up to 30 s (speech spans with --vad_filter) decoded side by side without the previous span's text as prompt, and that many files go together (outputs are written as each group finishes)")

    p.add_argument("--task", default="transcribe", choices=["transcribe", "translate"], help="X->X speech recognition ('transcribe') or X->English translation ('translate')")
    p.add_argument("--language", type=optional_str, default=None, help="language spoken in the audio (code or name); None detects it")

    p.add_argument("--temperature", type=float, default=0, help="temperature to use for sampling")
    p.add_argument("--best_of", type=optional_int, default=5, help="number of candidates when sampling with non-zero temperature")
    p.add_argument("--beam_size", type=optional_int, default=5, help="number of beams in beam search, only applicable when temperature is zero")
    p.add_argument("--patience", type=optional_float, default=None, help="optional patience value to use in beam decoding (1.0 is conventional beam search)")
    p.add_argument("--length_penalty", type=optional_float, default=None, help="optional token length penalty coefficient (alpha); simple length normalization by default")

    p.add_argument("--suppress_tokens", default="-1", help="comma-separated list of token ids to suppress during sampling; '-1' suppresses most special characters except common punctuations")
    p.add_argument("--initial_prompt", type=optional_str, default=None, help="optional text to provide as a prompt for the first window")
    p.add_argument("--carry_initial_prompt", default=False, **flag, help="prepend initial_prompt to every window's prompt")
    p.add_argument("--condition_on_previous_text", default=True, **flag, help="provide the previous output as a prompt for the next window")

    p.add_argument("--temperature_increment_on_fallback", type=optional_float, default=0.2, help="temperature to increase when falling back when the decoding fails to meet either of the thresholds below")
    p.add_argument("--compression_ratio_threshold", type=optional_float, default=2.4, help="if the gzip compression ratio is higher than this value, treat the decoding as failed")
    p.add_argument("--logprob_threshold", type=optional_float, default=-1.0, help="if the average log probability is lower than this value, treat the decoding as failed")
    p.add_argument("--no_speech_threshold", type=optional_float, default=0.6, help="if the probability of the <|nospeech|> token is higher than this value AND the decoding has failed due to logprob_threshold, consider the segment as silence")
    p.add_argument("--word_timestamps", default=False, **flag, help="extract word-level timestamps and refine the results based on them")
    p.add_argument("--prepend_punctuations", default="\"'“¿([{-", help="if word_timestamps is True, merge these punctuation symbols with the next word")
    p.add_argument("--append_punctuations", default="\"'.。,，!！?？:：”)]}、", help="if word_timestamps is True, merge these punctuation symbols with the previous word")
    p.add_argument("--highlight_words", default=False, **flag, help="(requires --word_timestamps True) underline each word as it is spoken in srt and vtt")
    p.add_argument("--max_line_width", type=optional_int, default=None, help="(requires --word_timestamps True) the maximum number of characters in a line before breaking the line")
    p.add_argument("--max_line_count", type=optional_int, default=None, help="(requires --word_timestamps True) the maximum number of lines in a segment")
    p.add_argument("--max_words_per_line", type=optional_int, default=None, help="(requires --word_timestamps True, no effect with --max_line_width) the maximum number of words in a segment")
    p.add_argument("--clip_timestamps", default="0", help="comma-separated list start,end,start,end,... timestamps (in seconds) of clips to process, where the last end timestamp defaults to the end of the file")
    p.add_argument("--vad_filter", default=False, **flag, help="remove non-speech with Silero VAD before transcribing (timestamps stay on the original audio)")
    p.add_argument("--vad_threshold", type=float, default=0.5, help="(with --vad_filter) speech probability above which audio is speech")
    p.add_argument("--vad_min_speech_duration_ms", type=int, default=0, help="(with --vad_filter) drop speech chunks shorter than this")
    p.add_argument("--vad_min_silence_duration_ms", type=int, default=None, help="(with --vad_filter) silence that ends a speech chunk (default 2000, or 160 with --batch_size above 1)")
    p.add_argument("--vad_speech_pad_ms", type=int, default=400, help="(with --vad_filter) audio kept on each side of a speech chunk")
    p.add_argument("--hallucination_silence_threshold", type=optional_float, default=None, help="(requires --word_timestamps True) skip silent periods longer than this threshold (in seconds) when a possible hallucination is detected")
    # fmt: on


def report(message: str) -> None:
    """One line on stderr, prefixed with the program name."""
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def temperatures(temperature: float, increment: float | None) -> tuple[float, ...]:
    """openai-whisper's fallback schedule: ``temperature`` up to 1.0 by ``increment``."""
    if increment is None:
        return (temperature,)
    if increment <= 0:
        raise UsageError("--temperature_increment_on_fallback must be positive (or None)")
    import numpy as np

    values = tuple(float(t) for t in np.arange(temperature, 1.0 + 1e-6, increment))
    if not values:
        raise UsageError(
            f"--temperature {temperature} is above 1.0: add --temperature_increment_on_fallback None"
        )
    return values


def check_output_options(args: argparse.Namespace) -> None:
    """openai-whisper's rules for the word-level options (errors), plus positive counts."""
    if not args.word_timestamps:
        for name in WORD_OPTIONS:
            if getattr(args, name) not in (None, False):
                raise UsageError(f"--{name} requires --word_timestamps True")
    for name in ("max_line_width", "max_line_count", "max_words_per_line", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name} must be at least 1, got {value}")
    if args.max_line_count and not args.max_line_width:
        report("warning: --max_line_count has no effect without --max_line_width")
    if args.max_words_per_line and args.max_line_width:
        report("warning: --max_words_per_line has no effect with --max_line_width")


def vad_options(args: argparse.Namespace) -> dict:
    """``vad_filter`` and ``vad_parameters`` for ``transcribe_batch`` (checked here)."""
    if not args.vad_filter:
        return {}
    from .audio.chunking import BATCHED_VAD_SILENCE_MS
    from .audio.vad import VadParameters

    silence = args.vad_min_silence_duration_ms
    if silence is None:  # faster-whisper's defaults: 2 s sequentially, 160 ms batched
        silence = (
            BATCHED_VAD_SILENCE_MS if args.batch_size > 1 else VadParameters.min_silence_duration_ms
        )
    try:
        parameters = VadParameters(
            threshold=args.vad_threshold,
            min_speech_duration_ms=args.vad_min_speech_duration_ms,
            min_silence_duration_ms=silence,
            speech_pad_ms=args.vad_speech_pad_ms,
        )
    except ValueError as error:
        raise UsageError(str(error)) from error
    return {"vad_filter": True, "vad_parameters": parameters}


def model_dims(model: str, model_dir: str | None) -> ModelDimensions | None:
    """Dims of a named or extracted model, from its ``dims.json`` (no weights read yet); None for
    other sources (checkpoint files), whose dims come with their weights."""
    from .checkpoints import model_folder
    from .dims import ModelDimensions
    from .errors import WeightsError

    try:
        folder = model_folder(model, model_dir)
    except WeightsError:
        return None
    try:
        return ModelDimensions.load(folder / "dims.json")
    except (OSError, ValueError) as error:
        raise WeightsError(f"{folder}: unreadable dims.json ({error})") from error


def fold_quantization(args: argparse.Namespace) -> None:
    """``--quantization int8`` as the engines' one precision name, ``int8`` (``--dtype int8``
    says the same); UsageError with a half-precision ``--dtype``."""
    if args.quantization is None:
        return
    if args.dtype not in ("float32", "int8"):
        raise UsageError(
            f"--quantization {args.quantization} runs with float32 activations, "
            f"not --dtype {args.dtype}"
        )
    args.dtype = "int8"


def resolve_device(engine: str, device: str, dtype: str) -> str:
    """``cpu`` or ``gpu`` for ``engine``; UsageError when the device or dtype can't be had."""
    from .api import engine_dtype, split_dtype
    from .api import resolve_device as resolve

    try:
        name = resolve(device, engine)
        engine_dtype(name, *split_dtype(dtype))
    except DecodingOptionsError as error:
        raise UsageError(str(error)) from error
    if dtype == "int8" and engine != "max":
        raise UsageError("dtype int8 is MAX's CPU mode; use it with --engine max")
    return name


def load_backend(
    model: str, model_dir: str | None, engine: str, device: str, dtype: str
) -> WhisperBackend:
    """The model on ``engine``/``device`` (``cpu``/``gpu``)/``dtype`` (``int8``: the quantized
    mode) through :func:`maxwhisper_lib.load_model`, its graphs compiled (or read back)."""
    from .api import load_model, split_dtype

    report(f"loading {model} on {engine} ({device}, {dtype})")
    precision, quantization = split_dtype(dtype)
    return load_model(
        model, device, precision, quantization, weights_dir=model_dir, engine=engine
    ).backend


def main(argv: Sequence[str] | None = None, load: BackendLoader = load_backend) -> int:
    """Run ``maxwhisper`` on ``argv`` (default: ``sys.argv[1:]``); return the exit status:
    0, 1 (an audio file, the weights or an output failed) or 2 (bad options). ``load``: how
    the model is loaded, once per call (a notebook or a test can hand over one it holds)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error already printed
        return exit_.code if isinstance(exit_.code, int) else 2
    from .errors import WeightsError

    try:
        return run(args, load)
    except (UsageError, DecodingOptionsError) as error:
        report(f"error: {error}")
        return 2
    except WeightsError as error:
        report(f"error: {error}")
        return 1
    except KeyboardInterrupt:
        report("interrupted")
        return 130


@dataclass
class TranscriptionPlan:
    """The options of a command line, checked before any model is loaded: ``transcribe``'s
    keyword arguments, the VAD's, the model's dims (None for a checkpoint file, known once it
    is read) and the subtitle writers' options."""

    kwargs: dict[str, Any]
    vad: dict[str, Any]
    dims: ModelDimensions | None
    writer_options: dict[str, Any]

    @classmethod
    def from_args(cls, args: argparse.Namespace, own: Sequence[str] = ()) -> TranscriptionPlan:
        """Check ``args`` (UsageError / DecodingOptionsError / WeightsError) and plan the run;
        ``own``: the calling command's own options, not passed to ``transcribe``."""
        from .decoding.transcribe import make_options
        from .decoding.writers import WRITER_OPTIONS

        check_output_options(args)
        fold_quantization(args)
        vad = vad_options(args)
        kwargs = {k: v for k, v in vars(args).items() if k not in (*CLI_ONLY, *own)}
        kwargs["temperature"] = temperatures(
            args.temperature, args.temperature_increment_on_fallback
        )
        dims = model_dims(args.model, args.model_dir)
        if dims is not None:
            make_options(dims, **kwargs)
        writer_options = {k: getattr(args, k) for k in WRITER_OPTIONS}
        return cls(kwargs, vad, dims, writer_options)


def run(args: argparse.Namespace, load: BackendLoader = load_backend) -> int:
    """Check everything that can be checked cheaply, then transcribe ``batch_size`` files at a
    time and write each group's outputs as soon as it is done."""
    from .audio.load import check_audio
    from .decoding.transcribe import make_options, transcribe_batch
    from .decoding.writers import write_result
    from .errors import AudioError, MaxWhisperError

    if args.live is not None:
        from .cli_live import run_live

        return run_live(args, load)
    if not args.audio:
        raise UsageError("give audio file(s) to transcribe, or --live FILE_OR_-")
    plan = TranscriptionPlan.from_args(args)
    kwargs, vad, dims, writer_options = plan.kwargs, plan.vad, plan.dims, plan.writer_options
    device = resolve_device(args.engine, args.device, args.dtype)
    output_dir = Path(args.output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        report(f"error: cannot create the output directory {output_dir} ({error.strerror})")
        return 1

    failed = False
    backend: WhisperBackend | None = None  # loaded once the first group of files is checked
    for start in range(0, len(args.audio), args.batch_size):
        group: list[tuple[str, Path]] = []
        for path in args.audio[start : start + args.batch_size]:
            try:  # a file is checked here and read piece by piece later
                check_audio(path, reject_silent=not args.vad_filter)
                group.append((path, Path(path)))
            except AudioError as error:
                report(str(error))
                failed = True
        if not group:
            continue
        if backend is None:
            backend = load(args.model, args.model_dir, args.engine, device, args.dtype)
        if dims is None:  # a checkpoint file: its options are checked once it is read
            dims = backend.dims
            make_options(dims, **kwargs)
        try:
            results = transcribe_batch(
                backend,
                [audio for _, audio in group],
                batch_size=args.batch_size,
                chunked=args.batch_size > 1,
                verbose=args.verbose,
                **vad,
                **kwargs,
            )
        except MaxWhisperError as error:
            for path, _ in group:
                report(f"{path}: {error}")
            failed = True
            continue
        for (path, _), result in zip(group, results, strict=True):
            try:
                written = write_result(result, path, output_dir, args.output_format, writer_options)
            except OSError as error:
                report(f"{path}: cannot write the transcript ({error.strerror or error})")
                failed = True
                continue
            print(f"{path} -> {', '.join(str(p) for p in written)}", flush=True)
    return 1 if failed else 0


__all__ = [
    "TranscriptionPlan",
    "add_transcription_options",
    "build_parser",
    "load_backend",
    "main",
]
