"""Corpus runs on Ray (``maxwhisper_lib.corpus``): inputs, the results store and resuming, the
actor plan, and (slow) whole runs on the dev clips: the same transcripts as ``transcribe()``,
bad files as error lines, a killed actor's files retried, two Ray nodes on one machine."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import soundfile

from maxwhisper_lib.corpus import (
    CorpusInputError,
    CorpusItem,
    ModelSettings,
    ResultStore,
    Transcriber,
    collect_inputs,
    run_corpus,
)
from maxwhisper_lib.corpus import __main__ as corpus_cli
from maxwhisper_lib.corpus.run import CorpusRunError, plan_actors, result_row
from maxwhisper_lib.lab.manifest import load_manifest
from maxwhisper_lib.paths import data_dir

GREEDY = {"beam_size": None, "best_of": None, "temperature": (0.0,)}
"""Greedy decoding without fallback: the quickest exact comparison."""

# ---------------------------------------------------------------------------------------------
# inputs


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_folder_input_finds_audio_recursively_and_keeps_sub_folders(tmp_path):
    touch(tmp_path / "b.wav")
    touch(tmp_path / "spk1" / "a.FLAC")
    touch(tmp_path / "notes.txt")
    items = collect_inputs(tmp_path)
    assert [(i.id, Path(i.path).name) for i in items] == [("b", "b.wav"), ("spk1/a", "a.FLAC")]


def test_glob_and_single_file_inputs(tmp_path):
    touch(tmp_path / "x1.wav")
    touch(tmp_path / "x2.mp3")
    touch(tmp_path / "y.wav")
    assert [i.id for i in collect_inputs(str(tmp_path / "x*"))] == ["x1", "x2"]
    assert [i.id for i in collect_inputs(tmp_path / "y.wav")] == ["y"]


def test_manifest_input_gives_ids_paths_and_references():
    items = collect_inputs(data_dir() / "manifest.csv")
    clips = {clip.id: clip for clip in load_manifest()}
    assert {i.id for i in items} == set(clips)
    for item in items:
        assert Path(item.path) == clips[item.id].path
        assert item.reference == clips[item.id].reference


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: (touch(d / "a.wav"), touch(d / "a.flac")), "share the id 'a'"),
        (lambda d: None, "no audio files found"),
        (lambda d: (d / "m.csv").write_text("path\nx.wav\n"), "no 'file' column"),
        (lambda d: (d / "m.csv").write_text("id,file\n../up,x.wav\n"), "leave the output folder"),
    ],
)
def test_input_errors(tmp_path, setup, message):
    setup(tmp_path)
    manifest = tmp_path / "m.csv"
    with pytest.raises(CorpusInputError, match=message):
        collect_inputs(manifest if manifest.exists() else tmp_path)


def test_missing_input():
    with pytest.raises(CorpusInputError, match="no such file, folder or matching files"):
        collect_inputs("/nonexistent/corpus")


# ---------------------------------------------------------------------------------------------
# results store


def test_store_resumes_from_ok_lines_and_survives_a_torn_last_line(tmp_path):
    store = ResultStore(tmp_path)
    store.append({"id": "a", "status": "ok", "text": "hello"})
    store.append({"id": "b", "status": "error", "error": "corrupt"})
    with open(store.results_path, "a", encoding="utf-8") as handle:
        handle.write('{"id": "c", "status": "o')  # an interrupted write
    store = ResultStore(tmp_path)  # the next run
    assert store.done_ids() == {"a"}
    store.append({"id": "c", "status": "ok", "text": "again"})
    assert store.done_ids() == {"a", "c"}
    assert store.load()["c"]["text"] == "again"
    lines = store.results_path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4 and json.loads(lines[-1])["id"] == "c"


def test_store_writes_transcripts_under_the_id(tmp_path):
    result = {
        "text": " hi",
        "language": "en",
        "segments": [{"start": 0.0, "end": 1.0, "text": " hi"}],
    }
    written = ResultStore(tmp_path).write_outputs("spk1/a", result, ("txt", "srt"))
    assert written == [tmp_path / "spk1" / "a.txt", tmp_path / "spk1" / "a.srt"]
    assert (tmp_path / "spk1" / "a.txt").read_text() == "hi\n"
    # an id with dots keeps them: talk.v2 and talk.v3 do not both become talk.txt
    written = ResultStore(tmp_path).write_outputs("talk.v2", result, ("txt",))
    assert written == [tmp_path / "talk.v2.txt"] and written[0].read_text() == "hi\n"


def test_result_row_ok_and_error():
    result = {"text": " hi", "language": "en", "segments": []}
    row = {
        "id": "a",
        "path": "a.wav",
        "status": "ok",
        "error": "",
        "worker": "n:1",
        "result_json": json.dumps(result),
        "duration_s": 1.23456,
        "transcribe_s": 0.5,
    }
    line, parsed = result_row(row)
    assert parsed == result and line["text"] == " hi" and line["error"] is None
    assert line["duration_s"] == 1.235
    line, parsed = result_row(
        {**row, "status": "error", "error": "a.wav: empty", "result_json": ""}
    )
    assert parsed is None and line["text"] is None and line["error"] == "a.wav: empty"


def test_a_corpus_already_done_starts_no_ray(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray started"))
    store = ResultStore(tmp_path)
    store.append({"id": "jfk", "status": "ok", "text": " hi"})
    items = [CorpusItem("jfk", str(data_dir() / "jfk.flac"), "hi")]
    summary = run_corpus(items, tmp_path, ModelSettings(), progress=False)
    assert (summary.files, summary.skipped, summary.transcribed) == (1, 1, 0)
    assert summary.wer == 0.0
    assert json.loads((tmp_path / "summary.json").read_text())["skipped"] == 1


# ---------------------------------------------------------------------------------------------
# actor plan and options


def test_actor_plan_shares_out_cpus_and_refuses_what_does_not_fit():
    cpu = ModelSettings(device="cpu")
    assert plan_actors(cpu, None, None, cpus=2, gpus=0) == (1, 2, {"num_cpus": 2})
    assert plan_actors(cpu, 2, None, cpus=2, gpus=0) == (2, 1, {"num_cpus": 1})
    assert plan_actors(cpu, 2, 1, cpus=8, gpus=0) == (2, 1, {"num_cpus": 1})
    with pytest.raises(CorpusRunError, match="2 actors x 2 threads need 4 CPUs"):
        plan_actors(cpu, 2, 2, cpus=2, gpus=0)
    auto = ModelSettings(device="auto")
    assert plan_actors(auto, None, None, cpus=32, gpus=4) == (
        4,
        None,
        {"num_gpus": 1, "num_cpus": 1},
    )
    with pytest.raises(CorpusRunError, match="one GPU each"):
        plan_actors(ModelSettings(device="gpu"), 2, None, cpus=32, gpus=1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--actors", "0"], "--actors must be at least 1"),
        (["--threads", "-1"], "--threads must be at least 1"),
        (["--beam_size", "0"], "beam_size"),
    ],
)
def test_option_errors_exit_2_before_ray_starts(capsys, tmp_path, args, message):
    code = corpus_cli.main([str(data_dir() / "jfk.flac"), "-o", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "results.jsonl").exists()


def test_output_dir_is_required_and_input_must_exist(capsys, tmp_path):
    assert corpus_cli.main([str(data_dir())]) == 2
    assert "--output_dir" in capsys.readouterr().err
    assert corpus_cli.main([str(tmp_path / "none"), "-o", str(tmp_path)]) == 2
    assert "no such file, folder or matching files" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# whole runs on Ray (slow: each actor loads the compiled tiny.en)


@pytest.fixture(scope="module")
def ray_local():
    """Ray embedded on this machine for the module's runs (started once: ~10 s)."""
    ray = pytest.importorskip("ray")
    ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def rows_of(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "results.jsonl").read_text().splitlines()]


