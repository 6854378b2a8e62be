"""End-to-end benchmark: MAX-Whisper against openai-whisper (PyTorch), faster-whisper (CT2) and
whisper.cpp (ggml).

Every engine transcribes the same clips with the same weights (the extracted model's ``.pt``,
CTranslate2 and ggml copies) and the same decoding: greedy at temperature 0 **only** (no temperature
fallback, so a window that looks repetitive is not re-decoded and every engine does one pass per
window), beam size 1, ``condition_on_previous_text=True``, timestamps predicted, no word
timestamps, no VAD. Audio is decoded once up front (not timed) and every engine gets the same
16 kHz float32 array; each engine computes its own log-mel (part of end to end).

Timing runs in one process: a warm-up call per engine (model load + first transcription,
recorded as the first-call time and excluded), then ``repeats`` interleaved passes (for each
repeat, for each clip, each engine in turn) and the median per engine and clip. The real-time
factor (RTF) is audio seconds / processing seconds (higher is faster). MAX's time is split into
front end (log-mel), encoder, decoding (cross-attention keys/values + decoder steps) and host
(the rest: Python decoding loop, tokenizer, copies). On a GPU, MAX's ``execute`` calls may
return before the device finishes, so the split is indicative there; the wall time is not.

Memory: each engine's load and first call is bracketed by the process RSS (psutil) and the
kernel's RSS high-water mark, reset before each engine (``/proc/self/clear_refs``). Growth is
what that engine added to this process; allocator reuse of memory freed by an earlier engine and
shared libraries already mapped make it a rough figure. GPU memory is not measured.

``python -m maxwhisper_lib.benchmark --help`` runs it from the command line.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import machine, paths, reports
from .audio import load_audio
from .audio_constants import SAMPLE_RATE
from .errors import MaxWhisperError
from .manifest import Clip, load_manifest
from .runtime import resolve_device_name
from .scoring import word_error_rate

ENGINES = (
    "max",
    "max-int8",
    "max-matmul",
    "openai-whisper",
    "faster-whisper-int8",
    "faster-whisper-fp32",
    "faster-whisper-fp16",
    "whisper.cpp-f16",
    "whisper.cpp-q8_0",
)
TARGETS = {"faster-whisper-fp32": 1.5, "openai-whisper": 2.5, "faster-whisper-int8": 1.0}
"""MAX's end-to-end speed-up the issue asks for, per peer."""
INT8_TARGETS = {"faster-whisper-int8": 1.5, "whisper.cpp-f16": 1.0, "whisper.cpp-q8_0": 1.0}
"""MAX int8's end-to-end speed-up the int8 issue asks for, per quantized peer."""
INT8_WER_POINTS = 0.5
"""MAX int8's WER may exceed MAX float32's by this many points (absolute) at most."""
DEFAULT_LENGTHS = (10, 30, 60, 120, 300, 600)
DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16)
DECODING = {"temperature": 0.0, "condition_on_previous_text": True, "word_timestamps": False}
"""Decoding options every engine gets (faster-whisper also beam_size=1, no VAD)."""

Log = Callable[[str], None]


class BenchmarkError(MaxWhisperError, ValueError):
    """Benchmark parameters that cannot work (an unknown engine, no clips, ...)."""


class EngineUnavailable(MaxWhisperError):
    """An engine that cannot run here; the message is the reason recorded in the results."""


# --------------------------------------------------------------------------- engines


@dataclass
class Transcript:
    """One transcription: text, output tokens (text and timestamps), wall seconds, MAX's split."""

    text: str
    tokens: list[int]
    seconds: float
    parts: dict[str, float] = field(default_factory=dict)


class Engine:
    """A transcriber behind one interface: :meth:`load` once, then :meth:`transcribe`."""

    name = ""

    def load(self) -> dict[str, float]:
        """Load the model; returns per-graph compile / cache-load seconds where known."""
        raise NotImplementedError

    def transcribe(self, audio: np.ndarray) -> Transcript:
        raise NotImplementedError

    def settings(self) -> dict:
        """What the engine ran with (device, precision, threads)."""
        return {}

    def transcribe_batch(self, audios: Sequence[np.ndarray], batch_size: int) -> list[Transcript]:
        """Many files at once; ``seconds`` of each transcript is the whole batch's wall time."""
        raise EngineUnavailable(f"{self.name}: no batched transcription")


