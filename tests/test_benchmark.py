"""The benchmark: a real run on jfk (MAX, openai-whisper, faster-whisper), scoring, files, helpers."""

from __future__ import annotations

import importlib.util
import json
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

from maxwhisper_lib.audio.load import SAMPLE_RATE
from maxwhisper_lib.engine.machine import machine_info, package_versions, peak_rss_mb, rss_mb
from maxwhisper_lib.lab import benchmark as bench

matplotlib.use("Agg")

HAS_FASTER_WHISPER = importlib.util.find_spec("faster_whisper") is not None
ENGINES = ["max", "openai-whisper", "faster-whisper-fp16", "whisper.cpp-f16"] + (
    ["faster-whisper-int8"] if HAS_FASTER_WHISPER else []
)


@pytest.fixture(scope="module")
def result(max_tiny) -> bench.BenchmarkResult:
    """One repeat on jfk, 5 s scaling, batches of 1 and 2 (two copies of jfk), on the CPU."""
    return bench.run_benchmark(
        "tiny.en",
        device="cpu",
        engines=ENGINES,
        repeats=1,
        clips=["jfk"],
        lengths=[5],
        batch_sizes=[1, 2],
        batch_count=2,
        max_model=max_tiny,
        log=None,
        roofline_batches=[1, 2],
    )


@pytest.mark.slow
def test_result_structure(result):
    ran = [e.engine for e in result.engines if e.available]
    assert ran == [e for e in ENGINES if e != "faster-whisper-fp16"]
    (fp16,) = [e for e in result.engines if not e.available]
    assert fp16.engine == "faster-whisper-fp16" and "CUDA" in fp16.reason
    assert {(r.engine, r.clip) for r in result.clips} == {(e, "jfk") for e in ran}
    for row in result.clips:
        assert row.audio_seconds == pytest.approx(11.0, abs=0.01)
        assert row.rtf == pytest.approx(row.audio_seconds / row.seconds)
        assert row.tokens > 20 and row.tokens_per_second == pytest.approx(row.tokens / row.seconds)
        assert row.seconds_all and row.wer is not None
    for engine in result.engines:
        if engine.available:
            assert engine.first_call_seconds >= engine.load_seconds > 0
            assert engine.rtf == pytest.approx(engine.audio_seconds / engine.seconds)
    assert set(result.engine("max").compile_seconds) >= {"encoder", "decoder_step", "log_mel"}
    assert result.machine["usable_cores"] >= 1 and result.versions["max"]
    assert result.config["decoding"]["temperature"] == 0.0


@pytest.mark.slow
def test_max_split_adds_up(result):
    (row,) = [r for r in result.clips if r.engine == "max"]
    parts = [row.frontend_seconds, row.encoder_seconds, row.decoding_seconds, row.host_seconds]
    assert all(p is not None and p >= 0 for p in parts[:3])
    assert sum(parts) == pytest.approx(row.seconds)
    assert row.decoding_seconds > 0 and row.encoder_seconds > 0
    assert list(result.breakdown_table().columns) == ["frontend", "encoder", "decoding", "host"]


@pytest.mark.slow
def test_max_transcript_identical_to_openai_whisper(result):
    rows = {r.engine: r for r in result.clips}
    assert rows["max"].same_tokens_as_openai and rows["max"].same_text_as_openai
    assert rows["max"].text == rows["openai-whisper"].text
    assert rows["max"].wer == rows["openai-whisper"].wer == 0.0
    assert result.wer_verdict().startswith("meets")
    assert result.engine("max").identical_to_openai == "tokens 1/1, text 1/1"


@pytest.mark.slow
def test_ratios(result):
    ratios = {r["vs"]: r for r in result.ratios()}
    assert "max" not in ratios and "faster-whisper-fp16" not in ratios
    row = ratios["openai-whisper"]
    assert row["max_speedup"] == pytest.approx(row["their_seconds"] / row["max_seconds"])
    assert row["target"] == bench.TARGETS["openai-whisper"] == 2.5
    assert row["verdict"].startswith(("meets", "short by"))
    speedups = result.speedup_table()
    assert speedups.loc["jfk", "openai-whisper"] == pytest.approx(row["max_speedup"])


