"""The ``maxwhisper`` command line and the output writers, run in-process on real audio.

The transcripts are openai-whisper's for tiny.en on ``data/jfk.flac`` (greedy, and its CLI's
default beam search of 5): tiny.en writes them without the manifest reference's commas.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import whisper.utils

from maxwhisper_lib import cli
from maxwhisper_lib.decoding.writers import FORMATS, json_safe, parse_formats, write_result
from maxwhisper_lib.paths import data_dir

JFK = str(data_dir() / "jfk.flac")
GREEDY = ["--beam_size", "None", "--best_of", "None"]
JFK_GREEDY = (
    "And so my fellow Americans ask not what your country can do for you "
    "ask what you can do for your country"
)
JFK_BEAM = (
    "And so, my fellow Americans ask not what your country can do for you "
    "ask what you can do for your country."
)


HELD: dict[str, object] = {}
"""The session's models by engine, handed to the CLI for tiny.en on the CPU in float32."""


def held_or_loaded(model, model_dir, engine, device, dtype):
    """The CLI's model loader in these tests: a model the session holds when it fits."""
    if (model, model_dir, device, dtype) == ("tiny.en", None, "cpu", "float32") and engine in HELD:
        return HELD[engine]
    return cli.load_backend(model, model_dir, engine, device, dtype)


@pytest.fixture
def max_cli(max_tiny):
    """The CLI's tiny.en on MAX (CPU, float32) is the session's compiled model."""
    HELD["max"] = max_tiny
    return max_tiny


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main([*args, "--device", "cpu"], load=held_or_loaded)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


NOTES = (
    "maxwhisper: loading ",
    "maxwhisper: compiling ",
    "maxwhisper: compiled ",
    "maxwhisper: using ",
    "maxwhisper: this CPU has AVX-512",
)
"""stderr lines that say what the command is doing (loading the model, a first compile)."""


def error_lines(err: str) -> list[str]:
    """stderr without the progress bar and the loading and compile notes."""
    return [
        line
        for line in err.splitlines()
        if line.startswith("maxwhisper:") and not line.startswith(NOTES)
    ]


def outputs_of(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------------------------
# usage, options, weights: nothing is transcribed


@pytest.mark.parametrize("command", ["module", "script"])
def test_help_exits_0(command):
    if command == "module":
        argv = [sys.executable, "-m", "maxwhisper_lib", "--help"]
    else:  # the console script pyproject declares, where the package is installed
        script = Path(sys.executable).with_name("maxwhisper")
        if not script.exists():
            pytest.skip("maxwhisper_lib is not installed in this environment")
        argv = [str(script), "--help"]
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: maxwhisper")
    for flag in ("--batch_size", "--engine", "--word_timestamps", "--output_format"):
        assert flag in done.stdout


def test_bare_flag_before_audio_is_explained(capsys):
    code, _, err = run_cli(capsys, "--verbose", JFK)
    assert code == 2
    assert "expected True or False" in err and "put audio files first" in err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "give audio file(s) to transcribe, or --live FILE_OR_-"),
        ([JFK, "--live", JFK], "--live takes its one source itself"),
        (["--live", JFK, "--live_agreement", "1"], "live agreement must be at least 2"),
        ([JFK, "--beam_size", "0"], "beam_size must be at least 1"),
        ([JFK, "--best_of", "0"], "best_of must be at least 1"),
        ([JFK, "--language", "xx"], "unknown language 'xx'"),
        ([JFK, "--language", "German"], "English-only model"),
        ([JFK, "--task", "translate"], "English-only model cannot translate"),
        ([JFK, "--task", "summarise"], "invalid choice"),
        ([JFK, "--max_line_width", "20"], "--max_line_width requires --word_timestamps True"),
        ([JFK, "--highlight_words"], "--highlight_words requires --word_timestamps True"),
        (
            [JFK, "--hallucination_silence_threshold", "2"],
            "--hallucination_silence_threshold requires --word_timestamps True",
        ),
        ([JFK, "--word_timestamps", "--max_line_width", "0"], "--max_line_width must be at least"),
        ([JFK, "--temperature_increment_on_fallback", "0"], "must be positive"),
        ([JFK, "--temperature", "-1"], "temperature must be >= 0"),
        ([JFK, "--temperature", "1.5"], "above 1.0"),
        ([JFK, "--patience", "2", "--beam_size", "None"], "patience requires beam_size"),
        ([JFK, "--length_penalty", "2"], "length_penalty"),
        ([JFK, "--suppress_tokens", "a,b"], "suppress_tokens"),
        ([JFK, "--clip_timestamps", "1,x"], "clip_timestamps"),
        ([JFK, "--output_format", "doc"], "unknown output format 'doc'"),
        ([JFK, "--batch_size", "0"], "--batch_size must be at least 1"),
        ([JFK, "--dtype", "float16"], "GPU only"),
        ([JFK, "--quantization", "int4"], "invalid choice: 'int4'"),
        (
            [JFK, "--quantization", "int8", "--dtype", "float16"],
            "--quantization int8 runs with float32 activations, not --dtype float16",
        ),
        ([JFK, "--quantization", "int8", "--engine", "torch"], "use it with --engine max"),
        ([JFK, "--engine", "onnx"], "invalid choice"),
        ([JFK, "--verbose", "maybe"], "expected True or False, got 'maybe'"),
        ([JFK, "--beam_size", "five"], "invalid optional_int value"),
        ([JFK, "--vad_filter", "--vad_threshold", "2"], "vad threshold must be in (0, 1)"),
    ],
)
def test_option_errors_exit_2_before_loading(capsys, tmp_path, args, expected):
    code, out, err = run_cli(capsys, *args, "--output_dir", str(tmp_path / "out"))
    assert code == 2
    assert err.startswith("maxwhisper: error: ") and err.count("\n") == 1, err
    assert expected in err
    assert "loading" not in err and out == ""
    assert not (tmp_path / "out").exists()