DECODING_GRAPHS = ("cross_kv", "decoder_step", "reorder")


class MaxEngine(Engine):
    """MaxWhisper + this package's ``transcribe`` (an already built model can be passed in).

    ``max``: the product (on the CPU, the decoder's Mojo row kernels over the checkpoint's
    float16 weights); ``max-matmul`` (``row_kernels=False``): the same graphs with MAX's own
    float32 matmuls in the decoder, the design before the row kernels, for comparison.
    """

    def __init__(
        self,
        model: str,
        device: str,
        dtype: str = "float32",
        max_model=None,
        row_kernels: bool | None = None,
    ) -> None:
        self.model_name, self.device, self.dtype = model, device, dtype
        self.row_kernels = row_kernels
        self.name = "max-matmul" if row_kernels is False else "max"
        if dtype == "int8":
            self.name = "max-int8"
        self.model = max_model

    def load(self) -> dict[str, float]:
        from .model import LOG_MEL_PIECE, MaxWhisper
        from .weights import load_weights

        if self.model is None:
            self.model = MaxWhisper(
                load_weights(self.model_name), self.device, self.dtype, self.row_kernels
            )
        seconds = self.model.warm_up()
        start = time.perf_counter()
        self.model.compiled(LOG_MEL_PIECE)  # compiled with the model's graphs
        return {**seconds, "log_mel": time.perf_counter() - start}

    def settings(self) -> dict:
        decoder = (
            f"Mojo row kernels, {self.model.row_dtype.name} weights"
            if self.model is not None and self.model.row_kernels
            else f"MAX matmul, {self.dtype} weights"
        )
        if self.dtype == "int8":
            decoder = "Mojo int8 kernels (per-channel int8 weights, VNNI), encoder and decoder"
        return {
            "device": self.device,
            "dtype": self.dtype,
            "graphs": "MAX Graph",
            "decoder": decoder,
        }

    def _run(self, call: Callable[[], list[dict]]) -> tuple[list[dict], dict[str, float]]:
        before = dict(self.model.run_seconds)
        start = time.perf_counter()
        results = call()
        wall = time.perf_counter() - start
        spent = {k: v - before.get(k, 0.0) for k, v in self.model.run_seconds.items()}
        encoder = spent.get("encoder", 0.0)
        decoding = sum(spent.get(k, 0.0) for k in DECODING_GRAPHS)
        parts = {"frontend": spent.get("log_mel", 0.0), "encoder": encoder, "decoding": decoding}
        parts["host"] = wall - sum(parts.values())
        return results, {"wall": wall, **parts}

    def transcribe(self, audio: np.ndarray) -> Transcript:
        from .transcribe import transcribe

        (result,), parts = self._run(lambda: [transcribe(self.model, audio, **DECODING)])
        return _from_whisper_result(result, parts.pop("wall"), parts)

    def transcribe_batch(self, audios: Sequence[np.ndarray], batch_size: int) -> list[Transcript]:
        from .transcribe import transcribe_batch

        results, parts = self._run(
            lambda: transcribe_batch(self.model, list(audios), batch_size=batch_size, **DECODING)
        )
        wall = parts.pop("wall")
        return [_from_whisper_result(r, wall, parts) for r in results]


def _from_whisper_result(result: dict, seconds: float, parts: dict | None = None) -> Transcript:
    from .transcribe import transcript_tokens

    return Transcript(result["text"], transcript_tokens(result), seconds, parts or {})


