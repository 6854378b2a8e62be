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

``python -m maxwhisper_lib.lab.benchmark --help`` runs it from the command line.

Modules: ``engines`` (the peers behind one interface), ``clips`` (the audio), ``runs`` (the
measurement loops, :func:`run_benchmark`), ``results`` (what was measured: tables, verdicts,
files); ``__main__`` the command line.
"""

from ...decoding.text import word_error_rate
from .clips import ClipAudio, batch_files, build_long_audio, load_clips, long_reference
from .engines import (
    DECODING,
    DECODING_GRAPHS,
    ENGINES,
    BenchmarkError,
    Engine,
    EngineUnavailable,
    Transcript,
    as_list,
    check_engine_names,
    make_engine,
)
from .results import (
    INT8_TARGETS,
    INT8_WER_POINTS,
    MODE_TARGETS,
    TARGETS,
    BatchResult,
    BenchmarkResult,
    ClipResult,
    EngineResult,
    ScalingResult,
    _verdict,
    default_output_dir,
    load_result,
    median_index,
)
from .runs import DEFAULT_BATCH_SIZES, DEFAULT_LENGTHS, run_benchmark

__all__ = [
    "DECODING",
    "DECODING_GRAPHS",
    "DEFAULT_BATCH_SIZES",
    "DEFAULT_LENGTHS",
    "ENGINES",
    "INT8_TARGETS",
    "INT8_WER_POINTS",
    "MODE_TARGETS",
    "TARGETS",
    "BatchResult",
    "BenchmarkError",
    "BenchmarkResult",
    "ClipAudio",
    "ClipResult",
    "Engine",
    "EngineResult",
    "EngineUnavailable",
    "ScalingResult",
    "Transcript",
    "_verdict",
    "as_list",
    "batch_files",
    "build_long_audio",
    "check_engine_names",
    "default_output_dir",
    "load_clips",
    "load_result",
    "long_reference",
    "make_engine",
    "median_index",
    "run_benchmark",
    "word_error_rate",
]
