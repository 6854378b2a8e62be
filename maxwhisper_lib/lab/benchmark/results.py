"""What a benchmark run measured: per clip, per engine, scaling, batches and decoder steps; the
tables and plots' inputs, the verdicts against the targets, and the JSON/CSV files.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ... import paths
from .. import notebook_report as reports

TARGETS = {
    "faster-whisper-fp32": 1.5,
    "openai-whisper": 2.5,
    "faster-whisper-int8": 1.0,
}
"""MAX's end-to-end speed-up the issues ask for, per peer."""

MODE_TARGETS = {"max-host-loop": 1.05}
"""MAX float32's speed-up the issues ask for over another mode of MAX (``max-host-loop``: the
device loop over the host's, on the CPU, issue 35)."""


INT8_TARGETS = {"faster-whisper-int8": 1.5, "whisper.cpp-f16": 1.0, "whisper.cpp-q8_0": 1.0}
"""MAX int8's end-to-end speed-up the int8 issue asks for, per quantized peer."""


INT8_WER_POINTS = 0.5
"""MAX int8's WER may exceed MAX float32's by this many points (absolute) at most."""


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
    """Decoder steps against the memory floor (:func:`maxwhisper_lib.lab.roofline.measure_roofline`)."""

    def engine(self, name: str) -> EngineResult | None:
        return next((e for e in self.engines if e.engine == name and e.available), None)

    def _ratio_rows(
        self, ours: str, others: Iterable[str], targets: Mapping[str, float], columns: Sequence[str]
    ) -> list[dict]:
        """Per available engine of ``others``: ``columns`` = its name, ``ours``'s total seconds,
        its own, its seconds over ours (above 1: ``ours`` is faster), the target, the verdict."""
        base = self.engine(ours)
        rows = []
        for name in others:
            other = self.engine(name)
            if base is None or other is None:
                continue
            ratio = other.seconds / base.seconds if base.seconds else float("nan")
            target = targets.get(name)
            values = (name, base.seconds, other.seconds, ratio, target, _verdict(ratio, target))
            rows.append(dict(zip(columns, values, strict=True)))
        return rows

    def ratios(self) -> list[dict]:
        """MAX's end-to-end speed-up over each peer (its total / MAX's), vs targets; MAX's own
        modes (``max-*``) are :meth:`modes`."""
        peers = [e.engine for e in self.engines if not e.engine.startswith("max")]
        columns = ("vs", "max_seconds", "their_seconds", "max_speedup", "target", "verdict")
        return self._ratio_rows("max", peers, TARGETS, columns)

    def modes(self) -> list[dict]:
        """MAX's other modes beside MAX float32 (``max``): each one's total seconds over
        float32's (below 1: that mode is faster), vs :data:`MODE_TARGETS`."""
        modes = [e.engine for e in self.engines if e.engine.startswith("max-")]
        columns = (
            "mode",
            "float32_seconds",
            "seconds",
            "seconds_over_float32",
            "target",
            "verdict",
        )
        return self._ratio_rows("max", modes, MODE_TARGETS, columns)

    def int8_ratios(self) -> list[dict]:
        """MAX int8's end-to-end speed-up over the quantized peers, vs :data:`INT8_TARGETS`."""
        columns = (
            "vs",
            "max_int8_seconds",
            "their_seconds",
            "max_int8_speedup",
            "target",
            "verdict",
        )
        return self._ratio_rows("max-int8", INT8_TARGETS, INT8_TARGETS, columns)

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

    def modes_table(self) -> pd.DataFrame:
        return pd.DataFrame(
            self.modes(),
            columns=[
                "mode",
                "seconds",
                "float32_seconds",
                "seconds_over_float32",
                "target",
                "verdict",
            ],
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
            "modes": self.modes(),
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