SETTINGS = ModelSettings(device="cpu", batch_size=2, transcribe_kwargs=GREEDY)
CLIP_IDS = ("jfk", "librispeech-1089-134686-0001", "librispeech-1089-134686-0002")


@pytest.mark.slow
def test_corpus_equals_transcribe_and_resumes(ray_local, tmp_path, max_tiny):
    from maxwhisper_lib.decoding.text import word_error_rate
    from maxwhisper_lib.decoding.transcribe import transcribe

    items = [i for i in collect_inputs(data_dir() / "manifest.csv") if i.id in CLIP_IDS]
    first = run_corpus(items[:2], tmp_path, SETTINGS, formats=("txt",), progress=False)
    assert (first.transcribed, first.skipped, first.errors) == (2, 0, 0)
    summary = run_corpus(items, tmp_path, SETTINGS, formats=("txt",), progress=False)
    assert (summary.transcribed, summary.skipped, summary.errors) == (1, 2, 0)
    rows = rows_of(tmp_path)
    assert sorted(r["id"] for r in rows) == sorted(CLIP_IDS)  # each file written once
    texts = {}
    for item in items:
        row = next(r for r in rows if r["id"] == item.id)
        expected = transcribe(max_tiny, item.path, **GREEDY)
        assert [s["tokens"] for s in row["segments"]] == [s["tokens"] for s in expected["segments"]]
        lines = (tmp_path / f"{item.id}.txt").read_text().splitlines()
        assert lines == [s["text"].strip() for s in expected["segments"]]
        texts[item.id] = row["text"]
    assert summary.wer == pytest.approx(
        word_error_rate([i.reference for i in items], [texts[i.id] for i in items])
    )
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["files"] == 3 and saved["skipped"] == 2


