"""The whole suite as one run: notebooks 01 -> 04 executed with papermill, rendered to HTML.

``python -m maxwhisper_lib.lab.pipeline`` (the README's main command) writes every executed notebook,
its HTML rendering and an ``index.html`` with the stages' headline figures into a new folder
``reports/run-<time>-<model>-<device>/``. Shared parameters (model, device, manifest, ...) go to
every notebook that declares them. A failing stage stops the run with a message naming it; what
earlier stages produced stays, and earlier runs are never overwritten.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import paths
from ..choices import DEVICE_CHOICES, FLOAT_DTYPES
from .notebook_report import RUN_DIR_VARIABLE

STAGES = (
    ("01", "01_weight_extraction", "Weight extraction"),
    ("02", "02_kernel_checks", "MAX Graph kernel checks"),
    ("03", "03_transcription", "End-to-end transcription"),
    ("04", "04_benchmark", "Benchmarks"),
)


class StageFailed(RuntimeError):
    """A notebook raised; the message names the stage and where its partial output is."""


@dataclass
class StageResult:
    stage: str
    title: str
    notebook: Path
    status: str  # "ok", "failed", "missing"
    seconds: float = 0.0
    html: Path | None = None
    error: str = ""
    headline: dict = field(default_factory=dict)


def notebooks_dir() -> Path:
    return paths.project_root() / "notebooks"


def new_run_dir(reports: Path, model: str, device: str, run_id: str | None = None) -> Path:
    """A fresh folder for this run; refuses to reuse one (earlier runs are never overwritten)."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = run_id or f"run-{stamp}-{Path(model).name}-{device}"
    folder = reports / name
    if folder.exists():
        raise FileExistsError(f"{folder} already exists: pick another --run-id")
    folder.mkdir(parents=True)
    return folder


def declared_parameters(notebook: Path) -> set[str]:
    import papermill

    return set(papermill.inspect_notebook(str(notebook)))


