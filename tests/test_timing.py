"""Word timestamps against openai-whisper's ``whisper/timing.py``.

The median filter is compared on random arrays; the alignment (cross-attention -> DTW -> words)
and the segment-level heuristics are compared on real clips through openai-whisper's own PyTorch
module (:class:`~maxwhisper_lib.decoding.reference.TorchBackend`), where both sides see the very same
attention weights, so the times must agree exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import whisper
import whisper.timing as ow_timing
from whisper.model import ModelDimensions as OwDimensions
from whisper.model import Whisper as OwWhisper

from maxwhisper_lib.audio.load import load_audio
from maxwhisper_lib.decoding.decode import decode
from maxwhisper_lib.decoding.timing import alignment_heads, find_alignment, median_filter
from maxwhisper_lib.decoding.tokenizer import get_tokenizer
from maxwhisper_lib.decoding.transcribe import transcribe
from maxwhisper_lib.lab.manifest import clip

# ---------------------------------------------------------------------------------------------
# median filter


@pytest.mark.parametrize("shape", [(1,), (3,), (4,), (50,), (7, 40), (2, 3, 31), (4, 6, 5, 60)])
@pytest.mark.parametrize("width", [1, 3, 7, 9])
def test_median_filter_matches_openai_whisper(shape, width):
    rng = np.random.default_rng([width, *shape])
    x = rng.normal(size=shape).astype(np.float32)
    x[..., ::5] = np.round(x[..., ::5])  # ties inside windows
    expected = ow_timing.median_filter(torch.from_numpy(x.copy()), width).numpy()
    np.testing.assert_array_equal(median_filter(x, width), expected)


@pytest.mark.parametrize("width", [3, 7])
def test_median_filter_sorts_nan_last_as_openai_whisper(width):
    x = np.random.default_rng(width).normal(size=(3, 5, 40)).astype(np.float32)
    x[0, 0] = np.nan  # a whole row
    x[1, :, 10:14] = np.nan  # most of some windows
    x[2, :, ::6] = np.nan  # one in some windows
    x[2, 1, 3] = np.inf
    expected = ow_timing.median_filter(torch.from_numpy(x.copy()), width).numpy()
    np.testing.assert_array_equal(median_filter(x, width), expected)


def test_the_chosen_tokens_probabilities_are_the_full_softmaxs():
    from maxwhisper_lib.decoding.timing import _softmax, _softmax_at

    rng = np.random.default_rng(5)
    logits = (rng.normal(size=(40, 51864)) * 6).astype(np.float32)
    chosen = rng.integers(0, 51864, 40).tolist()
    full = _softmax(logits)[np.arange(40), chosen]
    np.testing.assert_array_equal(_softmax_at(logits, chosen), full)


@pytest.mark.parametrize("width", [0, 2, -3])
def test_median_filter_rejects_even_or_non_positive_widths(width):
    with pytest.raises(ValueError, match="odd"):
        median_filter(np.zeros((2, 20), np.float32), width)


# ---------------------------------------------------------------------------------------------
# alignment heads


def test_alignment_heads_are_openai_whispers(torch_tiny):
    expected = sorted(map(tuple, torch_tiny.model.alignment_heads.indices().T.tolist()))
    assert alignment_heads(torch_tiny) == expected
    assert expected  # tiny.en names its heads


def test_default_alignment_heads_are_the_upper_half_of_the_decoder():
    dims = OwDimensions(80, 8, 8, 2, 2, 51864, 8, 9, 3, 4)  # a toy model: only the shape matters
    model = OwWhisper(dims)
    expected = sorted(map(tuple, model.alignment_heads.indices().T.tolist()))

    class Backend:
        alignment_heads = None

    Backend.dims = dims
    assert (
        alignment_heads(Backend()) == expected == [(2, 0), (2, 1), (2, 2), (3, 0), (3, 1), (3, 2)]
    )


# ---------------------------------------------------------------------------------------------
# find_alignment on jfk


@pytest.fixture(scope="module")
def jfk_window(jfk_audio) -> tuple[np.ndarray, int]:
    """openai-whisper's log-mel of jfk's window and its number of frames of real audio."""
    mel = whisper.log_mel_spectrogram(torch.from_numpy(jfk_audio))
    return whisper.pad_or_trim(mel, whisper.audio.N_FRAMES).numpy(), len(jfk_audio) // 160


@pytest.mark.slow
@pytest.mark.parametrize("medfilt_width,qk_scale", [(7, 1.0), (3, 1.0), (7, 0.5)])
def test_find_alignment_matches_openai_whisper(torch_tiny, jfk_window, medfilt_width, qk_scale):
    mel, num_frames = jfk_window
    tokenizer = get_tokenizer(torch_tiny.dims)
    text_tokens = decode(torch_tiny, mel, without_timestamps=True).tokens
    assert len(text_tokens) > 15
    expected = ow_timing.find_alignment(
        torch_tiny.model,
        tokenizer,
        text_tokens,
        torch.from_numpy(mel),
        num_frames,
        medfilt_width=medfilt_width,
        qk_scale=qk_scale,
    )
    features = torch_tiny.embed_audio(mel[None])
    ours = find_alignment(
        torch_tiny,
        tokenizer,
        text_tokens,
        features,
        0,
        num_frames,
        medfilt_width=medfilt_width,
        qk_scale=qk_scale,
    )
    assert [w.word for w in ours] == [w.word for w in expected]
    assert [w.tokens for w in ours] == [w.tokens for w in expected]
    np.testing.assert_array_equal([w.start for w in ours], [w.start for w in expected])
    np.testing.assert_array_equal([w.end for w in ours], [w.end for w in expected])
    # openai-whisper re-encodes the window inside disable_sdpa() (its encoder then takes the
    # explicit softmax path) where we reuse the window's features: probabilities move by ~1e-5
    np.testing.assert_allclose(
        [w.probability for w in ours], [w.probability for w in expected], atol=1e-4
    )
    assert "".join(w.word for w in ours).strip().startswith("And so")
    assert 0 < ours[1].start < ours[-2].end <= num_frames / 100


def test_find_alignment_of_no_tokens_is_empty(torch_tiny, jfk_window):
    mel, num_frames = jfk_window
    tokenizer = get_tokenizer(torch_tiny.dims)
    assert (
        find_alignment(torch_tiny, tokenizer, [], torch_tiny.embed_audio(mel[None]), 0, num_frames)
        == []
    )


# ---------------------------------------------------------------------------------------------
# segment-level word timestamps (punctuation merging, edge heuristics, several windows)


def _words(result: dict) -> list[tuple]:
    return [
        (w["word"], w["start"], w["end"])
        for segment in result["segments"]
        for w in segment.get("words", [])
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    "clip_id,options",
    [
        ("jfk", {}),
        ("osr-us-000-0034", {}),  # two windows: the seek moves to the last word's end
        ("osr-us-000-0034", {"prepend_punctuations": "", "append_punctuations": ""}),
        ("stereo-diarization", {"hallucination_silence_threshold": 0.5}),
    ],
    ids=lambda v: v if isinstance(v, str) else ",".join(v) or "defaults",
)
def test_word_timestamps_match_openai_whisper(torch_tiny, clip_id, options):
    audio = load_audio(clip(clip_id).path)
    kwargs = {"temperature": 0.0, "word_timestamps": True, **options}
    theirs = whisper.transcribe(torch_tiny.model, audio, fp16=False, language="en", **kwargs)
    ours = transcribe(torch_tiny, audio, **kwargs)
    assert _words(ours) == _words(theirs)
    assert [(s["start"], s["end"]) for s in ours["segments"]] == [
        (s["start"], s["end"]) for s in theirs["segments"]
    ]
    probabilities = [w["probability"] for s in ours["segments"] for w in s["words"]]
    expected = [w["probability"] for s in theirs["segments"] for w in s["words"]]
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)  # see find_alignment's test
    assert len(probabilities) >= 5
    if not options:
        # punctuation is merged into the neighbouring words, never a word of its own
        assert all(w[0].strip() not in {",", ".", "?", "!"} for w in _words(ours))