class OpenAIWhisperEngine(Engine):
    """openai-whisper's ``transcribe`` on the extracted ``.pt`` (fp32 on CPU, fp16 on CUDA)."""

    name = "openai-whisper"

    def __init__(self, model: str, device: str) -> None:
        import torch

        if device == "gpu" and not torch.cuda.is_available():
            raise EngineUnavailable(f"torch {torch.__version__} sees no CUDA device")
        self.model_name = model
        self.torch_device = "cuda" if device == "gpu" else "cpu"
        self.model = None

    def load(self) -> dict[str, float]:
        import whisper

        from .weights import checkpoint_path

        path = checkpoint_path(self.model_name)
        self.model = whisper.load_model(str(path), device=self.torch_device)
        return {}

    def settings(self) -> dict:
        import torch

        return {
            "device": self.torch_device,
            "dtype": "float16" if self.torch_device == "cuda" else "float32",
            "torch_threads": torch.get_num_threads(),
        }

    def transcribe(self, audio: np.ndarray) -> Transcript:
        import whisper

        start = time.perf_counter()
        result = whisper.transcribe(
            self.model, audio, verbose=None, fp16=self.torch_device == "cuda", **DECODING
        )
        return _from_whisper_result(result, time.perf_counter() - start)


FASTER_WHISPER_TYPES = {"int8": "int8", "fp32": "float32", "fp16": "float16"}
"""faster-whisper engine suffix -> CTranslate2 compute type."""


class FasterWhisperEngine(Engine):
    """faster-whisper ``WhisperModel`` on the extracted CTranslate2 copy, greedy, no VAD."""

    def __init__(self, model: str, device: str, kind: str) -> None:
        try:
            import ctranslate2
            import faster_whisper  # noqa: F401
        except ImportError as error:
            raise EngineUnavailable(f"faster-whisper is not installed ({error})") from error
        if device == "gpu" and ctranslate2.get_cuda_device_count() == 0:
            raise EngineUnavailable("CTranslate2 sees no CUDA device")
        if kind == "fp16" and device != "gpu":
            raise EngineUnavailable("float16 needs CUDA in CTranslate2; this run is on the CPU")
        from .weights import ct2_path

        try:
            self.path = ct2_path(model)
        except MaxWhisperError as error:
            raise EngineUnavailable(str(error)) from error
        self.name = f"faster-whisper-{kind}"
        self.ct2_device = "cuda" if device == "gpu" else "cpu"
        self.compute_type = FASTER_WHISPER_TYPES[kind]
        self.threads = machine.usable_cores()
        self.model = None

    def load(self) -> dict[str, float]:
        from faster_whisper import WhisperModel

        self.model = WhisperModel(
            str(self.path),
            device=self.ct2_device,
            compute_type=self.compute_type,
            cpu_threads=self.threads,
        )
        return {}

    def settings(self) -> dict:
        return {
            "device": self.ct2_device,
            "compute_type": self.compute_type,
            "cpu_threads": self.threads,
        }

    def transcribe(self, audio: np.ndarray) -> Transcript:
        start = time.perf_counter()
        segments, _ = self.model.transcribe(
            audio, beam_size=1, vad_filter=False, without_timestamps=False, **DECODING
        )
        segments = list(segments)  # the generator does the work
        return _from_segments(segments, time.perf_counter() - start)

    def transcribe_batch(self, audios: Sequence[np.ndarray], batch_size: int) -> list[Transcript]:
        """``BatchedInferencePipeline``: each file's VAD chunks (<= 30 s, silence dropped) are
        decoded ``batch_size`` at a time, independently (no previous-text prompt)."""
        from faster_whisper import BatchedInferencePipeline

        pipeline = BatchedInferencePipeline(self.model)
        start = time.perf_counter()
        outputs = []
        for audio in audios:
            segments, _ = pipeline.transcribe(
                audio,
                batch_size=batch_size,
                beam_size=1,
                temperature=0.0,
                without_timestamps=False,
                word_timestamps=False,
                vad_filter=True,
            )
            outputs.append(list(segments))
        wall = time.perf_counter() - start
        return [_from_segments(segments, wall) for segments in outputs]


WHISPER_CPP_KINDS = ("f16", "q8_0")
"""whisper.cpp engine suffix -> the ggml file kind it runs."""


