"""openai-whisper's torch-free parts, reached without importing its package.

``import whisper.tokenizer`` (or any ``whisper.*``) first runs ``whisper/__init__.py``, which
imports torch (~2.5 s and some hundreds of MB) although the tokenizer, the text utilities and
the assets need none of it. The MAX path takes them from here instead (as mlx_whisper's runtime
does, but reading openai-whisper's own files, so nothing is copied): a module is whisper's own
when that is already imported, otherwise its file loaded alone under a private name. The
reference, the checks and the peers keep importing openai-whisper itself.
"""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

TORCH_FREE = ("tokenizer", "utils")
"""whisper's modules that import neither torch nor another whisper module."""


@cache
def package_dir() -> Path:
    """openai-whisper's installed folder (found without executing its ``__init__``)."""
    spec = importlib.util.find_spec("whisper")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("openai-whisper is not installed (pip install openai-whisper)")
    return Path(next(iter(spec.submodule_search_locations)))


def asset(name: str) -> Path:
    """A file of openai-whisper's ``assets/`` (mel filters, tiktoken vocabularies)."""
    return package_dir() / "assets" / name


def module(name: str) -> ModuleType:
    """openai-whisper's torch-free module ``name`` (one of :data:`TORCH_FREE`)."""
    if name not in TORCH_FREE:
        raise ValueError(f"whisper.{name} is not one of the torch-free modules {TORCH_FREE}")
    loaded = sys.modules.get(f"whisper.{name}")
    if loaded is not None:
        return loaded
    private = f"maxwhisper_lib._whisper_{name}"
    if private not in sys.modules:
        spec = importlib.util.spec_from_file_location(private, package_dir() / f"{name}.py")
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[private] = loaded
        try:
            spec.loader.exec_module(loaded)
        except BaseException:
            del sys.modules[private]
            raise
    return sys.modules[private]