@pytest.mark.slow
def test_roofline_sets_decoder_steps_against_the_floor(result, max_tiny):
    from maxwhisper_lib.lab.roofline import decoder_step_bytes

    table = result.roofline_table()
    assert set(zip(table["engine"], table["batch"], strict=True)) == {
        (engine, batch) for engine in ("max", "openai-whisper") for batch in (1, 2)
    }
    probe = result.roofline["probe_gb_per_s"]
    assert probe == max(r["gb_per_s"] for r in result.roofline["probe"]) > 0
    cached = result.roofline["cached_positions"]
    assert 3 < cached < max_tiny.dims.n_text_ctx  # the prompt plus half the timed steps
    for row in table.itertuples():
        expected = decoder_step_bytes(max_tiny, row.batch, windows=1, cached=cached)["total"]
        assert row.bytes_per_step == expected
        assert row.floor_ms == pytest.approx(expected / (probe * 1e9) * 1e3)
        assert row.ms_per_token == pytest.approx(row.ms_per_step / row.batch)
        assert row.floor_ratio == pytest.approx(row.ms_per_step / row.floor_ms)
    graphs = {g["graph"] for g in result.roofline["graph_bytes"]}
    assert graphs == {"encoder", "cross_kv", "decoder_step"}


@pytest.mark.slow
def test_scaling_and_batch(result):
    scaling = result.scaling_table()
    assert set(scaling["length_seconds"]) == {5}
    assert set(scaling["engine"]) == {e.engine for e in result.engines if e.available}
    batch = result.batch_table()
    expected = {"max"} | ({"faster-whisper-int8"} if HAS_FASTER_WHISPER else set())
    assert set(batch["engine"]) == expected and set(batch["batch_size"]) == {1, 2}
    assert (batch["files"] == 2).all()
    assert np.allclose(batch["throughput"], batch["audio_seconds"] / batch["seconds"])
    assert (batch[batch["engine"] == "max"]["wer"] == 0.0).all()
    ours = batch[batch["engine"] == "max"]["encoder_share"]
    assert ((ours > 0) & (ours < 1)).all()
    assert batch[batch["engine"] != "max"]["encoder_share"].isna().all()


@pytest.mark.slow
def test_files_written_and_loadable(result, tmp_path):
    files = result.save(tmp_path / "out")
    assert {p.name for p in files.values()} == {
        "benchmark.json",
        "benchmark.csv",
        "summary.csv",
        "scaling.csv",
        "batch.csv",
        "roofline.csv",
    }
    data = json.loads(files["json"].read_text())
    assert data["ratios"] == json.loads(json.dumps(result.ratios()))
    assert data["machine"]["cpu"] and data["versions"]["torch"]
    clips = pd.read_csv(files["clips"])
    assert len(clips) == len(result.clips) and clips["text"].str.len().min() > 50
    summary = pd.read_csv(files["summary"])
    assert list(summary["engine"]) == [e.engine for e in result.engines]
    again = bench.load_result(files["json"].parent)
    assert again.ratios() == result.ratios() and again.clips == result.clips
    assert again.roofline_table().equals(result.roofline_table())


@pytest.mark.slow
def test_plots(result):
    from maxwhisper_lib.lab import plots

    figures = [
        plots.plot_rtf(result.summary_table(), bench.TARGETS),
        plots.plot_time_vs_length(result.scaling_table()),
        plots.plot_time_breakdown(result.breakdown_table()),
        plots.plot_batch_throughput(result.batch_table()),
        plots.plot_roofline(result.roofline_table(), result.roofline["probe_gb_per_s"]),
    ]
    assert all(fig.axes for fig in figures)


@pytest.mark.slow
def test_size_row_measures_three_engines_that_agree():
    """One row of the size benchmark (tiny.en): MAX, PyTorch and CTranslate2 timed, the
    CTranslate2 encoder on the folder the suite writes within 1e-4 of PyTorch, as MAX's is."""
    from maxwhisper_lib.lab.benchmark.sizes import measure_size

    row = measure_size("tiny.en", steps=4, repeats=1, encoder_rounds=1)
    for engine in ("max", "torch", "ct2"):
        assert row[f"{engine}_encoder_ms"] > 0 and row[f"{engine}_step_ms"] > 0
    assert row["max_encoder_alternating_ms"] > 0 and row["ct2_encoder_alternating_ms"] > 0
    assert row["encoder_rel_error"] < 1e-4 and row["ct2_encoder_rel_error"] < 1e-4
    assert row["logits_rel_error"] < 1e-4


