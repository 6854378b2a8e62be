"""Corpus transcription on Ray: many files, one or many machines, resumable.

``python -m maxwhisper_lib.corpus INPUT --output_dir DIR`` (or ``maxwhisper-corpus``); see
:mod:`.cli`. The parts: :mod:`.inputs` (what to transcribe), :mod:`.actors` (the Ray Data
stages), :mod:`.run` (the pipeline and its summary), :mod:`.store` (results and resuming).
"""

from .actors import ModelSettings, Transcriber
from .inputs import CorpusInputError, CorpusItem, collect_inputs
from .ledger import RESULTS_FILE, SUMMARY_FILE, ResultStore
from .run import CorpusRunError, CorpusSummary, run_corpus

__all__ = [
    "RESULTS_FILE",
    "SUMMARY_FILE",
    "CorpusInputError",
    "CorpusItem",
    "CorpusRunError",
    "CorpusSummary",
    "ModelSettings",
    "ResultStore",
    "Transcriber",
    "collect_inputs",
    "run_corpus",
]
