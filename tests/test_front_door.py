"""The front door (``maxwhisper_lib.load_model``), its streaming form and its errors; the
product apart from the lab (no product module imports ``maxwhisper_lib.lab`` or needs the
lab's packages)."""

from __future__ import annotations

import ast
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fakes import ScriptedBackend
from test_seek_loop import DIMS, FIFTY_SECONDS, GREEDY, TOKENIZER, audio

import maxwhisper_lib as mw
from maxwhisper_lib.api import WhisperModel

PACKAGE = Path(mw.__file__).resolve().parent
LAB = PACKAGE / "lab"
LAB_PACKAGES = ("jiwer", "pandas", "matplotlib", "papermill", "nbconvert", "nbval", "jupyterlab")


def product_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if LAB not in p.parents)


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; relative ones resolved), lazily or not."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    else:
        package = package.removesuffix(".__init__")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def test_no_product_module_imports_the_lab():
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(
            m for m in imported_modules(path) if m.startswith("maxwhisper_lib.lab")
        )
        for path in product_modules()
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_import_check_sees_a_lab_import(tmp_path):
    """The check above fails on a product file that imports the lab, relatively or lazily."""
    fake = PACKAGE / "engine" / "_lab_import_probe.py"
    fake.write_text("def f():\n    from ..lab import plots\n")
    try:
        assert "maxwhisper_lib.lab.plots" in imported_modules(fake)
    finally:
        fake.unlink()


def test_the_product_imports_without_the_labs_packages():
    """Every product module imports with the lab's packages made unimportable."""
    modules = [
        ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for p in product_modules()
        if p.name != "__main__.py"
    ]
    script = f"""
import importlib, importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {LAB_PACKAGES!r}:
            raise ImportError(f"lab package {{name}} imported")
sys.meta_path.insert(0, Refuse())
for module in {modules!r}:
    importlib.import_module(module)
print(len({modules!r}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout) == len(modules) > 40


# ------------------------------------------------------------------ errors at the front door


def test_an_unknown_model_name_lists_what_can_be_loaded():
    with pytest.raises(mw.WeightsError) as raised:
        mw.load_model("small.en", device="cpu")
    message = str(raised.value)
    assert "'small.en'" in message
    for name in mw.available_models():
        assert name in message
    assert ".pt checkpoint" in message and "CTranslate2" in message and "ggml" in message


def test_available_models_are_the_named_ones():
    assert mw.available_models() == ["tiny.en", "base"]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"device": "tpu"}, "unknown device 'tpu'; choose one of auto, cpu, gpu"),
        ({"device": 0}, "device must be a string"),
        ({"device": "cpu", "dtype": "int8"}, "int8 is quantization='int8', not a dtype"),
        ({"device": "cpu", "dtype": "float16"}, "dtype float16 is supported on GPU only"),
        ({"device": "cpu", "quantization": "int4"}, "unknown quantization 'int4'"),
        ({"device": "cpu", "engine": "onnx"}, "unknown engine 'onnx'"),
        (
            {"device": "cpu", "engine": "torch", "quantization": "int8"},
            "quantization int8 is MAX's CPU mode",
        ),
    ],
)
def test_bad_load_options_are_one_clear_error(kwargs, expected):
    with pytest.raises(mw.DecodingOptionsError) as raised:
        mw.load_model("tiny.en", **kwargs)
    assert expected in str(raised.value)


def test_a_gpu_asked_for_where_there_is_none(monkeypatch):
    from maxwhisper_lib.engine import runtime

    monkeypatch.setattr(runtime, "gpu_available", lambda: False)
    with pytest.raises(mw.DecodingOptionsError, match="MAX sees no accelerator"):
        mw.load_model("tiny.en", device="gpu")


def scripted_model() -> tuple[WhisperModel, ScriptedBackend]:
    backend = ScriptedBackend(DIMS, lambda seek: FIFTY_SECONDS[seek], TOKENIZER)
    return WhisperModel(backend, "scripted", "cpu", "float32"), backend


@pytest.mark.parametrize(
    ("audio_input", "expected"),
    [
        (b"not audio at all", "<bytes>: not a readable audio file"),
        (b"", "<bytes>: empty (0 bytes)"),
        (io.BytesIO(b"\x00garbage"), "<file object>: not a readable audio file"),
        (io.StringIO("text"), "opened in binary mode"),
        (12, "unsupported audio input int"),
    ],
)
def test_bad_audio_is_one_clear_error(audio_input, expected):
    model, _ = scripted_model()
    with pytest.raises(mw.AudioError) as raised:
        model.transcribe(audio_input)
    assert expected in str(raised.value)


def test_bad_audio_fails_when_streaming_starts_not_while_iterating():
    model, _ = scripted_model()
    with pytest.raises(mw.AudioError):
        model.stream(b"not audio")
    with pytest.raises(mw.DecodingOptionsError):
        model.stream(audio(50), beam_size=0)


# ------------------------------------------------------------------ streaming


def test_streaming_yields_the_dicts_segments_each_once_its_window_is_decoded():
    model, backend = scripted_model()
    expected = model.transcribe(audio(50), **GREEDY)["segments"]
    backend.windows.clear()
    segments, info = model.stream(audio(50), **GREEDY)
    assert info == mw.TranscriptionInfo("en", None, 50.0)
    assert backend.windows == []  # nothing decoded yet: the language of tiny.en is known
    first = next(segments)
    assert backend.windows == [0]  # the first segment came after the first window only
    assert [first, *segments] == expected
    assert backend.windows == [0, 3000, 3500]


def test_audio_as_path_array_bytes_and_file_object_give_the_same_transcript(tmp_path):
    import soundfile

    samples = audio(50)
    path = tmp_path / "a.wav"
    soundfile.write(path, samples, 16000, subtype="FLOAT")
    model, _ = scripted_model()
    texts = {
        kind: model.transcribe(source, **GREEDY)["text"]
        for kind, source in {
            "path": str(path),
            "array": samples,
            "bytes": path.read_bytes(),
            "file": path.open("rb"),
        }.items()
    }
    assert set(texts.values()) == {" Hello world again the end"}


# ------------------------------------------------------------------ the real model


@pytest.mark.slow
def test_a_newcomers_three_lines(jfk_clip):
    """``import maxwhisper_lib as mw; m = mw.load_model("tiny.en"); m.transcribe(path)["text"]``
    gives openai-whisper's transcript of the same weights, token for token."""
    import whisper

    from maxwhisper_lib.audio.load import load_audio
    from maxwhisper_lib.checkpoints import checkpoint_path

    m = mw.load_model("tiny.en")
    assert (m.device, m.dtype, m.quantization) == ("cpu", "float32", None)
    ours = m.transcribe(str(jfk_clip.path))
    reference = whisper.load_model(checkpoint_path("tiny.en"), device="cpu")
    # openai-whisper reads files with an ffmpeg binary, which this machine need not have: it
    # gets the samples PyAV decodes (tests/test_audio.py holds them to ffmpeg's)
    theirs = reference.transcribe(load_audio(jfk_clip.path), fp16=False)
    assert ours["text"] == theirs["text"]
    assert [s["tokens"] for s in ours["segments"]] == [s["tokens"] for s in theirs["segments"]]