@pytest.mark.slow
def test_encoder_row_times_both_modes_and_both_ct2_types():
    """The int8 size table's row (tiny.en): MAX float32 and int8 and CTranslate2 int8 and
    float32 each timed, the speed-ups their ratios."""
    from maxwhisper_lib.lab.benchmark.sizes import measure_encoders

    row = measure_encoders("tiny.en", repeats=1)
    times = {k: v for k, v in row.items() if k.endswith("_encoder_ms")}
    assert sorted(times) == sorted(
        f"{e}_encoder_ms" for e in ("max_float32", "max_int8", "ct2_int8", "ct2_float32")
    )
    assert all(v > 0 for v in times.values())
    assert (
        row["int8_speedup_vs_ct2_int8"]
        == times["ct2_int8_encoder_ms"] / times["max_int8_encoder_ms"]
    )
    assert row["weights"] == "real" and row["layers"] == 4


def test_encoder_floor_plot_shows_windows_floors_and_rates():
    """Notebook 04's encoder-floor figure from the committed probe: both modes' windows and the
    three floors on the left, every measured rate on the right."""
    import json

    from maxwhisper_lib.lab import plots
    from maxwhisper_lib.paths import reports_dir

    floor = json.loads(
        (reports_dir() / "cpu-2core-tiny.en-int8-encoder" / "encoder_floor.json").read_text()
    )
    left, right = plots.plot_encoder_floor(floor).axes
    assert len(left.patches) == 2 + len(floor["floor_ms"]) == 5
    assert [p.get_width() for p in left.patches[:2]] == [
        floor["window_ms"]["float32"],
        floor["window_ms"]["int8"],
    ]
    assert len(right.patches) == len(floor["rates_gops"]) == 4


def test_size_plot_draws_the_engines_measured():
    """The committed size report plots MAX, PyTorch and CTranslate2 against parameter count
    (per engine a line through the standard sizes and the variants' markers); a table without
    CTranslate2's columns (older reports) plots the other two."""
    from maxwhisper_lib.lab import plots
    from maxwhisper_lib.paths import reports_dir

    table = pd.read_csv(reports_dir() / "cpu-2core-sizes" / "sizes.csv")
    figure = plots.plot_sizes(table)
    assert [len(ax.lines) for ax in figure.axes] == [6, 6]
    standard = figure.axes[0].lines[0]
    assert len(standard.get_xdata()) == (~table["model"].str.contains("turbo|distil")).sum() == 5
    assert figure.axes[0].get_xscale() == figure.axes[0].get_yscale() == "log"
    older = table.drop(columns=[c for c in table if c.startswith("ct2_")])
    assert [len(ax.lines) for ax in plots.plot_sizes(older).axes] == [4, 4]


def test_word_error_rate_handmade():
    # case and punctuation are normalised away; "a" -> "the" is one substitution in six words
    assert bench.word_error_rate(
        ["Hello world, this is a test."], ["hello world this is the test"]
    ) == (pytest.approx(1 / 6))
    assert bench.word_error_rate(["Mr. Smith paid ten dollars."], ["mister smith paid $10"]) == 0.0
    # corpus WER: total edits over total reference words, not the mean of the clips' WERs
    wer = bench.word_error_rate(["red fox", "blue cats eat fish"], ["red", "blue cats eat fish"])
    assert wer == pytest.approx(1 / 6)
    with pytest.raises(ValueError):
        bench.word_error_rate(["a b"], [])


def test_unknown_engine_is_a_clear_error():
    with pytest.raises(bench.BenchmarkError, match=r"unknown engine.*'whisper-cpp'.*max"):
        bench.run_benchmark(engines=["max", "whisper-cpp"], log=None)
    with pytest.raises(bench.BenchmarkError, match="unknown engine 'faster-whisper-int4'"):
        bench.make_engine("faster-whisper-int4")
    with pytest.raises(bench.BenchmarkError, match="no engines"):
        bench.check_engine_names([])
    assert bench.check_engine_names("max, openai-whisper,max") == ["max", "openai-whisper"]


def test_unavailable_engines_say_why():
    with pytest.raises(bench.EngineUnavailable, match="CUDA"):
        bench.make_engine("faster-whisper-fp16", device="cpu")


