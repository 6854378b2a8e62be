"""Every official Whisper architecture at its real widths, heads, mel bins and vocabulary, on
random weights (no larger checkpoint can be downloaded here): the catalog's dims, the tokenizer
and, with both stacks cut to 2 blocks to keep CI's compile time down, MAX's encoder and decoder
against openai-whisper's PyTorch modules on the same weights (float32 within 1e-4).

``pytest -k large_v3`` (or ``turbo``, ``distil_large_v3``, ``medium``...) selects one. At 2
blocks large-v3 and large-v3-turbo have the same dims (they differ in depth only), so one
compiled model serves both; distil-large-v3 is cut to 3 blocks, which keeps its encoder deeper
than its 2-block decoder (stacks of different depths, as in the real checkpoint).
"""

from __future__ import annotations

import numpy as np
import pytest
import whisper.tokenizer

from maxwhisper_lib.checkpoints.canonical import expected_shapes
from maxwhisper_lib.checkpoints.catalog import (
    OFFICIAL_NAMES,
    PUBLISHED_PARAMETERS_M,
    guess_model_name,
    official_dims,
    size_name,
)
from maxwhisper_lib.decoding.tokenizer import get_tokenizer
from maxwhisper_lib.lab.architecture_checks import (
    CHECKED,
    MAX_LAYERS,
    TOLERANCE,
    check_architecture,
)
from maxwhisper_lib.lab.checks import clip_window


def architecture_id(name: str) -> str:
    return name.replace("-", "_").replace(".", "_")


def parameters(dims) -> int:
    return sum(int(np.prod(shape)) for shape in expected_shapes(dims).values())


@pytest.mark.parametrize("name", OFFICIAL_NAMES, ids=architecture_id)
def test_official_dims_have_the_published_size(name):
    """Each architecture's parameter count is the one its model card publishes (OpenAI rounds
    up: tiny's 37.8 M are called 39 M)."""
    dims = official_dims(name)
    published = PUBLISHED_PARAMETERS_M[size_name(dims)] * 1e6
    assert parameters(dims) == pytest.approx(published, rel=0.04)
    if name not in ("large", "large-v1", "large-v2", "turbo"):  # aliases and ambiguous versions
        assert guess_model_name(dims) == name


def test_large_v3_has_128_mel_bins_and_100_languages():
    dims = official_dims("large-v3")
    assert (dims.n_mels, dims.n_vocab, dims.num_languages) == (128, 51866, 100)
    assert official_dims("turbo") == official_dims("large-v3-turbo")
    assert official_dims("large-v3", max_layers=2).n_audio_layer == 2
    with pytest.raises(KeyError, match="unknown Whisper checkpoint"):
        official_dims("large.en")


def test_tokenizer_of_a_51866_token_vocabulary_is_openai_whispers():
    ours = get_tokenizer(official_dims("large-v3"), language="yue", task="transcribe")
    theirs = whisper.tokenizer.get_tokenizer(
        True, num_languages=100, language="yue", task="transcribe"
    )
    assert ours.sot_sequence == theirs.sot_sequence
    assert ours.timestamp_begin == theirs.timestamp_begin == 50365
    assert ours.encoding.n_vocab == theirs.encoding.n_vocab == 51866


@pytest.fixture(scope="module")
def jfk_windows():
    return {n_mels: clip_window("jfk", n_mels)[None] for n_mels in (80, 128)}


@pytest.mark.slow
@pytest.mark.parametrize("name", CHECKED, ids=architecture_id)
def test_encoder_and_decoder_match_openai_whisper(name, jfk_windows):
    """At the architecture's real width, heads, mel bins and vocabulary (2 blocks per stack, 3
    and 2 for distil-large-v3): MAX's encoder output and the decoder's logits, for a prompt and
    then one cached step, within 1e-4 of openai-whisper's PyTorch modules holding the same
    random weights."""
    dims = official_dims(name, max_layers=MAX_LAYERS.get(name, 2))
    if name == "distil-large-v3":
        assert (dims.n_audio_layer, dims.n_text_layer) == (3, 2)
    result = check_architecture(name, jfk_windows[dims.n_mels])
    assert result["encoder_rel_error"] < TOLERANCE, result
    assert result["prompt_logits_rel_error"] < TOLERANCE, result
    assert result["step_logits_rel_error"] < TOLERANCE, result
    assert result["logits_shapes"] == [
        (1, 7 if dims.is_multilingual else 5, dims.n_vocab),
        (1, 1, dims.n_vocab),
    ]
    assert result["passed"]
