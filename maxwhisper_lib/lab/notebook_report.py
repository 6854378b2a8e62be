"""What a notebook hands the pipeline's report: headline figures and saved plots.

The pipeline sets ``MAXWHISPER_RUN_DIR`` for the notebooks it executes; outside a pipeline run
(JupyterLab, nbval) these functions do nothing, so notebooks call them unconditionally.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

RUN_DIR_VARIABLE = "MAXWHISPER_RUN_DIR"


def run_dir() -> Path | None:
    """The pipeline run's folder, when a pipeline is running this notebook."""
    value = os.environ.get(RUN_DIR_VARIABLE)
    return Path(value) if value else None


def record_headline(stage: str, figures: dict) -> Path | None:
    """Store ``figures`` (a flat JSON-able dict: label -> value) as ``stage``'s headline."""
    folder = run_dir()
    if folder is None:
        return None
    path = folder / f"headline_{stage}.json"
    path.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return path


def save_figure(fig, name: str) -> Path | None:
    """Save a matplotlib figure as ``<run dir>/<name>.png`` for the report's index."""
    folder = run_dir()
    if folder is None:
        return None
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path
