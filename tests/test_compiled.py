"""The compiled-model store: one compile per configuration, read back by later processes."""

from __future__ import annotations

import io
import json
import lzma

import numpy as np
import pytest
from max.dtype import DType
from max.graph import DeviceRef, Graph, TensorType

from maxwhisper_lib.decoding.transcribe import transcribe, transcript_tokens
from maxwhisper_lib.engine import compiled
from maxwhisper_lib.engine.model import ALL_GRAPHS, MaxWhisper
from maxwhisper_lib.lab.precompile import SHIPPED_DTYPES


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


def test_kernel_sources_key_only_the_models_compiled_with_them(monkeypatch, tiny_weights):
    """A CPU model (the Mojo kernels) carries their digest in its config; one compiled without
    them (as on a GPU) does not, so that a kernel change leaves its compiled graphs valid."""
    with_kernels = MaxWhisper(tiny_weights, device="cpu").compile_config()
    without = MaxWhisper(tiny_weights, device="cpu", row_kernels=False).compile_config()
    assert with_kernels["kernel_sources"] == compiled.kernel_digest()
    assert "kernel_sources" not in without
    digest = compiled.kernel_digest()
    compiled.kernel_digest.cache_clear()
    monkeypatch.setattr(compiled, "KERNEL_SOURCES", ("kernels/attention.mojo",))
    try:
        assert compiled.kernel_digest() != digest
    finally:
        compiled.kernel_digest.cache_clear()


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
    assert set(max_tiny._models) == set(ALL_GRAPHS)
    again = MaxWhisper(tiny_weights, device="cpu")
    again.warm_up()
    assert again.from_store
    mel = max_tiny.log_mel(jfk_audio, padding=16_000 * 30)[:, :3000]
    np.testing.assert_array_equal(again.log_mel(jfk_audio, padding=16_000 * 30)[:, :3000], mel)
    np.testing.assert_array_equal(again.embed_audio(mel).numpy(), max_tiny.embed_audio(mel).numpy())


# ------------------------------------------------------------------ the shipped portable build


@pytest.fixture
def shipped(tmp_path_factory, monkeypatch, store):
    """An empty shipped folder, shipped builds on, and a machine that runs x86-64-v3 code."""
    folder = tmp_path_factory.mktemp("shipped")
    monkeypatch.setattr(compiled, "SHIPPED_DIR", folder)
    monkeypatch.delenv(compiled.SHIPPED_SWITCH, raising=False)
    monkeypatch.setattr(compiled, "runs_portable_cpu_code", lambda: True)
    return folder


def ship_bytes(folder, config, data: bytes, names=None) -> str:
    key = compiled.portable_key(config)
    with lzma.open(folder / f"{key}.mef.xz", "wb") as out:
        out.write(data)
    (folder / f"{key}.json").write_text(json.dumps(names or {"add": "test_store_add_one"}))
    return key


def test_shipped_build_of_the_default_model_matches_the_sources(tiny_weights):
    """The package ships tiny.en's float32 and int8 CPU graphs compiled for x86-64-v3, for the
    current graph and kernel sources and MAX version (else: ``make precompile-cpu``), and
    nothing else."""
    keys = [
        compiled.portable_key(MaxWhisper(tiny_weights, device="cpu", dtype=dtype).compile_config())
        for dtype in SHIPPED_DTYPES
    ]
    files = sorted(p.name for p in compiled.SHIPPED_DIR.iterdir())
    expected = sorted(f"{key}{suffix}" for key in keys for suffix in (".json", ".mef.xz"))
    assert files == expected, "stale shipped build: make precompile-cpu"
    for key in keys:
        names = json.loads((compiled.SHIPPED_DIR / f"{key}.json").read_text())
        assert set(names) == set(ALL_GRAPHS)
        assert (compiled.SHIPPED_DIR / f"{key}.mef.xz").stat().st_size < 4 * 2**20


def test_shipped_build_is_unpacked_into_the_store_once(shipped, store):
    key = ship_bytes(shipped, {"test": 1}, b"compiled code")
    out = io.StringIO()
    path = compiled.shipped_model({"test": 1}, "cpu", "add-one", out)
    assert path == store / f"{key}.mef"
    assert path.read_bytes() == b"compiled code"
    assert json.loads(path.with_suffix(".json").read_text()) == {"add": "test_store_add_one"}
    assert out.getvalue().startswith("maxwhisper: using add-one as shipped with MAX-Whisper")
    again = io.StringIO()
    assert compiled.shipped_model({"test": 1}, "cpu", "add-one", again) == path
    assert again.getvalue() == ""  # said once, when unpacked