def render_html(executed: Path) -> Path:
    """nbconvert's HTML rendering beside the executed notebook."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
    target = executed.with_suffix(".html")
    target.write_text(body, encoding="utf-8")
    return target


def run_stage(stage: str, name: str, title: str, run_dir: Path, parameters: dict) -> StageResult:
    """Execute one notebook into ``run_dir``; HTML is rendered even when it fails."""
    import papermill

    source = notebooks_dir() / f"{name}.ipynb"
    if not source.is_file():
        return StageResult(stage, title, source, "missing")
    executed = run_dir / f"{name}.ipynb"
    wanted = declared_parameters(source)
    given = {k: v for k, v in parameters.items() if k in wanted}
    start = time.perf_counter()
    result = StageResult(stage, title, executed, "ok")
    try:
        papermill.execute_notebook(
            str(source),
            str(executed),
            parameters=given,
            cwd=str(source.parent),
            kernel_name="python3",
        )
    except Exception as error:  # papermill raises PapermillExecutionError with the cell's error
        result.status, result.error = "failed", _first_line(error)
    result.seconds = time.perf_counter() - start
    if executed.exists():
        result.html = render_html(executed)
    headline = run_dir / f"headline_{stage}.json"
    if headline.exists():
        result.headline = json.loads(headline.read_text())
    return result


def _first_line(error: Exception) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    tail = [line for line in lines if ":" in line and not line.startswith(" ")]
    return (tail[-1] if tail else lines[-1] if lines else type(error).__name__)[:500]


def write_index(run_dir: Path, results: list[StageResult], parameters: dict) -> Path:
    """``index.html``: a link per stage with its status, time and headline figures, plus plots."""
    rows = []
    for r in results:
        link = (
            f'<a href="{r.html.name}">{html.escape(r.title)}</a>'
            if r.html
            else html.escape(r.title)
        )
        figures = "".join(
            f"<li>{html.escape(str(k))}: <b>{html.escape(str(v))}</b></li>"
            for k, v in r.headline.items()
        )
        error = f'<div class="error">{html.escape(r.error)}</div>' if r.error else ""
        rows.append(
            f"<tr><td>{r.stage}</td><td>{link}</td><td class='{r.status}'>{r.status}</td>"
            f"<td>{r.seconds:.0f} s</td><td><ul>{figures}</ul>{error}</td></tr>"
        )
    images = "".join(
        f'<figure><img src="{p.name}" alt="{p.stem}"><figcaption>{p.stem}</figcaption></figure>'
        for p in sorted(run_dir.glob("*.png"))
    )
    params = ", ".join(f"{k}={v!r}" for k, v in parameters.items())
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>MAX-Whisper {run_dir.name}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}td,th{{padding:.4em .8em;
border-bottom:1px solid #ddd;vertical-align:top}}.ok{{color:green}}.failed{{color:#b00;font-weight:bold}}
.missing{{color:#888}}.error{{color:#b00;font-family:monospace}}img{{max-width:100%}}
figure{{display:inline-block;width:48%;margin:.5%}}</style></head><body>
<h1>MAX-Whisper pipeline run <code>{html.escape(run_dir.name)}</code></h1>
<p>Parameters: <code>{html.escape(params)}</code></p>
<table><tr><th>stage</th><th>notebook</th><th>status</th><th>time</th><th>headline</th></tr>
{"".join(rows)}</table>{images}</body></html>"""
    index = run_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def run_pipeline(
    parameters: dict, stages: list[str] | None = None, reports: Path | None = None, run_id=None
) -> tuple[Path, list[StageResult]]:
    """Run the stages in order; raises :class:`StageFailed` at the first failing one."""
    run_dir = new_run_dir(
        reports or paths.reports_dir(), parameters["model"], parameters["device"], run_id
    )
    (run_dir / "parameters.json").write_text(json.dumps(parameters, indent=2) + "\n")
    os.environ[RUN_DIR_VARIABLE] = str(run_dir)
    results: list[StageResult] = []
    for stage, name, title in STAGES:
        if stages and stage not in stages:
            continue
        print(f"[pipeline] stage {stage} · {title}", flush=True)
        result = run_stage(stage, name, title, run_dir, parameters)
        results.append(result)
        write_index(run_dir, results, parameters)
        if result.status == "missing":
            print(
                f"[pipeline] stage {stage}: {result.notebook.name} not found, skipped", flush=True
            )
        elif result.status == "failed":
            raise StageFailed(
                f"stage {stage} ({title}) failed: {result.error}\n"
                f"executed notebook: {result.notebook}\nearlier stages' reports: {run_dir / 'index.html'}"
            )
        else:
            print(f"[pipeline] stage {stage} done in {result.seconds:.0f} s", flush=True)
    return run_dir, results


def parse_parameter(text: str) -> tuple[str, object]:
    """``name=value``; the value is read as JSON when it parses (numbers, true, null, lists)."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected name=value, got {text!r}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m maxwhisper_lib.lab.pipeline", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--model", default="tiny.en", help="named model or weights folder (default tiny.en)"
    )
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    parser.add_argument("--dtype", default="float32", choices=FLOAT_DTYPES)
    parser.add_argument("--manifest", default=None, help="clips to use (default data/manifest.csv)")
    parser.add_argument("--stages", default=None, help="comma-separated subset, e.g. 01,02")
    parser.add_argument("--reports-dir", type=Path, default=None, help="default reports/")
    parser.add_argument("--run-id", default=None, help="folder name under the reports dir")
    parser.add_argument(
        "-p",
        "--param",
        action="append",
        type=parse_parameter,
        default=[],
        help="extra notebook parameter name=value (repeatable)",
    )
    args = parser.parse_args(argv)
    from ..engine.runtime import resolve_device_name

    parameters = {
        "model": args.model,
        "device": resolve_device_name(args.device),
        "dtype": args.dtype,
    }
    if args.manifest:
        parameters["manifest"] = str(Path(args.manifest).resolve())
    parameters.update(dict(args.param))
    stages = args.stages.split(",") if args.stages else None
    try:
        run_dir, _ = run_pipeline(parameters, stages, args.reports_dir, args.run_id)
    except StageFailed as error:
        print(f"[pipeline] {error}", file=sys.stderr)
        return 1
    except FileExistsError as error:
        print(f"[pipeline] {error}", file=sys.stderr)
        return 2
    print(f"[pipeline] done: {run_dir / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
