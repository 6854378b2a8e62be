"""Where the project's folders are: data, weights, reports (each overridable by environment)."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The checkout holding ``pyproject.toml``, found from the cwd, else the package."""
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for folder in (start, *start.parents):
            if (folder / "pyproject.toml").is_file() and (folder / "maxwhisper_lib").is_dir():
                return folder
    return Path.cwd()


def _folder(variable: str, default: str) -> Path:
    value = os.environ.get(variable)
    return Path(value).expanduser() if value else project_root() / default


def data_dir() -> Path:
    """Speech clips and ``manifest.csv`` (``MAXWHISPER_DATA_DIR``, default ``data/``)."""
    return _folder("MAXWHISPER_DATA_DIR", "data")


def weights_dir() -> Path:
    """Extracted canonical weights, a folder per model (``MAXWHISPER_WEIGHTS_DIR``, ``weights/``)."""
    return _folder("MAXWHISPER_WEIGHTS_DIR", "weights")


def reports_dir() -> Path:
    """Executed notebooks, HTML reports and benchmark results (``MAXWHISPER_REPORTS_DIR``)."""
    return _folder("MAXWHISPER_REPORTS_DIR", "reports")
