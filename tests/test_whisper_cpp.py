"""whisper.cpp as a benchmark peer: the ggml converter (header, vocabulary, tensor types, q8_0
blocks) and whisper.cpp's transcript of ``jfk`` from the converted file against openai-whisper's
on the same weights."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from maxwhisper_lib.audio.load import load_audio
from maxwhisper_lib.checkpoints import ggml_path
from maxwhisper_lib.checkpoints.ggml import (
    TENSOR_F16,
    TENSOR_F32,
    TENSOR_Q8_0,
    dequantize_q8_0,
    quantize_q8_0,
    read_ggml_header,
    vocabulary,
    write_ggml,
)
from maxwhisper_lib.decoding.text import normalize, word_error_rate
from maxwhisper_lib.errors import WeightsError
from maxwhisper_lib.lab.benchmark import make_engine
from maxwhisper_lib.lab.manifest import clip


@pytest.fixture(scope="module")
def ggml_files(tiny_weights, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ggml")
    return {
        kind: write_ggml(tiny_weights, folder / f"{kind}.bin", kind) for kind in ("f16", "q8_0")
    }


def test_header_holds_the_models_dimensions_filters_and_vocabulary(ggml_files, tiny_weights):
    dims = tiny_weights.dims
    for kind, file_type in (("f16", 1), ("q8_0", 2007)):
        header = read_ggml_header(ggml_files[kind])
        assert header["hparams"] == {**dims.to_dict(), "ftype": file_type}
        assert header["mel_filters"] == (dims.n_mels, 201)
        assert header["n_tokens"] == len(vocabulary(dims.n_vocab)) == 50256  # gpt2 ranks


def test_every_tensor_is_stored_with_its_shape_in_whisper_cpps_types(ggml_files, tiny_weights):
    for kind in ("f16", "q8_0"):
        tensors = read_ggml_header(ggml_files[kind])["tensors"]
        assert set(tensors) == set(tiny_weights.tensors)
        for name, array in tiny_weights.tensors.items():
            shape, ttype, _ = tensors[name]
            bias = name in ("encoder.conv1.bias", "encoder.conv2.bias")
            assert shape == ((array.shape[0], 1) if bias else array.shape), name
            if array.ndim == 1 or bias or name.endswith("positional_embedding"):
                assert ttype == TENSOR_F32, name
            elif array.ndim == 3 or kind == "f16":
                assert ttype == TENSOR_F16, name  # the conv kernels stay float16
            else:
                assert ttype == TENSOR_Q8_0, name


def test_float16_tensors_are_the_checkpoints_values_bit_for_bit(ggml_files, tiny_weights):
    path = ggml_files["f16"]
    tensors = read_ggml_header(path)["tensors"]
    name = "decoder.token_embedding.weight"
    shape, _, offset = tensors[name]
    stored = np.fromfile(path, dtype=np.float16, count=int(np.prod(shape)), offset=offset)
    np.testing.assert_array_equal(stored.reshape(shape), tiny_weights.tensors[name])


def test_q8_0_blocks_round_to_within_half_a_step():
    rng = np.random.default_rng(0)
    matrix = (rng.standard_normal((8, 96)) * rng.uniform(0.01, 3, (8, 1))).astype(np.float32)
    matrix[3] = 0.0  # an all-zero row: scale 0, values 0
    restored = dequantize_q8_0(quantize_q8_0(matrix), matrix.shape)
    blocks, back = matrix.reshape(-1, 32), restored.reshape(-1, 32)
    step = np.abs(blocks).max(axis=1, keepdims=True) / 127
    # half a step of rounding, plus the float16 scale's own rounding (2^-11) on up to 127 steps
    assert np.all(np.abs(back - blocks) <= step * (0.5 + 127 * 2.0**-11))
    np.testing.assert_array_equal(restored[3], 0.0)
    assert len(quantize_q8_0(matrix)) == matrix.size // 32 * 34


def test_q8_0_rounds_ties_away_from_zero_like_ggml():
    block = np.zeros(32, np.float32)
    block[:3] = [127.0, 0.5, -0.5]  # scale exactly 1: the ties must go to 1 and -1
    restored = dequantize_q8_0(quantize_q8_0(block[None]), (1, 32))
    np.testing.assert_array_equal(restored[0, :3], [127.0, 1.0, -1.0])


def test_q8_0_refuses_rows_that_are_not_whole_blocks(tiny_weights, tmp_path):
    with pytest.raises(WeightsError, match="multiple of 32"):
        quantize_q8_0(np.zeros((2, 40), np.float32))
    with pytest.raises(WeightsError, match="unknown ggml kind"):
        write_ggml(tiny_weights, tmp_path / "x.bin", "q4_0")
    assert not list(tmp_path.iterdir())  # nothing half-written left behind


@pytest.fixture(scope="module")
def jfk_openai(tiny_weights):
    """jfk and openai-whisper's greedy transcript of it from the extracted ``.pt``."""
    import whisper

    from maxwhisper_lib.checkpoints import checkpoint_path

    model = whisper.load_model(str(checkpoint_path("tiny.en")), device="cpu")
    audio = load_audio(clip("jfk").path)
    return audio, whisper.transcribe(model, audio, temperature=0.0, verbose=None, fp16=False)[
        "text"
    ]


