"""Ahead-of-time compiles for a GPU this machine does not have (MAX's virtual-device mode)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from maxwhisper_lib.lab.precompile import main, parse_target


def test_targets_are_api_and_architecture():
    assert parse_target("cuda:sm_90a") == ("cuda", "sm_90a")
    assert parse_target("hip:gfx942") == ("hip", "gfx942")
    assert parse_target("cpu:x86-64-v3") == ("cpu", "x86-64-v3")  # portable CPU code
    assert parse_target("cpu") == ("cpu", "")  # this machine
    for bad in ("cuda", "sm_90a", "metal:apple-m1", "cuda:", "", "cpu:native"):
        with pytest.raises(ValueError, match="API:ARCHITECTURE"):
            parse_target(bad)


def test_bad_arguments_are_refused_before_any_compile(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--target", "tpu:v5"])
    assert exit_info.value.code == 2
    assert "expected API:ARCHITECTURE" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--dtypes", "int8"])
    assert "choose from float32, float16, bfloat16 (int8: CPU only)" in capsys.readouterr().err


@pytest.mark.slow
def test_tiny_en_compiles_for_a_gpu_this_machine_does_not_have(tmp_path):
    """tiny.en's float16 graphs compile for a virtual H100/H200 (a process of its own: the
    virtual device must come first) into a store-layout folder a GPU host can read back."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "maxwhisper_lib.lab.precompile",
            "--model",
            "tiny.en",
            "--dtypes",
            "float16",
            "--output",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "compiled for cuda:sm_90a" in result.stderr
    files = sorted((tmp_path / "maxwhisper").iterdir())
    stems = {f.stem for f in files}
    assert sorted(f.name for f in files) == sorted(
        f"{s}{x}" for s in stems for x in (".json", ".mef")
    )
    graphs = {}
    for stem in stems:
        assert (tmp_path / "maxwhisper" / f"{stem}.mef").stat().st_size > 100_000
        graphs.update(json.loads((tmp_path / "maxwhisper" / f"{stem}.json").read_text()))
    assert {"encoder", "cross_kv", "decoder_step", "decode_start", "decode_step"} <= set(graphs)


def _fake_build(monkeypatch, tmp_path, verdict: int):
    """main() for the shipped CPU target with the compile and the check replaced: the files it
    'wrote' and what it returned."""
    import maxwhisper_lib.lab.precompile as precompile_module
    import maxwhisper_lib.lab.verify_build as verify_build

    written = [tmp_path / "key.mef.xz", tmp_path / "key.json"]
    store = tmp_path / "cache" / "maxwhisper"
    store.mkdir(parents=True)
    monkeypatch.setenv("MODULAR_CACHE_DIR", str(tmp_path / "cache"))
    for path in [*written, store / "key.mef", store / "key.json", store / "other.mef"]:
        path.write_bytes(b"x")
    checks = []

    def fake_check(model, dtypes):
        checks.append((model, list(dtypes)))
        line = "ok float32: ..." if verdict == 0 else "FAIL float32: jfk not token-identical"
        return subprocess.CompletedProcess([], verdict, stdout=line, stderr="")

    monkeypatch.setattr(precompile_module, "precompile", lambda *args: written)
    monkeypatch.setattr(precompile_module, "_shipped_dir", lambda: tmp_path)
    monkeypatch.setattr(verify_build, "check_in_fresh_store", fake_check)
    code = main(["--target", "cpu:x86-64-v3", "--dtypes", "float32"])
    assert checks == [("tiny.en", ["float32"])]
    return written, code


def test_a_shipped_build_that_transcribes_right_is_kept(monkeypatch, tmp_path, capsys):
    written, code = _fake_build(monkeypatch, tmp_path, verdict=0)
    assert code == 0 and all(path.is_file() for path in written)
    assert (tmp_path / "cache" / "maxwhisper" / "key.mef").is_file()
    assert "ok float32" in capsys.readouterr().err


def test_a_shipped_build_that_transcribes_wrong_is_removed(monkeypatch, tmp_path, capsys):
    written, code = _fake_build(monkeypatch, tmp_path, verdict=1)
    assert code == 1 and not any(path.exists() for path in written)
    store = tmp_path / "cache" / "maxwhisper"
    assert sorted(p.name for p in store.iterdir()) == ["other.mef"]  # the store's copy is gone too
    err = capsys.readouterr().err
    assert "FAIL float32: jfk not token-identical" in err
    assert "computes wrong transcripts (above) and was removed" in err
