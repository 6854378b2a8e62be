"""Peer engines behind one interface: MAX-Whisper, openai-whisper (PyTorch), faster-whisper
(CTranslate2) and whisper.cpp (ggml), each loaded from the same extracted weights, and the
decoding options every engine gets.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO

import numpy as np

from ...engine import machine
from ...engine.runtime import resolve_device_name
from ...errors import MaxWhisperError

ENGINES = (
    "max",
    "max-int8",
    "max-matmul",
    "max-host-loop",
    "openai-whisper",
    "faster-whisper-int8",
    "faster-whisper-fp32",
    "faster-whisper-fp16",
    "whisper.cpp-f16",
    "whisper.cpp-q8_0",
)


DECODING = {"temperature": 0.0, "condition_on_previous_text": True, "word_timestamps": False}
"""Decoding options every engine gets (faster-whisper also beam_size=1, no VAD)."""


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


DECODING_GRAPHS = ("cross_kv", "decoder_step", "decode_start", "decode_step", "reorder")


class MaxEngine(Engine):
    """MaxWhisper + this package's ``transcribe`` (an already built model can be passed in).

    ``max``: the product (on the CPU, the decoder's Mojo row kernels over the checkpoint's
    float16 weights); ``max-matmul`` (``row_kernels=False``): the same graphs with MAX's own
    float32 matmuls in the decoder, the design before the row kernels, for comparison;
    ``max-host-loop`` (``device_loop=False``): greedy tokens chosen on the host from each step's
    logits, the design before the device loop, for comparison.
    """

    def __init__(
        self,
        model: str,
        device: str,
        dtype: str = "float32",
        max_model=None,
        row_kernels: bool | None = None,
        device_loop: bool = True,
    ) -> None:
        self.model_name, self.device, self.dtype = model, device, dtype
        self.row_kernels = row_kernels
        self.device_loop = device_loop
        self.name = "max-matmul" if row_kernels is False else "max"
        if dtype == "int8":
            self.name = "max-int8"
        if not device_loop:
            self.name = "max-host-loop"
        self.model = max_model

    def load(self) -> dict[str, float]:
        from ...checkpoints import load_weights
        from ...engine import compiled
        from ...engine.model import LOG_MEL_PIECE, MaxWhisper

        if self.model is None:  # timed at its best: a build for this CPU where it may be faster
            self.model = MaxWhisper(
                load_weights(self.model_name),
                self.device,
                self.dtype,
                self.row_kernels,
                device_loop=self.device_loop,
                shipped_build=not compiled.native_may_be_faster(),
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
            decoder = (
                "Mojo int8 kernels (per-channel int8 weights, VNNI or AVX2), encoder and decoder"
            )
        return {
            "device": self.device,
            "dtype": self.dtype,
            "graphs": "MAX Graph",
            "decoder": decoder,
            "greedy tokens": "chosen on the device" if self.device_loop else "chosen on the host",
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
        from ...decoding.transcribe import transcribe

        (result,), parts = self._run(lambda: [transcribe(self.model, audio, **DECODING)])
        return _from_whisper_result(result, parts.pop("wall"), parts)

    def transcribe_batch(self, audios: Sequence[np.ndarray], batch_size: int) -> list[Transcript]:
        from ...decoding.transcribe import transcribe_batch

        results, parts = self._run(
            lambda: transcribe_batch(self.model, list(audios), batch_size=batch_size, **DECODING)
        )
        wall = parts.pop("wall")
        return [_from_whisper_result(r, wall, parts) for r in results]


def _from_whisper_result(result: dict, seconds: float, parts: dict | None = None) -> Transcript:
    from ...decoding.transcribe import transcript_tokens

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
        from ...checkpoints import checkpoint_path
        from ...decoding.reference import load_openai_whisper

        self.model = load_openai_whisper(checkpoint_path(self.model_name), self.torch_device)
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
        from ...checkpoints import ct2_path

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


@contextlib.contextmanager
def c_stderr_kept() -> Iterator[IO[str]]:
    """File descriptor 2 (where C libraries such as whisper.cpp log) into a temporary file, read
    back from the yielded stream: whisper.cpp's ~90-line loader log stays out of notebooks
    (pywhispercpp's own redirect falls back to Python's ``sys.stderr`` in Jupyter, past which
    C writes go)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile("w+") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield log
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            log.seek(0)


class WhisperCppEngine(Engine):
    """whisper.cpp (``pywhispercpp``) on a ggml file written from the extracted weights
    (:mod:`maxwhisper_lib.checkpoints.ggml`: ``f16`` or ``q8_0``), greedy at temperature 0 with no
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

        from ...checkpoints import ggml_path, load_weights
        from ...decoding.tokenizer import get_tokenizer

        dims = load_weights(self.model_name).dims
        self.tokenizer = get_tokenizer(dims, language="en", task="transcribe")
        self.language = "auto" if dims.is_multilingual else "en"  # as the others: detected
        start = time.perf_counter()
        path = ggml_path(self.model_name, self.kind)
        convert = time.perf_counter() - start
        with c_stderr_kept() as log:
            try:
                self.model = Model(
                    str(path),
                    n_threads=self.threads,
                    print_progress=False,
                    print_realtime=False,
                    redirect_whispercpp_logs_to=False,  # c_stderr_kept does it, in Jupyter too
                )
            except Exception as error:
                log.seek(0)
                message = f"whisper.cpp could not load {path}: {error}; its log: {log.read()}"
                raise EngineUnavailable(message[-3000:]) from error
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
    if name == "max-host-loop":
        return MaxEngine(model, device, kwargs.get("dtype", "float32"), device_loop=False)
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


def as_list(items: str | Sequence[str] | None) -> list[str]:
    """A list from a sequence or a comma-separated string (how pipeline parameters come)."""
    if isinstance(items, str):
        return [part.strip() for part in items.split(",") if part.strip()]
    return list(items or [])