def test_bad_weights_exit_1(capsys, tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    for model in (str(tmp_path / "no-such-model"), str(garbage)):
        code, _, err = run_cli(capsys, JFK, "--model", model, "-o", str(tmp_path))
        assert code == 1, err
        lines = error_lines(err)
        assert len(lines) == 1 and lines[0].startswith("maxwhisper: error: "), err
        assert model in lines[0]
        assert outputs_of(tmp_path) == ["garbage.pt"]


def test_unwritable_output_dir_exits_1(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, err = run_cli(capsys, JFK, "-o", str(blocker / "out"))
    assert code == 1
    assert err.startswith("maxwhisper: error: cannot create the output directory")


@pytest.fixture
def bad_files(tmp_path) -> dict[str, tuple[str, ...]]:
    """Audio files that can't be transcribed, by path, with the reasons each one may give."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "empty.wav").write_bytes(b"")
    (folder / "text.mp3").write_text("this is a text file, not an MP3\n" * 20)
    (folder / "random.flac").write_bytes(np.random.default_rng(1).bytes(20_000))
    soundfile.write(folder / "silent.wav", np.zeros(16_000, np.float32), 16_000)
    return {
        str(folder / "missing.wav"): ("no such file",),
        str(folder / "empty.wav"): ("empty file (0 bytes)",),
        str(folder / "text.mp3"): ("not a readable audio file",),
        # what libav makes of noise depends on the bytes: no container, or no decodable audio
        str(folder / "random.flac"): ("not a readable audio file", "decodes to no samples"),
        str(folder / "silent.wav"): ("the audio is silent",),
    }


def check_bad_file_messages(err: str, bad_files: dict[str, tuple[str, ...]]) -> None:
    lines = error_lines(err)
    assert len(lines) == len(bad_files), err
    for path, reasons in bad_files.items():
        (line,) = [line for line in lines if line.startswith(f"maxwhisper: {path}: ")]
        assert any(reason in line for reason in reasons), line


def test_only_bad_files_exit_1_without_loading(capsys, tmp_path, bad_files):
    out_dir = tmp_path / "out"
    code, out, err = run_cli(capsys, *bad_files, "-o", str(out_dir))
    assert code == 1
    check_bad_file_messages(err, bad_files)
    assert "loading" not in err and out == ""
    assert outputs_of(out_dir) == []


# ---------------------------------------------------------------------------------------------
# transcription


@pytest.mark.slow
def test_jfk_txt_srt_json(capsys, tmp_path, max_cli):
    code, out, err = run_cli(capsys, JFK, *GREEDY, "-o", str(tmp_path), "-f", "txt,srt,json")
    assert code == 0, err
    assert outputs_of(tmp_path) == ["jfk.json", "jfk.srt", "jfk.txt"]  # no temporary files
    assert out.strip() == f"{JFK} -> " + ", ".join(
        str(tmp_path / f"jfk.{ext}") for ext in ("txt", "srt", "json")
    )
    assert "11.0/11.0" in err  # the progress bar, over audio seconds

    result = json.loads((tmp_path / "jfk.json").read_text())
    assert result["text"].strip() == JFK_GREEDY
    assert result["language"] == "en"
    txt_lines = (tmp_path / "jfk.txt").read_text().splitlines()
    assert " ".join(txt_lines) == JFK_GREEDY
    srt = (tmp_path / "jfk.srt").read_text()
    assert srt.startswith("1\n00:00:00,000 --> ")
    assert srt.count(" --> ") == len(result["segments"]) == len(txt_lines)


@pytest.mark.slow
def test_bad_files_are_skipped_and_the_good_one_written(capsys, tmp_path, bad_files, max_cli):
    out_dir = tmp_path / "out"
    paths = list(bad_files)
    files = [*paths[:2], JFK, *paths[2:]]  # the good file shares a batch with bad ones
    code, out, err = run_cli(
        capsys, *files, *GREEDY, "-o", str(out_dir), "-f", "txt", "--batch_size", "2"
    )
    assert code == 1
    check_bad_file_messages(err, bad_files)
    assert outputs_of(out_dir) == ["jfk.txt"]
    assert out.strip() == f"{JFK} -> {out_dir / 'jfk.txt'}"
    assert " ".join((out_dir / "jfk.txt").read_text().splitlines()) == JFK_GREEDY


@pytest.mark.slow
def test_default_beam_search_with_word_timestamps(capsys, tmp_path, max_cli):
    """openai-whisper's CLI defaults (beam 5, fallback), and subtitle lines cut by width."""
    code, _, err = run_cli(
        capsys,
        JFK,
        "-o",
        str(tmp_path),
        "--word_timestamps",
        "True",
        "--max_line_width",
        "30",
        "--max_line_count",
        "1",
    )
    assert code == 0, err
    assert outputs_of(tmp_path) == [f"jfk.{ext}" for ext in sorted(FORMATS)]
    result = json.loads((tmp_path / "jfk.json").read_text())
    assert result["text"].strip() == JFK_BEAM
    words = [w for s in result["segments"] for w in s["words"]]
    assert "".join(w["word"] for w in words).strip() == JFK_BEAM
    assert all(0 <= w["start"] <= w["end"] <= 11.0 for w in words)
    srt_text = [
        line for line in (tmp_path / "jfk.srt").read_text().splitlines() if line[:1].isalpha()
    ]
    assert len(srt_text) > len(result["segments"])
    assert all(len(line) <= 30 for line in srt_text)
    assert " ".join(srt_text) == JFK_BEAM


@pytest.mark.slow
def test_torch_engine_verbose(capsys, tmp_path, torch_tiny):
    """The reference engine gives the same transcript; --verbose prints segments, no bar."""
    HELD["torch"] = torch_tiny
    code, out, err = run_cli(
        capsys, JFK, *GREEDY, "--engine", "torch", "--verbose", "-o", str(tmp_path), "-f", "txt"
    )
    assert code == 0, err
    assert out.splitlines()[0].startswith("[00:00.000 --> ")
    assert "11.0/11.0" not in err
    assert " ".join((tmp_path / "jfk.txt").read_text().splitlines()) == JFK_GREEDY


# ---------------------------------------------------------------------------------------------
# writers


@pytest.fixture
def result() -> dict:
    """A transcribe result with word timings, some of them NumPy scalars."""
    words = [
        {"word": " Hello", "start": np.float32(0.0), "end": np.float64(0.5), "probability": 0.9},
        {"word": " there,", "start": 0.5, "end": 1.0, "probability": np.float32(0.8)},
        {"word": " general", "start": 1.2, "end": 1.7, "probability": 0.7},
        {"word": " Kenobi.", "start": 1.7, "end": 2.5, "probability": 0.95},
    ]
    return {
        "text": " Hello there, general Kenobi.",
        "segments": [
            {"id": 0, "start": 0.0, "end": 1.0, "text": " Hello there,", "words": words[:2]},
            {"id": 1, "start": 1.2, "end": 2.5, "text": " general Kenobi.", "words": words[2:]},
        ],
        "language": "en",
        "tokens": np.array([1, 2, 3]),
    }


def test_write_all_formats(tmp_path, result):
    written = write_result(result, "/somewhere/clip.take1.wav", tmp_path)
    assert written == [tmp_path / f"clip.take1.{ext}" for ext in FORMATS]
    assert outputs_of(tmp_path) == sorted(p.name for p in written)

    loaded = json.loads((tmp_path / "clip.take1.json").read_text())
    assert loaded["text"] == result["text"] and loaded["tokens"] == [1, 2, 3]
    assert [(s["start"], s["end"]) for s in loaded["segments"]] == [(0.0, 1.0), (1.2, 2.5)]
    assert loaded["segments"][0]["words"][0]["end"] == 0.5
    assert (tmp_path / "clip.take1.txt").read_text() == "Hello there,\ngeneral Kenobi.\n"
    assert (tmp_path / "clip.take1.vtt").read_text().startswith("WEBVTT\n\n00:00.000 --> 00:01.000")
    assert (tmp_path / "clip.take1.tsv").read_text().splitlines()[1] == "0\t1000\tHello there,"


@pytest.mark.parametrize(
    "options",
    [{}, {"max_line_width": 14, "max_line_count": 2}, {"max_words_per_line": 1}],
    ids=["plain", "width", "words"],
)
def test_files_equal_openai_whisper_writers(tmp_path, result, options):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    theirs.mkdir()
    ours.mkdir()
    write_result(result, "clip.wav", ours, FORMATS, options)
    whisper.utils.get_writer("all", str(theirs))(json_safe(result), "clip.wav", options)
    for ext in FORMATS:
        assert (ours / f"clip.{ext}").read_bytes() == (theirs / f"clip.{ext}").read_bytes(), ext


def test_writer_options(tmp_path, result):
    options = {"max_line_width": 14, "max_line_count": 1, "highlight_words": True}
    write_result(result, "clip.wav", tmp_path, ["srt"], options)
    srt = (tmp_path / "clip.srt").read_text()
    assert "00:00:00,000 --> 00:00:00,500\n<u>Hello</u> there,\n" in srt
    assert "00:00:01,700 --> 00:00:02,500\n<u>Kenobi.</u>\n" in srt  # " general Kenobi." > 14


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, result):
    (tmp_path / "clip.txt").write_text("previous transcript\n")
    broken = {**result, "segments": [{"start": 0.0, "end": 1.0}]}  # no text
    with pytest.raises(KeyError):
        write_result(broken, "clip.wav", tmp_path, ["txt"])
    assert outputs_of(tmp_path) == ["clip.txt"]
    assert (tmp_path / "clip.txt").read_text() == "previous transcript\n"


def test_parse_formats():
    assert parse_formats("all") == FORMATS
    assert parse_formats("srt, TXT,srt") == ("srt", "txt")
    for bad in ("", "doc", "txt,doc"):
        with pytest.raises(ValueError, match="unknown output format"):
            parse_formats(bad)


@pytest.mark.slow
def test_vad_filter_silent_file_gives_empty_outputs(capsys, tmp_path, max_cli):
    """A silent file is an error without the VAD, and no speech (empty transcript) with it."""
    quiet = tmp_path / "quiet.wav"
    soundfile.write(quiet, np.zeros(16000 * 5, np.float32), 16000)
    code, _, err = run_cli(capsys, str(quiet), *GREEDY, "-o", str(tmp_path / "a"), "-f", "json")
    assert code == 1 and "silent" in err
    code, _, err = run_cli(
        capsys, str(quiet), *GREEDY, "--vad_filter", "-o", str(tmp_path / "b"), "-f", "json"
    )
    assert code == 0, err
    result = json.loads((tmp_path / "b" / "quiet.json").read_text())
    assert result["segments"] == [] and result["text"] == ""