@pytest.mark.slow
def test_bad_files_become_error_lines_and_are_retried_on_rerun(ray_local, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "empty.wav").write_bytes(b"")
    (folder / "text.mp3").write_text("not audio\n" * 50)
    soundfile.write(folder / "silent.wav", np.zeros(16_000, np.float32), 16_000)
    (folder / "jfk.flac").write_bytes((data_dir() / "jfk.flac").read_bytes())
    out = tmp_path / "out"
    code = corpus_cli.main(
        [
            str(folder),
            "-o",
            str(out),
            "--device",
            "cpu",
            "-f",
            "txt",
            "--beam_size",
            "None",
            "--best_of",
            "None",
        ]
    )
    assert code == 1
    rows = {r["id"]: r for r in rows_of(out)}
    assert rows["jfk"]["status"] == "ok" and "ask not what your country" in rows["jfk"]["text"]
    assert "empty" in rows["empty"]["error"]
    assert "not a readable audio file" in rows["text"]["error"]
    assert "silent" in rows["silent"]["error"]
    assert sorted(p.name for p in out.glob("*.txt")) == ["jfk.txt"]
    corpus_cli.main([str(folder), "-o", str(out), "--device", "cpu", "-f", "txt"])
    lines = rows_of(out)
    assert [r["id"] for r in lines].count("jfk") == 1  # done: skipped
    assert [r["id"] for r in lines].count("empty") == 2  # failed: tried again


class DiesOnce(Transcriber):
    """A transcriber whose process exits the first time it meets ``victim`` (once per run,
    remembered in the ``marker`` file, which records the pid that died)."""

    marker: ClassVar[str] = ""
    victim: ClassVar[str] = "librispeech-1089-134686-0002"

    def __call__(self, batch):
        marker = Path(self.marker)
        if self.victim in [str(i) for i in batch["id"]] and not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)
        return super().__call__(batch)


@pytest.mark.slow
def test_a_killed_actor_loses_nothing(ray_local, tmp_path):
    ray_local.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    DiesOnce.marker = str(tmp_path / "died")
    items = [i for i in collect_inputs(data_dir() / "manifest.csv") if i.id in CLIP_IDS]
    settings = ModelSettings(device="cpu", batch_size=1, transcribe_kwargs=GREEDY)
    summary = run_corpus(items, tmp_path / "out", settings, progress=False, transcriber=DiesOnce)
    assert (summary.transcribed, summary.errors) == (3, 0)
    rows = rows_of(tmp_path / "out")
    assert sorted(r["id"] for r in rows) == sorted(CLIP_IDS)  # all there, none twice
    dead = (tmp_path / "died").read_text()
    victim = next(r for r in rows if r["id"] == DiesOnce.victim)
    assert victim["status"] == "ok" and not victim["worker"].endswith(f":{dead}")


@pytest.mark.slow
def test_two_ray_nodes_on_one_machine(tmp_path):
    """A multi-node cluster simulated with two Ray nodes of one CPU each: one actor per node,
    both doing work. (Ray Data dispatches as soon as one actor is up; a model that loads in
    seconds lets it finish a short list alone, so the test waits for both and gives them every
    dev clip.)"""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster
    from ray.data import DataContext

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    context = DataContext.get_current()
    waited = context.wait_for_min_actors_s
    context.wait_for_min_actors_s = 600
    try:
        items = [CorpusItem(c.id, str(c.path), c.reference) for c in load_manifest()]
        settings = ModelSettings(device="cpu", batch_size=1, transcribe_kwargs=GREEDY)
        ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
        summary = run_corpus(
            items, tmp_path, settings, actors=2, threads=1, progress=False, address=cluster.address
        )
        assert (summary.transcribed, summary.errors, summary.actors) == (len(items), 0, 2)
        nodes = {r["worker"].split(":")[0] for r in rows_of(tmp_path)}
        assert len(nodes) == 2, nodes
    finally:
        context.wait_for_min_actors_s = waited
        ray.shutdown()
        cluster.shutdown()


def test_help_lists_the_ray_and_transcription_options():
    import subprocess

    script = Path(sys.executable).with_name("maxwhisper-corpus")
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "maxwhisper_lib.corpus"]
    done = subprocess.run([*argv, "--help"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: maxwhisper-corpus")
    for flag in (
        "--address",
        "--actors",
        "--threads",
        "--batch_size",
        "--vad_filter",
        "--beam_size",
    ):
        assert flag in done.stdout


def test_read_audio_turns_any_failure_into_the_rows_error(tmp_path, monkeypatch):
    from maxwhisper_lib.corpus import actors

    (tmp_path / "empty.wav").write_bytes(b"")
    row = actors.read_audio({"id": "empty", "path": str(tmp_path / "empty.wav"), "reference": ""})
    assert "empty" in row["error"] and row["samples"].size == 0 and row["duration_s"] == 0
    good = actors.read_audio({"id": "jfk", "path": str(data_dir() / "jfk.flac"), "reference": ""})
    assert good["error"] == "" and good["duration_s"] == pytest.approx(11.0, abs=0.01)

    def broken(*args, **kwargs):
        raise MemoryError("no room")

    monkeypatch.setattr("maxwhisper_lib.audio.load.load_audio", broken)
    row = actors.read_audio({"id": "x", "path": "x.wav", "reference": ""})
    assert row["error"] == "x.wav: MemoryError: no room"