class WhisperCppEngine(Engine):
    """whisper.cpp (``pywhispercpp``) on a ggml file written from the extracted weights
    (:mod:`maxwhisper_lib.weights.ggml`: ``f16`` or ``q8_0``), greedy at temperature 0 with no
    fallback, conditioned on the previous text, the same threads as the other CPU engines."""

    def __init__(self, model: str, device: str, kind: str) -> None:
        try:
            import pywhispercpp  # noqa: F401
        except ImportError as error:
            raise EngineUnavailable(f"pywhispercpp is not installed ({error})") from error
        if resolve_device_name(device) != "cpu":
            raise EngineUnavailable("the pywhispercpp wheel runs whisper.cpp on the CPU only")
        self.model_name, self.kind = model, kind
        self.name = f"whisper.cpp-{kind}"
        self.threads = machine.usable_cores()
        self.model = None
        self.tokenizer = None
        self.language = "en"

    def load(self) -> dict[str, float]:
        from pywhispercpp.model import Model

        from .tokenizer import get_tokenizer
        from .weights import ggml_path, load_weights

        dims = load_weights(self.model_name).dims
        self.tokenizer = get_tokenizer(dims, language="en", task="transcribe")
        self.language = "auto" if dims.is_multilingual else "en"  # as the others: detected
        start = time.perf_counter()
        path = ggml_path(self.model_name, self.kind)
        convert = time.perf_counter() - start
        self.model = Model(
            str(path),
            n_threads=self.threads,
            print_progress=False,
            print_realtime=False,
            redirect_whispercpp_logs_to=None,
        )
        return {"ggml_file": convert}

    def settings(self) -> dict:
        return {"device": "cpu", "weights": f"ggml {self.kind}", "n_threads": self.threads}

    def transcribe(self, audio: np.ndarray) -> Transcript:
        import _pywhispercpp as pw

        start = time.perf_counter()
        self.model.transcribe(
            np.ascontiguousarray(audio, dtype=np.float32),
            temperature=0.0,
            temperature_inc=0.0,
            no_context=False,
            language=self.language,
            greedy={"best_of": 1},
        )
        seconds = time.perf_counter() - start
        ctx = self.model._ctx
        tokens = [
            pw.whisper_full_get_token_id(ctx, i, j)
            for i in range(pw.whisper_full_n_segments(ctx))
            for j in range(pw.whisper_full_n_tokens(ctx, i))
        ]
        eot, first_timestamp = self.tokenizer.eot, self.tokenizer.timestamp_begin
        kept = [t for t in tokens if t < eot or t >= first_timestamp]  # text and timestamps
        text = self.tokenizer.decode([t for t in kept if t < eot])
        return Transcript(text, kept, seconds)


def _from_segments(segments: list, seconds: float) -> Transcript:
    text = "".join(segment.text for segment in segments)
    tokens = [token for segment in segments for token in segment.tokens]
    return Transcript(text, tokens, seconds)


def make_engine(name: str, model: str = "tiny.en", device: str = "cpu", **kwargs) -> Engine:
    """The engine called ``name`` (see :data:`ENGINES`); raises :class:`EngineUnavailable` with
    the reason when it cannot run here. ``kwargs``: ``dtype`` and ``max_model`` for ``max``."""
    if name == "max":
        return MaxEngine(model, device, kwargs.get("dtype", "float32"), kwargs.get("max_model"))
    if name == "max-int8":
        if resolve_device_name(device) != "cpu":
            raise EngineUnavailable("max-int8 is a CPU mode (Mojo int8 kernels)")
        return MaxEngine(model, device, "int8")
    if name == "max-matmul":
        if resolve_device_name(device) != "cpu":
            raise EngineUnavailable("max-matmul compares the CPU decoders; 'max' is it on a GPU")
        return MaxEngine(model, device, kwargs.get("dtype", "float32"), row_kernels=False)
    if name == "openai-whisper":
        return OpenAIWhisperEngine(model, device)
    prefix, _, kind = name.rpartition("-")
    if prefix == "faster-whisper" and kind in FASTER_WHISPER_TYPES:
        return FasterWhisperEngine(model, device, kind)
    if prefix == "whisper.cpp" and kind in WHISPER_CPP_KINDS:
        return WhisperCppEngine(model, device, kind)
    raise BenchmarkError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")


