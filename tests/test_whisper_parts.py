"""openai-whisper's torch-free parts: the same objects' behaviour without importing torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import whisper.audio
import whisper.tokenizer
import whisper.utils
from whisper.utils import exact_div

from maxwhisper_lib.audio import constants as audio_constants
from maxwhisper_lib.audio import features as mel
from maxwhisper_lib.decoding import whisper_parts
from maxwhisper_lib.paths import data_dir

MAX_PATH_MODULES = (
    "maxwhisper_lib.cli",
    "maxwhisper_lib.decoding.transcribe",
    "maxwhisper_lib.engine.model",
    "maxwhisper_lib.decoding.writers",
    "maxwhisper_lib.checkpoints",
)


def test_audio_constants_are_openai_whispers():
    """Every constant of whisper.audio that audio_constants defines has whisper's value, and
    the modules that re-export them hand out the same objects."""
    shared = [n for n in dir(audio_constants) if n.isupper() and hasattr(whisper.audio, n)]
    assert {"SAMPLE_RATE", "N_FFT", "HOP_LENGTH", "CHUNK_LENGTH", "N_SAMPLES", "N_FRAMES"} <= set(
        shared
    )
    for name in shared:
        assert getattr(audio_constants, name) == getattr(whisper.audio, name), name
    assert audio_constants.TIME_PRECISION == 0.02  # openai-whisper's transcribe.py
    # openai-whisper's transcribe: exact_div(N_FRAMES, dims.n_audio_ctx), 1500 for every size
    assert exact_div(whisper.audio.N_FRAMES, 1500) == audio_constants.INPUT_STRIDE
    for name in (
        "SAMPLE_RATE",
        "N_SAMPLES",
        "HOP_LENGTH",
        "N_FFT",
        "N_FRAMES",
        "FRAMES_PER_SECOND",
    ):
        assert getattr(mel, name) is getattr(audio_constants, name)


@pytest.mark.parametrize("n_mels", [80, 128])
def test_mel_filters_are_openai_whispers(n_mels):
    expected = whisper.audio.mel_filters("cpu", n_mels).numpy()
    assert mel.mel_filters(n_mels).dtype == expected.dtype
    np.testing.assert_array_equal(mel.mel_filters(n_mels), expected)


@pytest.mark.parametrize("shape, length, axis", [((2, 3500), 3000, -1), ((2, 10), 3000, -1),
                                                 ((7, 4), 5, 0), ((3, 3000), 3000, 1)])  # fmt: skip
def test_pad_or_trim_is_openai_whispers(shape, length, axis):
    array = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    expected = whisper.audio.pad_or_trim(array, length, axis=axis)
    np.testing.assert_array_equal(mel.pad_or_trim(array, length, axis=axis), expected)


def test_modules_are_whispers_own_once_it_is_imported():
    """With openai-whisper imported (as here) its own modules are used: one Tokenizer class."""
    assert whisper_parts.module("tokenizer") is whisper.tokenizer
    assert whisper_parts.module("utils") is whisper.utils
    with pytest.raises(ValueError, match="torch-free"):
        whisper_parts.module("model")


def run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_max_path_imports_no_torch():
    imports = "; ".join(f"import {name}" for name in MAX_PATH_MODULES)
    out = run_python(
        f"{imports}; import sys; from maxwhisper_lib.decoding.tokenizer import get_tokenizer; "
        "from maxwhisper_lib.dims import ModelDimensions; "
        "print(sorted(m for m in ('torch', 'whisper') if m in sys.modules))"
    )
    assert out.strip() == "[]"


@pytest.mark.slow
def test_a_max_transcription_from_the_cli_imports_no_torch(max_tiny, tmp_path):
    """The whole command (weights, graphs read back, decoding, writers) without torch; the
    ``max_tiny`` fixture has compiled the model already, so this process reads it back."""
    audio = data_dir() / "jfk.flac"
    out = run_python(
        "import sys; from maxwhisper_lib.cli import main; "
        f"rc = main([{str(audio)!r}, '--model', 'tiny.en', '--device', 'cpu', "
        f"'--output_dir', {str(tmp_path)!r}]); "
        "print('RESULT', rc, sorted(m for m in ('torch', 'whisper') if m in sys.modules))"
    )
    assert out.strip().splitlines()[-1] == "RESULT 0 []"
    text = (tmp_path / "jfk.txt").read_text()
    assert "ask not what your country can do for you" in text