@pytest.mark.slow
def test_streaming_a_long_clip_gives_the_first_segment_before_the_file_is_done(max_tiny):
    """Three dev clips joined (over 60 s: three windows or more): the first segment comes after
    the first window's decoding, and all segments equal transcribe()'s."""
    from maxwhisper_lib.audio.load import load_audio
    from maxwhisper_lib.lab.manifest import clip

    pause = np.zeros(8000, np.float32)
    names = ("jfk", "ljspeech-lj023-0051-0058", "ljspeech-lj028-0030-0039", "jfk")
    long = np.concatenate([x for n in names for x in (load_audio(clip(n).path), pause)])
    model = WhisperModel(max_tiny, "tiny.en", "cpu", "float32")
    expected = model.transcribe(long)["segments"]
    encoded: list[int] = []
    real_embed = max_tiny.embed_audio

    def counting_embed(mel):
        encoded.append(len(mel))
        return real_embed(mel)

    max_tiny.embed_audio = counting_embed
    try:
        segments, info = model.stream(long)
        assert info.language == "en" and info.duration == pytest.approx(len(long) / 16000)
        first = next(segments)
        windows_at_first = len(encoded)
        rest = list(segments)
    finally:
        del max_tiny.embed_audio
    assert windows_at_first == 1 and len(encoded) >= 3
    assert [first, *rest] == expected


def test_batch_size_cuts_one_file_into_spans_decoded_side_by_side():
    """``batch_size`` at the front door is ``transcribe``'s (the file's 30 s spans batched), in
    the dict and in the stream alike."""
    from maxwhisper_lib.decoding.transcribe import transcribe

    model, backend = scripted_model()
    expected = transcribe(backend, audio(50), batch_size=2, **GREEDY)
    backend.windows.clear()
    assert model.transcribe(audio(50), batch_size=2, **GREEDY) == expected
    # spans 0-30 s and 30-50 s, one window each (a span keeps its cut-off last segment), where
    # the unbatched loop decodes 0, 3000 and 3500
    assert sorted(backend.windows) == [0, 3000]
    segments, _ = model.stream(audio(50), batch_size=2, **GREEDY)
    assert list(segments) == expected["segments"]