@pytest.mark.parametrize("seconds", [0.5, 3, 7.25])
def test_build_long_audio_has_requested_length(seconds):
    pieces = [np.full(SAMPLE_RATE, 0.1, np.float32), np.full(SAMPLE_RATE // 2, -0.2, np.float32)]
    audio = bench.build_long_audio(pieces, seconds)
    assert audio.dtype == np.float32 and len(audio) == round(seconds * SAMPLE_RATE)
    # the pieces follow each other in turn: 1 s of 0.1, 0.5 s of -0.2, 1 s of 0.1, ...
    assert audio[0] == np.float32(0.1)
    if seconds > 1.5:
        assert audio[SAMPLE_RATE] == np.float32(-0.2) and audio[3 * SAMPLE_RATE // 2] == np.float32(
            0.1
        )


def test_build_long_audio_errors():
    with pytest.raises(bench.BenchmarkError, match="positive"):
        bench.build_long_audio([np.zeros(10, np.float32)], 0)
    with pytest.raises(bench.BenchmarkError, match="no audio"):
        bench.build_long_audio([np.zeros(0, np.float32)], 1)


def test_batch_files_prefers_short_clips():
    clips = [
        bench.ClipAudio("long", np.zeros(40 * SAMPLE_RATE, np.float32)),
        bench.ClipAudio("a", np.zeros(SAMPLE_RATE, np.float32)),
        bench.ClipAudio("b", np.zeros(2 * SAMPLE_RATE, np.float32)),
    ]
    assert [c.id for c in bench.batch_files(clips, 5)] == ["a", "b", "a", "b", "a"]
    assert [c.id for c in bench.batch_files(clips[:1], 2)] == ["long", "long"]


def test_load_clips_selects_in_order():
    clips = bench.load_clips(clip_ids="librispeech-1089-134686-0001, jfk")
    assert [c.id for c in clips] == ["librispeech-1089-134686-0001", "jfk"]
    assert clips[1].seconds == pytest.approx(11.0, abs=0.01) and clips[1].reference
    with pytest.raises(bench.BenchmarkError, match="nope"):
        bench.load_clips(clip_ids=["nope"])


def test_median_index_and_verdict():
    assert bench.median_index([3.0, 1.0, 2.0]) == 2
    assert bench.median_index([4.0, 1.0, 3.0, 2.0]) == 3  # lower middle of an even count
    assert bench._verdict(1.62, 1.5) == "meets: 1.62x >= 1.5x"
    assert bench._verdict(0.5, 2.0) == "short by 1.50x: 0.50x of 2x"


def test_machine_info():
    info = machine_info()
    assert info["usable_cores"] >= 1 and info["cpu"] and len(info["load_average"]) == 3
    assert package_versions(("numpy", "no-such-package")) == {
        "numpy": np.__version__,
        "no-such-package": None,
    }
    assert 0 < rss_mb() <= peak_rss_mb() + 1 and not math.isnan(rss_mb())


def test_max_modes_sit_beside_max_not_among_its_peers():
    """MAX int8 and the host loop are modes of MAX: a table of their own (seconds over MAX
    float32's), not rows of the peers' table that MAX float32 would 'lose' to."""
    engines = [
        bench.EngineResult("max", True, seconds=10.0),
        bench.EngineResult("max-int8", True, seconds=7.0),
        bench.EngineResult("max-host-loop", True, seconds=10.2),
        bench.EngineResult("openai-whisper", True, seconds=30.0),
        bench.EngineResult("whisper.cpp-f16", False, reason="not installed"),
    ]
    result = bench.BenchmarkResult({}, {}, {}, engines, [])
    assert [r["vs"] for r in result.ratios()] == ["openai-whisper"]
    modes = result.modes_table().set_index("mode")
    assert list(modes.index) == ["max-int8", "max-host-loop"]
    assert modes.loc["max-int8", "seconds_over_float32"] == pytest.approx(0.7)
    assert modes.loc["max-int8", "verdict"] == "0.70x (no target)"
    assert modes.loc["max-host-loop", "verdict"] == "short by 0.03x: 1.02x of 1.05x"


@pytest.mark.slow
def test_device_size_rows_agree_and_time_every_batch(tmp_path):
    """The GPU size benchmark's CPU form on tiny.en: MAX, PyTorch and CTranslate2 each checked
    against PyTorch float32 and timed at every encoder and decoder batch; the rows and speed-ups
    written as they come; a deadline already passed measures nothing and says so."""
    from maxwhisper_lib.lab.benchmark.gpu_sizes import Plan, run

    plan = Plan("cpu", ("float32",), encoder_batches=(1, 2), decoder_batches=(1, 3), steps=3)
    result = run(["tiny.en"], plan, tmp_path, deadline=None)
    rows = {row["engine"]: row for row in result["rows"]}
    assert sorted(rows) == ["ctranslate2", "max", "pytorch"] and not result["skipped"]
    for row in rows.values():
        assert row["agrees"] and row["encoder_rel_error"] < 1e-4
        assert all(row[f"{p}_ms_b{b}"] > 0 for p, b in [("encoder", 1), ("encoder", 2)])
        assert all(row[f"step_ms_b{b}"] > 0 for b in (1, 3))
    assert rows["max"]["logits_rel_error"] < 1e-4
    written = pd.read_csv(tmp_path / "sizes.csv")
    assert list(written["engine"]) == ["max", "pytorch", "ctranslate2"]
    speedups = pd.read_csv(tmp_path / "speedups.csv")
    assert speedups.loc[0, "step_ms_b3_vs_pytorch"] == pytest.approx(
        rows["pytorch"]["step_ms_b3"] / rows["max"]["step_ms_b3"]
    )
    late = run(["tiny.en", "base"], plan, None, deadline=-1.0)
    assert late == {"rows": [], "skipped": ["tiny.en", "base"]}


@pytest.mark.slow
def test_batch_throughput_runs_both_engines_on_the_same_windows():
    """MAX's transcribe_batch and faster-whisper's batched pipeline over the same two files
    (tiny.en, real weights, greedy): each times the files and generates about as many tokens."""
    from maxwhisper_lib.lab.benchmark.batch_throughput import (
        run_faster_whisper,
        run_max,
        speech_files,
    )
    from maxwhisper_lib.lab.benchmark.sizes import size_weights

    weights = size_weights("tiny.en")
    files = speech_files(2, 12.0)
    assert [len(f) for f in files] == [12 * SAMPLE_RATE] * 2
    ours = run_max(weights, files, 2, "cpu", "float32")
    theirs = run_faster_whisper("tiny.en", weights, files, 2, "cpu", "float32")
    assert ours["seconds"] > 0 and theirs["seconds"] > 0
    assert 0.8 < ours["tokens"] / theirs["tokens"] < 1.25


def test_a_random_sized_ct2_folder_has_what_faster_whisper_reads(tmp_path):
    """Random weights at a multilingual size: the CTranslate2 folder carries a tokenizer with the
    special tokens at our tokenizer's ids and the suppressions faster-whisper's generate reads."""
    from tokenizers import Tokenizer

    from maxwhisper_lib.checkpoints.catalog import official_dims
    from maxwhisper_lib.checkpoints.synthetic import random_weights
    from maxwhisper_lib.decoding.tokenizer import get_tokenizer
    from maxwhisper_lib.lab.benchmark.batch_throughput import ct2_folder

    weights = random_weights(official_dims("tiny", max_layers=1), seed=1, name="random-tiny")
    folder = ct2_folder("tiny", weights, tmp_path)
    ours = get_tokenizer(weights.dims, language="en", task="transcribe")
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    assert tokenizer.token_to_id("<|startoftranscript|>") == ours.sot
    assert tokenizer.token_to_id("<|en|>") == ours.sot + 1
    config = json.loads((folder / "config.json").read_text())
    assert len(config["lang_ids"]) == 99 and config["suppress_ids_begin"] == [220, ours.eot]
    assert set(config["suppress_ids"]) == set(ours.non_speech_tokens)


def test_device_size_plot_draws_a_line_per_device_engine_and_precision():
    """Notebook 04's size-by-device figure from the committed rehearsal: one line per engine and
    precision for each device given, through every size measured, MAX's points named."""
    from maxwhisper_lib.lab import plots
    from maxwhisper_lib.paths import reports_dir

    table = pd.read_csv(reports_dir() / "cpu-2core-gpu-sizes" / "sizes.csv")
    half = table.assign(dtype="float16")  # stands for a second device's table
    figure = plots.plot_device_sizes({"CPU": table, "GPU": half})
    sizes = table["model"].nunique()
    for ax in figure.axes:
        assert len(ax.lines) == 2 * table.groupby(["engine", "dtype"]).ngroups == 6
        assert all(len(line.get_xdata()) == sizes for line in ax.lines)
        assert len(ax.texts) == 2 * sizes
    labels = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert "CPU: MAX float32" in labels and "GPU: CTranslate2 float16" in labels
