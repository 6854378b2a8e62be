"""The compiled-model store: one compile per configuration, read back by later processes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from max.dtype import DType
from max.graph import DeviceRef, Graph, TensorType

from maxwhisper_lib import compiled
from maxwhisper_lib.model import GRAPHS, LOG_MEL_PIECE, MaxWhisper


def add_one_module(module) -> dict[str, str]:
    """One tiny graph (``x + 1``) added to ``module``, under the caller's name ``add``."""
    x_type = TensorType(DType.float32, ["n"], device=DeviceRef.CPU())
    with Graph("test_store_add_one", input_types=[x_type], module=module) as graph:
        graph.output(graph.inputs[0].tensor + 1.0)
    return {"add": graph.name}


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An empty store (MAX's own cache stays where it is, so the tiny graph compiles fast)."""
    monkeypatch.setattr(compiled, "store_dir", lambda: tmp_path)
    return tmp_path


def load_add_one():
    models, from_store = compiled.load_models(
        "add-one", {"test": 1}, add_one_module, "cpu", {}, stream=io.StringIO()
    )
    x = np.arange(4, dtype=np.float32)
    return models["add"].execute(x)[0].to_numpy(), from_store


@pytest.mark.slow
def test_compiled_once_then_read_back(store):
    first, from_store = load_add_one()
    assert not from_store
    np.testing.assert_array_equal(first, np.arange(4) + 1)
    files = sorted(p.suffix for p in store.iterdir())
    assert files == [".json", ".mef"]  # no temporary left behind
    second, from_store = load_add_one()
    assert from_store
    np.testing.assert_array_equal(second, first)


@pytest.mark.slow
def test_damaged_store_file_is_compiled_again(store):
    load_add_one()
    (mef,) = store.glob("*.mef")
    mef.write_bytes(b"not a MEF file")
    result, from_store = load_add_one()
    assert not from_store
    np.testing.assert_array_equal(result, np.arange(4) + 1)
    assert load_add_one()[1]  # the damaged file was replaced by a good one


def test_key_follows_configuration_and_device(monkeypatch):
    key = compiled.model_key({"dims": "tiny", "dtype": "float32"}, "cpu")
    assert key == compiled.model_key({"dtype": "float32", "dims": "tiny"}, "cpu")
    assert key != compiled.model_key({"dims": "tiny", "dtype": "int8"}, "cpu")
    monkeypatch.setattr(compiled, "device_identity", lambda name: "cpu:another CPU")
    assert key != compiled.model_key({"dims": "tiny", "dtype": "float32"}, "cpu")


def test_key_follows_the_sources(monkeypatch):
    key = compiled.model_key({"dims": "tiny"}, "cpu")
    compiled.source_digest.cache_clear()
    monkeypatch.setattr(compiled, "SOURCES", ("graphs/*.py",))
    try:
        assert compiled.model_key({"dims": "tiny"}, "cpu") != key
    finally:
        compiled.source_digest.cache_clear()


def test_compile_progress_says_what_and_how_long():
    out = io.StringIO()
    with compiled.compile_progress("tiny.en (cpu, float32)", out):
        pass
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("maxwhisper: compiling tiny.en (cpu, float32) for MAX")
    assert "first run on this machine" in lines[0]
    assert lines[-1].startswith("maxwhisper: compiled tiny.en (cpu, float32) in 0 s")


@pytest.mark.slow
def test_model_graphs_come_from_one_module_and_are_read_back(max_tiny, tiny_weights, jfk_audio):
    """Every graph of the model (and its front end's) is there after one load; a second model
    of the same configuration reads them back and computes the same bits."""
    max_tiny.warm_up()
    assert set(max_tiny._models) == {*GRAPHS, LOG_MEL_PIECE}
    again = MaxWhisper(tiny_weights, device="cpu")
    again.warm_up()
    assert again.from_store
    mel = max_tiny.log_mel(jfk_audio, padding=16_000 * 30)[:, :3000]
    np.testing.assert_array_equal(again.log_mel(jfk_audio, padding=16_000 * 30)[:, :3000], mel)
    np.testing.assert_array_equal(again.embed_audio(mel).numpy(), max_tiny.embed_audio(mel).numpy())