def test_whisper_cpp_f16_transcribes_jfk_as_openai_whisper(jfk_openai):
    """Same words as openai-whisper on the same weights (whisper.cpp computes in float16 and
    places its own timestamps, so punctuation may differ: compared after Whisper's normaliser)."""
    audio, reference = jfk_openai
    engine = make_engine("whisper.cpp-f16")
    engine.load()
    transcript = engine.transcribe(audio)
    assert normalize(transcript.text) == normalize(reference)
    assert transcript.tokens and max(transcript.tokens) >= 50363  # text and timestamp tokens


def test_whisper_cpp_q8_0_stays_close_on_jfk(jfk_openai):
    audio, reference = jfk_openai
    engine = make_engine("whisper.cpp-q8_0")
    engine.load()
    assert word_error_rate([reference], [engine.transcribe(audio).text]) <= 0.1


def test_ggml_file_is_written_once_into_the_model_folder(tiny_weights):
    path = ggml_path("tiny.en", "f16")
    assert path.name == "ggml-f16.bin" and path.is_file()
    before = path.stat().st_mtime_ns
    assert ggml_path("tiny.en", "f16").stat().st_mtime_ns == before


def test_whisper_cpps_loader_log_stays_out_of_a_notebook(tiny_weights):
    """In Jupyter ``sys.stderr`` has no file descriptor, so pywhispercpp's own redirect misses
    whisper.cpp's C log (~90 lines on file descriptor 2, shown in red in notebook 04's HTML):
    the engine keeps it out at the descriptor level."""
    script = (
        "import io, sys\n"
        "from maxwhisper_lib.lab.benchmark.engines import make_engine\n"
        "sys.stderr = io.StringIO()  # as ipykernel's stream: no fileno()\n"
        "make_engine('whisper.cpp-f16').load()\n"
        "sys.__stdout__.write('loaded')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == "loaded", done.stderr[-2000:]
    assert "whisper_model_load" not in done.stderr and "whisper_init" not in done.stderr


def test_the_c_log_is_there_to_be_kept_out():
    """The check above can fail: without the engine's redirect the log reaches descriptor 2."""
    script = (
        "import io, sys\n"
        "from maxwhisper_lib.checkpoints import ggml_path\n"
        "from pywhispercpp.model import Model\n"
        "path = ggml_path('tiny.en', 'f16')\n"
        "sys.stderr = io.StringIO()\n"
        "Model(str(path), redirect_whispercpp_logs_to=None)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "whisper_model_load" in done.stderr