def check_engine_names(names: Sequence[str]) -> list[str]:
    """``names`` (a list or a comma-separated string) without duplicates, in order; raises
    :class:`BenchmarkError` on an unknown one."""
    names = as_list(names)
    unknown = [n for n in names if n not in ENGINES]
    if unknown:
        raise BenchmarkError(
            f"unknown engine(s) {', '.join(map(repr, unknown))}; choose from {', '.join(ENGINES)}"
        )
    if not names:
        raise BenchmarkError("no engines to benchmark")
    return list(dict.fromkeys(names))


# --------------------------------------------------------------------------- audio, scoring


@dataclass
class ClipAudio:
    """A manifest clip decoded once: id, 16 kHz float32 samples, reference text ("" if none)."""

    id: str
    samples: np.ndarray
    reference: str = ""

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def load_clips(
    manifest: str | Path | None = None, clip_ids: Sequence[str] | None = None
) -> list[ClipAudio]:
    """Decode the manifest's clips (all, or ``clip_ids`` in that order) once."""
    clips = load_manifest(manifest)
    clip_ids = as_list(clip_ids)
    if clip_ids:
        by_id = {c.id: c for c in clips}
        missing = [c for c in clip_ids if c not in by_id]
        if missing:
            raise BenchmarkError(f"clip(s) not in the manifest: {', '.join(missing)}")
        clips = [by_id[c] for c in clip_ids]
    if not clips:
        raise BenchmarkError("no clips to benchmark")
    return [_decoded(c) for c in clips]


def _decoded(clip: Clip) -> ClipAudio:
    return ClipAudio(clip.id, load_audio(clip.path), clip.reference if clip.has_reference else "")


def build_long_audio(audios: Sequence[np.ndarray], seconds: float) -> np.ndarray:
    """``seconds`` of audio made by concatenating ``audios`` in turn (repeating as needed)."""
    if seconds <= 0:
        raise BenchmarkError(f"audio length must be positive, got {seconds}")
    pieces = [a for a in audios if len(a)]
    if not pieces:
        raise BenchmarkError("no audio to build a long input from")
    wanted = round(seconds * SAMPLE_RATE)
    repeats = math.ceil(wanted / sum(len(a) for a in pieces))
    return np.concatenate(pieces * repeats)[:wanted].astype(np.float32, copy=False)


def batch_files(
    clips: Sequence[ClipAudio], count: int, max_seconds: float = 30.0
) -> list[ClipAudio]:
    """``count`` files for the batch benchmark: the clips of at most ``max_seconds`` (one
    window each, so a batch of b is b windows; all clips if none is that short), in turn."""
    if not clips:
        raise BenchmarkError("no clips for the batch benchmark")
    short = [c for c in clips if c.seconds <= max_seconds] or list(clips)
    return [short[i % len(short)] for i in range(count)]