def test_shipped_build_is_not_used_where_it_cannot_or_should_not_run(shipped, monkeypatch):
    ship_bytes(shipped, {"test": 1}, b"compiled code")
    assert compiled.shipped_model({"test": 2}, "cpu") is None  # another configuration
    assert compiled.shipped_model({"test": 1}, "gpu") is None
    monkeypatch.setenv(compiled.SHIPPED_SWITCH, "0")
    assert compiled.shipped_model({"test": 1}, "cpu") is None
    monkeypatch.delenv(compiled.SHIPPED_SWITCH)
    monkeypatch.setattr(compiled, "runs_portable_cpu_code", lambda: False)
    assert compiled.shipped_model({"test": 1}, "cpu") is None


def test_a_cpu_without_avx2_cannot_run_the_portable_build(monkeypatch):
    flags = set(compiled.PORTABLE_CPU_FLAGS) | {"sse4_2"}
    monkeypatch.setattr(compiled.machine, "cpu_architecture", lambda: "x86_64")
    monkeypatch.setattr(compiled.machine, "cpu_flags", lambda: flags)
    assert compiled.runs_portable_cpu_code()
    monkeypatch.setattr(compiled.machine, "cpu_flags", lambda: flags - {"avx2"})
    assert not compiled.runs_portable_cpu_code()
    monkeypatch.setattr(compiled.machine, "cpu_flags", lambda: flags)
    monkeypatch.setattr(compiled.machine, "cpu_architecture", lambda: "aarch64")
    assert not compiled.runs_portable_cpu_code()


def test_a_damaged_shipped_archive_is_left_alone(shipped, store, caplog):
    key = compiled.portable_key({"test": 1})
    (shipped / f"{key}.mef.xz").write_bytes(b"not xz")
    (shipped / f"{key}.json").write_text("{}")
    assert compiled.shipped_model({"test": 1}, "cpu") is None
    assert "cannot unpack the shipped compiled model" in caplog.text
    assert list(store.glob("*.mef")) == []  # nothing half-written


@pytest.mark.slow
def test_a_shipped_build_is_read_instead_of_compiled(shipped, store):
    """The load chain: no build for this machine, a shipped one -> read back, no compile; a
    damaged shipped MEF -> compiled for this machine instead."""
    load_add_one()  # compiled once, to have a real MEF to ship
    (mef,) = store.glob("*.mef")
    ship_bytes(shipped, {"test": 1}, mef.read_bytes())
    for file in store.iterdir():
        file.unlink()
    result, from_store = load_add_one()
    assert from_store
    np.testing.assert_array_equal(result, np.arange(4) + 1)
    key = compiled.portable_key({"test": 1})
    assert sorted(p.name for p in store.glob("*.mef")) == [f"{key}.mef"]
    for file in store.iterdir():
        file.unlink()
    ship_bytes(shipped, {"test": 1}, b"not a MEF file")
    result, from_store = load_add_one()
    assert not from_store
    np.testing.assert_array_equal(result, np.arange(4) + 1)


@pytest.mark.slow
def test_tiny_en_from_an_empty_store_uses_the_shipped_build(
    store, monkeypatch, tiny_weights, torch_tiny, jfk_audio
):
    """A fresh machine (empty store) transcribes with the shipped tiny.en without compiling,
    token-identical to openai-whisper."""
    monkeypatch.delenv(compiled.SHIPPED_SWITCH, raising=False)
    if not compiled.runs_portable_cpu_code():
        pytest.skip("this CPU cannot run x86-64-v3 code")
    fresh = MaxWhisper(tiny_weights, device="cpu", dtype="float32")
    result = transcribe(fresh, jfk_audio, temperature=0.0, progress=False)
    assert fresh.from_store
    assert fresh.load_seconds < 30
    assert [p.stem for p in store.glob("*.mef")] == [compiled.portable_key(fresh.compile_config())]
    import whisper

    reference = whisper.transcribe(torch_tiny.model, jfk_audio, fp16=False, temperature=0.0)
    assert transcript_tokens(result) == transcript_tokens(reference)