def median_index(values: Sequence[float]) -> int:
    """Index of the median value (the lower middle one for an even count)."""
    order = sorted(range(len(values)), key=values.__getitem__)
    return order[(len(values) - 1) // 2]


# --------------------------------------------------------------------------- results


@dataclass
class ClipResult:
    """One engine on one clip: median time over the repeats, what it wrote, how well."""

    engine: str
    clip: str
    audio_seconds: float
    seconds: float
    rtf: float
    tokens: int
    tokens_per_second: float
    wer: float | None
    same_text_as_openai: bool | None
    same_tokens_as_openai: bool | None
    text: str
    seconds_all: list[float] = field(default_factory=list)
    frontend_seconds: float | None = None
    encoder_seconds: float | None = None
    decoding_seconds: float | None = None
    host_seconds: float | None = None


@dataclass
class EngineResult:
    """One engine over all clips (totals), its first call and memory, or why it was skipped."""

    engine: str
    available: bool
    reason: str = ""
    settings: dict = field(default_factory=dict)
    clips: int = 0
    audio_seconds: float = 0.0
    seconds: float = 0.0
    rtf: float = 0.0
    tokens: int = 0
    tokens_per_second: float = 0.0
    wer: float | None = None
    identical_to_openai: str = ""
    load_seconds: float = 0.0
    first_call_seconds: float = 0.0
    compile_seconds: dict = field(default_factory=dict)
    rss_growth_mb: float | None = None
    peak_growth_mb: float | None = None


@dataclass
class ScalingResult:
    engine: str
    length_seconds: float
    seconds: float
    rtf: float
    tokens: int


@dataclass
class BatchResult:
    engine: str
    batch_size: int
    files: int
    audio_seconds: float
    seconds: float
    throughput: float
    """Audio seconds transcribed per wall second."""
    wer: float | None
    encoder_share: float | None = None
    """MAX: the encoder graph's part of the wall time (None for peers)."""


@dataclass
class BenchmarkResult:
    """Everything one run measured; tables come out as DataFrames, files via :meth:`save`."""

    config: dict
    machine: dict
    versions: dict
    engines: list[EngineResult]
    clips: list[ClipResult]
    scaling: list[ScalingResult] = field(default_factory=list)
    batch: list[BatchResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    roofline: dict = field(default_factory=dict)
    """Decoder steps against the memory floor (:func:`maxwhisper_lib.roofline.measure_roofline`)."""

    def engine(self, name: str) -> EngineResult | None:
        return next((e for e in self.engines if e.engine == name and e.available), None)

    def ratios(self) -> list[dict]:
        """MAX's end-to-end speed-up over each other engine (its total / MAX's), vs targets."""
        ours = self.engine("max")
        rows = []
        for other in self.engines:
            if ours is None or other.engine == "max" or not other.available:
                continue
            speedup = other.seconds / ours.seconds if ours.seconds else float("nan")
            target = TARGETS.get(other.engine)
            rows.append(
                {
                    "vs": other.engine,
                    "max_seconds": ours.seconds,
                    "their_seconds": other.seconds,
                    "max_speedup": speedup,
                    "target": target,
                    "verdict": _verdict(speedup, target),
                }
            )
        return rows

    def int8_ratios(self) -> list[dict]:
        """MAX int8's end-to-end speed-up over the quantized peers, vs :data:`INT8_TARGETS`."""
        ours = self.engine("max-int8")
        rows = []
        for name, target in INT8_TARGETS.items():
            other = self.engine(name)
            if ours is None or other is None:
                continue
            speedup = other.seconds / ours.seconds if ours.seconds else float("nan")
            rows.append(
                {
                    "vs": name,
                    "max_int8_seconds": ours.seconds,
                    "their_seconds": other.seconds,
                    "max_int8_speedup": speedup,
                    "target": target,
                    "verdict": _verdict(speedup, target),
                }
            )
        return rows

    def int8_wer_verdict(self) -> str:
        """Whether MAX int8's WER is within :data:`INT8_WER_POINTS` of MAX float32's."""
        ours, exact = self.engine("max-int8"), self.engine("max")
        if ours is None or exact is None or ours.wer is None or exact.wer is None:
            return "not measured"
        points = 100 * (ours.wer - exact.wer)
        sign = "meets" if points <= INT8_WER_POINTS + 1e-9 else "misses"
        return (
            f"{sign}: MAX int8 WER {ours.wer:.2%} vs float32 {exact.wer:.2%} "
            f"({points:+.2f} points, limit +{INT8_WER_POINTS:g})"
        )

    def wer_verdict(self) -> str:
        """Whether MAX's WER is no worse than openai-whisper greedy's."""
        ours, theirs = self.engine("max"), self.engine("openai-whisper")
        if ours is None or theirs is None or ours.wer is None or theirs.wer is None:
            return "not measured"
        sign = "meets" if ours.wer <= theirs.wer + 1e-12 else "misses"
        return f"{sign}: MAX WER {ours.wer:.2%} vs openai-whisper {theirs.wer:.2%}"

    def ratios_table(self) -> pd.DataFrame:
        return pd.DataFrame(
            self.ratios(),
            columns=["vs", "max_seconds", "their_seconds", "max_speedup", "target", "verdict"],
        )

    def summary_table(self) -> pd.DataFrame:
        rows = [asdict(e) for e in self.engines]
        for row in rows:
            row["compile_seconds"] = sum(row["compile_seconds"].values()) or None
            row["settings"] = json.dumps(row["settings"])
        ratios = {r["vs"]: r["max_speedup"] for r in self.ratios()}
        table = pd.DataFrame(rows)
        table["max_speedup_vs"] = table["engine"].map(ratios)
        return table

    def clips_table(self) -> pd.DataFrame:
        rows = [{**asdict(c), "seconds_all": json.dumps(c.seconds_all)} for c in self.clips]
        return pd.DataFrame(rows)

    def speedup_table(self) -> pd.DataFrame:
        """Per clip: each engine's median seconds / MAX's."""
        seconds = self.clips_table().pivot(index="clip", columns="engine", values="seconds")
        if "max" not in seconds:
            return pd.DataFrame()
        return seconds.drop(columns="max").div(seconds["max"], axis=0)

    def breakdown_table(self) -> pd.DataFrame:
        """MAX's median run per clip split into front end / encoder / decoding / host seconds."""
        table = self.clips_table()
        table = table[table["engine"] == "max"].set_index("clip")
        columns = ["frontend_seconds", "encoder_seconds", "decoding_seconds", "host_seconds"]
        return table[columns].rename(columns=lambda c: c.removesuffix("_seconds"))

    def wer_table(self) -> pd.DataFrame:
        table = self.clips_table().dropna(subset=["wer"])
        return table.pivot(index="clip", columns="engine", values="wer")

    def scaling_table(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(s) for s in self.scaling])

    def batch_table(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(b) for b in self.batch])

    def roofline_table(self) -> pd.DataFrame:
        """Per engine and batch size: ms per step, its floor, achieved GB/s."""
        return pd.DataFrame(self.roofline.get("steps", []))

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "ratios": self.ratios(),
            "wer_verdict": self.wer_verdict(),
            "int8_ratios": self.int8_ratios(),
            "int8_wer_verdict": self.int8_wer_verdict(),
        }

    def save(self, folder: str | Path) -> dict[str, Path]:
        """``benchmark.json`` (everything), ``benchmark.csv`` (engine x clip), ``summary.csv``
        (per engine), ``scaling.csv`` and ``batch.csv`` (when measured) into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        files = {"json": folder / "benchmark.json"}
        files["json"].write_text(json.dumps(self.to_dict(), indent=2, default=_jsonable) + "\n")
        tables = {"clips": ("benchmark.csv", self.clips_table())}
        tables["summary"] = ("summary.csv", self.summary_table())
        if self.scaling:
            tables["scaling"] = ("scaling.csv", self.scaling_table())
        if self.batch:
            tables["batch"] = ("batch.csv", self.batch_table())
        if self.roofline:
            tables["roofline"] = ("roofline.csv", self.roofline_table())
        for key, (name, table) in tables.items():
            files[key] = folder / name
            table.to_csv(files[key], index=False)
        return files


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _verdict(speedup: float, target: float | None) -> str:
    if target is None:
        return f"{speedup:.2f}x (no target)"
    if speedup >= target:
        return f"meets: {speedup:.2f}x >= {target:g}x"
    return f"short by {target - speedup:.2f}x: {speedup:.2f}x of {target:g}x"


def load_result(path: str | Path) -> BenchmarkResult:
    """A :class:`BenchmarkResult` back from its ``benchmark.json`` (or the folder holding it)."""
    path = Path(path)
    data = json.loads((path / "benchmark.json" if path.is_dir() else path).read_text())
    return BenchmarkResult(
        config=data["config"],
        machine=data["machine"],
        versions=data["versions"],
        engines=[EngineResult(**e) for e in data["engines"]],
        clips=[ClipResult(**c) for c in data["clips"]],
        scaling=[ScalingResult(**s) for s in data.get("scaling", [])],
        batch=[BatchResult(**b) for b in data.get("batch", [])],
        notes=data.get("notes", []),
        roofline=data.get("roofline", {}),
    )


def default_output_dir() -> Path:
    """The pipeline run's folder when a pipeline is running, else ``reports/runs/benchmark/``
    (git-ignored; kept results are copied into a named folder under ``reports/``)."""
    return reports.run_dir() or paths.reports_dir() / "runs" / "benchmark"


# --------------------------------------------------------------------------- running


def _quiet(_: str) -> None:
    pass


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
    """MAX, and faster-whisper's batched pipeline as its peer (int8 on CPU, fp16 on GPU)."""
    peer = "faster-whisper-fp16" if device == "gpu" else "faster-whisper-int8"
    return [e for e in engines if e.name in ("max", peer)]


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

    ``max_model``: an already built :class:`~maxwhisper_lib.model.MaxWhisper` to reuse.
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
    stepped against the memory floor (:mod:`maxwhisper_lib.roofline`)."""
    from . import roofline
    from .weights import load_weights

    weights = load_weights(model)
    backends = {e.name: e.model for e in engines if isinstance(e, MaxEngine)}
    if any(e.name == "openai-whisper" for e in engines):
        backends.update(roofline.roofline_backends(weights, ["openai-whisper"]))
    mel, prompt = roofline.step_inputs(weights)
    return roofline.measure_roofline(backends, mel, prompt, batch_sizes, log=log)


NOTES = [
    "All engines: greedy, temperature 0 only (no fallback), beam size 1, condition on previous "
    "text, timestamps predicted, no word timestamps, no VAD; same clips, same weights.",
    "seconds: median over the repeats of one engine on one clip (audio decoded beforehand); "
    "rtf: audio seconds / processing seconds (higher is faster); totals: summed audio / summed "
    "medians.",
    "tokens: output tokens (text + timestamps) of the kept segments.",
    "first_call_seconds: model load (MAX: graph compile or cache load; which one is not "
    "knowable from here) + first transcription; rss_growth_mb / peak_growth_mb: this process's "
    "RSS / RSS high-water mark growth over that call (rough: one process, shared allocators).",
    "batch: MAX transcribe_batch (files in lockstep, windows batched across files); "
    "faster-whisper BatchedInferencePipeline (per file, VAD chunks batched, no previous-text "
    "prompt): a throughput peer, not the same computation.",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m maxwhisper_lib.benchmark", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
    parser.add_argument("--dtype", default="float32", help="MAX's dtype (GPU: float16/bfloat16)")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--manifest", default=None)
    parser.add_argument("--clips", default=None, help="comma-separated clip ids (default all)")
    parser.add_argument(
        "--lengths", default=",".join(map(str, DEFAULT_LENGTHS)), help="seconds; '' to skip"
    )
    parser.add_argument(
        "--batch-sizes", default=",".join(map(str, DEFAULT_BATCH_SIZES)), help="'' to skip"
    )
    parser.add_argument("--batch-count", type=int, default=16, help="files in the batch test")
    parser.add_argument(
        "--roofline-batches", default="1,2,4,8,16", help="decoder-step batch sizes; '' to skip"
    )
    parser.add_argument("--output", type=Path, default=None, help="default: reports/runs/benchmark")
    args = parser.parse_args(argv)
    result = run_benchmark(
        model=args.model,
        device=args.device,
        engines=as_list(args.engines),
        repeats=args.repeats,
        manifest=args.manifest,
        clips=as_list(args.clips) or None,
        lengths=[float(x) for x in as_list(args.lengths)],
        batch_sizes=[int(x) for x in as_list(args.batch_sizes)],
        batch_count=args.batch_count,
        dtype=args.dtype,
        roofline_batches=[int(x) for x in as_list(args.roofline_batches)],
    )
    files = result.save(args.output or default_output_dir())
    print(result.ratios_table().to_string(index=False))
    print(result.wer_verdict())
    print(f"written: {', '.join(str(p) for p in files.values())}")
    return 0


def as_list(items: str | Sequence[str] | None) -> list[str]:
    """A list from a sequence or a comma-separated string (how pipeline parameters come)."""
    if isinstance(items, str):
        return [part.strip() for part in items.split(",") if part.strip()]
    return list(items or [])


if __name__ == "__main__":
    raise SystemExit(main())
