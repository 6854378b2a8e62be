"""Decoding against openai-whisper's own ``whisper/decoding.py``.

The logit filters, the initial tokens, the suppressed-token set and the beam search are compared
with openai-whisper's classes on random logits and token histories (no model needed); ``decode``
of jfk's first window is compared with ``whisper.decode`` on the MAX engine and, for every option
family, on the PyTorch reference through our loop.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import whisper
import whisper.decoding as ow

from maxwhisper_lib.decoding.decode import (
    BeamSearchDecoder,
    DecodingOptions,
    DecodingTask,
    GreedyDecoder,
    LogitFilters,
    decode,
    rank_candidates,
    validate_options,
)
from maxwhisper_lib.decoding.tokenizer import get_tokenizer
from maxwhisper_lib.dims import ModelDimensions
from maxwhisper_lib.errors import DecodingOptionsError

TINY_EN = ModelDimensions(
    n_mels=80,
    n_audio_ctx=1500,
    n_audio_state=384,
    n_audio_head=6,
    n_audio_layer=4,
    n_vocab=51864,
    n_text_ctx=448,
    n_text_state=384,
    n_text_head=6,
    n_text_layer=4,
)
BASE = dataclasses.replace(
    TINY_EN,
    n_audio_state=512,
    n_audio_head=8,
    n_audio_layer=6,
    n_vocab=51865,
    n_text_state=512,
    n_text_head=8,
    n_text_layer=6,
)
DIMS = {"tiny.en": TINY_EN, "base": BASE}


def _ow_model(dims: ModelDimensions) -> SimpleNamespace:
    """What openai-whisper's ``DecodingTask.__init__`` reads from a model, and nothing else."""
    return SimpleNamespace(
        is_multilingual=dims.is_multilingual,
        num_languages=dims.num_languages,
        dims=dims,
        decoder=SimpleNamespace(blocks=[]),
    )


def _tasks(dims: ModelDimensions, **options) -> tuple[DecodingTask, ow.DecodingTask]:
    ours = DecodingTask(SimpleNamespace(dims=dims), DecodingOptions(**options))
    theirs = ow.DecodingTask(_ow_model(dims), ow.DecodingOptions(**options, fp16=False))
    return ours, theirs


# ---------------------------------------------------------------------------------------------
# initial tokens, suppressed tokens, filter configuration

TASK_OPTIONS = [
    {},
    {"without_timestamps": True},
    {"prompt": "Ask not what your country can do for you.", "prefix": "And so"},
    {"prompt": list(range(300, 700))},  # longer than n_ctx // 2: truncated from the left
    {"prefix": "my fellow", "sample_len": 100},
    {"suppress_tokens": "", "suppress_blank": False},
    {"suppress_tokens": "-1,50,220"},
    {"suppress_tokens": [13, 11]},
    {"max_initial_timestamp": None},
    {"max_initial_timestamp": 0.5},
    {"language": "de", "task": "translate"},
]


@pytest.mark.parametrize(
    "model,options",
    # English-only models take no language (see test_validate_options_against_...)
    [(m, o) for m in DIMS for o in TASK_OPTIONS if DIMS[m].is_multilingual or "language" not in o],
    ids=lambda v: v if isinstance(v, str) else ",".join(v) or "defaults",
)
def test_initial_and_suppressed_tokens_match_openai_whisper(model, options):
    dims = DIMS[model]
    ours, theirs = _tasks(dims, **options)
    initial = ours.initial_tokens(ours.options.prompt)
    assert tuple(initial) == theirs.initial_tokens
    assert initial.index(ours.tokenizer.sot) == theirs.sot_index
    if options.get("suppress_tokens", "-1"):
        assert tuple(ours.suppress_tokens()) == theirs._get_suppress_tokens()
    filters = ours.logit_filters(len(initial))
    expected = {type(f).__name__: f for f in theirs.logit_filters}
    assert (filters.blank is not None) == ("SuppressBlank" in expected)
    assert (filters.suppress is not None) == ("SuppressTokens" in expected)
    assert filters.timestamps == ("ApplyTimestampRules" in expected)
    if filters.timestamps:
        rules = expected["ApplyTimestampRules"]
        assert filters.max_initial_timestamp_index == rules.max_initial_timestamp_index


# ---------------------------------------------------------------------------------------------
# logit filters on random logits and histories


def _random_history(rng: np.random.Generator, tokenizer, batch: int, length: int) -> np.ndarray:
    """Sampled tokens shaped like real ones: text, timestamp pairs, single timestamps, EOT."""
    begin = tokenizer.timestamp_begin
    rows = []
    for _ in range(batch):
        row, clock = [], int(rng.integers(0, 40))
        while len(row) < length:
            kind = rng.choice(["text", "pair", "single", "eot"], p=[0.5, 0.25, 0.2, 0.05])
            if kind == "text":
                row.append(int(rng.integers(0, tokenizer.eot)))
            elif kind == "eot":
                row.append(tokenizer.eot)
            else:
                clock += int(rng.integers(0, 30))
                row.append(begin + min(clock, 1500))
                if kind == "pair":
                    clock += int(rng.integers(0, 3))  # equal pairs happen too
                    row.append(begin + min(clock, 1500))
        rows.append(row[:length])
    return np.array(rows, dtype=np.int64).reshape(batch, length)


def _random_logits(rng: np.random.Generator, batch: int, n_vocab: int, begin: int) -> np.ndarray:
    """Normal logits with a per-row shift of the timestamp block (so both outcomes of the
    "timestamp mass beats the best text token" rule occur) and a few -inf already."""
    logits = rng.normal(0.0, 2.0, size=(batch, n_vocab)).astype(np.float32)
    logits[:, begin:] += rng.uniform(-18, 2, size=(batch, 1)).astype(np.float32)
    logits[rng.random((batch, n_vocab)) < 0.001] = -np.inf
    return logits


@pytest.mark.parametrize("model", DIMS)
@pytest.mark.parametrize("max_initial", [None, 50])
@pytest.mark.parametrize("suppress_blank", [True, False])
def test_logit_filters_match_openai_whisper_on_random_logits(model, max_initial, suppress_blank):
    dims = DIMS[model]
    tokenizer = get_tokenizer(dims)
    rng = np.random.default_rng([len(model), max_initial or 0, int(suppress_blank)])
    sample_begin = len(tokenizer.sot_sequence) + 2  # a short prefix before the sampled tokens
    suppress = sorted({*tokenizer.non_speech_tokens, tokenizer.sot, tokenizer.sot_prev})
    ours = LogitFilters(
        tokenizer,
        sample_begin,
        suppress_blank=suppress_blank,
        suppress_tokens=suppress,
        timestamps=True,
        max_initial_timestamp_index=max_initial,
    )
    theirs: list[ow.LogitFilter] = [ow.SuppressTokens(suppress)]
    if suppress_blank:
        theirs.insert(0, ow.SuppressBlank(tokenizer, sample_begin))
    theirs.append(ow.ApplyTimestampRules(tokenizer, sample_begin, max_initial))

    forced_timestamp_rows = 0
    for length in [0, 0, 1, 1, 2, 2, 3, 5, 8, 13, 21]:
        batch = 16
        prefix = np.tile(np.array([*tokenizer.sot_sequence, 400, 500]), (batch, 1))
        tokens = np.concatenate([prefix, _random_history(rng, tokenizer, batch, length)], 1)
        logits = _random_logits(rng, batch, dims.n_vocab, tokenizer.timestamp_begin)
        expected = torch.from_numpy(logits.copy())
        for f in theirs:
            f.apply(expected, torch.from_numpy(tokens))
        ours.apply(logits, tokens)
        expected = expected.numpy()
        np.testing.assert_array_equal(np.isneginf(logits), np.isneginf(expected))
        np.testing.assert_array_equal(logits, expected)
        forced_timestamp_rows += int(
            np.isneginf(logits[:, : tokenizer.timestamp_begin]).all(1).sum()
        )
    # the random logits exercise both outcomes of the timestamp-mass rule
    assert 0 < forced_timestamp_rows < 11 * 16


def test_suppress_blank_only_at_the_first_sampled_token():
    tokenizer = get_tokenizer(TINY_EN)
    filters = LogitFilters(
        tokenizer,
        1,
        suppress_blank=True,
        suppress_tokens=[],
        timestamps=False,
        max_initial_timestamp_index=None,
    )
    first = np.zeros((1, TINY_EN.n_vocab), np.float32)
    filters.apply(first, np.array([[tokenizer.sot]]))
    blank = [*tokenizer.encode(" "), tokenizer.eot]
    assert np.isneginf(first[0, blank]).all() and np.isneginf(first).sum() == len(blank)
    later = np.zeros((1, TINY_EN.n_vocab), np.float32)
    filters.apply(later, np.array([[tokenizer.sot, 100]]))
    assert not np.isneginf(later).any()


# ---------------------------------------------------------------------------------------------
# token decoders


class _RecordingInference:
    """openai-whisper's beam search reorders the KV cache through this; we record the order."""

    def __init__(self) -> None:
        self.sources: list[int] = []

    def rearrange_kv_cache(self, source_indices) -> None:
        self.sources = list(source_indices)


@pytest.mark.parametrize(
    "beam_size,patience,n_audio", [(5, None, 1), (5, 2.0, 2), (3, 1.5, 3), (2, None, 2)]
)
def test_beam_search_matches_openai_whisper_on_random_logits(beam_size, patience, n_audio):
    rng = np.random.default_rng(beam_size * 100 + n_audio)
    n_vocab, eot = 64, 50
    n = n_audio * beam_size
    inference = _RecordingInference()
    theirs = ow.BeamSearchDecoder(beam_size, eot, inference, patience)
    ours = BeamSearchDecoder(beam_size, eot, patience)
    theirs.reset()
    ours.reset(n_audio)
    initial = np.tile(rng.integers(0, eot, size=(n_audio, 1, 3)), (1, beam_size, 1)).reshape(n, 3)
    tokens_ours = initial.copy()
    tokens_theirs = torch.from_numpy(initial.copy())
    sum_ours = np.zeros(n, np.float32)
    sum_theirs = torch.zeros(n)
    scratch = np.empty((n, n_vocab), np.float32)
    completed_theirs = False
    for step in range(40):
        logits = rng.normal(0.0, 3.0, size=(n, n_vocab)).astype(np.float32)
        logits[:, eot] += np.float32(step / 8)  # sequences finish as the steps go on
        logits[:, 55:] = -np.inf  # masked tokens (like a logit filter's) are never chosen
        tokens_theirs, completed_theirs = theirs.update(
            tokens_theirs, torch.from_numpy(logits.copy()), sum_theirs
        )
        next_tokens, sources, completed = ours.update(tokens_ours, logits, sum_ours, scratch)
        assert sources.tolist() == inference.sources
        tokens_ours = np.concatenate([tokens_ours[sources], next_tokens[:, None]], 1)
        np.testing.assert_array_equal(tokens_ours, tokens_theirs.numpy())
        np.testing.assert_allclose(sum_ours, sum_theirs.numpy(), rtol=1e-6, atol=1e-6)
        assert len(ours.finished) == len(theirs.finished_sequences)
        for mine, expected in zip(ours.finished, theirs.finished_sequences, strict=True):
            assert list(mine) == list(expected)  # same sequences, in the same order
            np.testing.assert_allclose(
                list(mine.values()), list(expected.values()), rtol=1e-6, atol=1e-6
            )
        assert completed == bool(completed_theirs)
        if completed:
            break
    assert step > 0
    candidates, logprobs = ours.finalize(tokens_ours, sum_ours.reshape(n_audio, beam_size))
    expected_candidates, expected_logprobs = theirs.finalize(
        tokens_theirs.reshape(n_audio, beam_size, -1), sum_theirs.reshape(n_audio, beam_size)
    )
    for mine, expected in zip(candidates, expected_candidates, strict=True):
        assert [c.tolist() for c in mine] == [c.tolist() for c in expected]
    np.testing.assert_allclose(
        np.concatenate(logprobs), np.concatenate(expected_logprobs), rtol=1e-6, atol=1e-6
    )
    for penalty in (None, 0.0, 0.6, 1.0):
        sliced = [[c[3:] for c in group] for group in candidates]
        ranker = ow.MaximumLikelihoodRanker(penalty)
        expected_sliced = [[torch.from_numpy(c) for c in group] for group in sliced]
        assert rank_candidates(sliced, logprobs, penalty) == [
            int(i) for i in ranker.rank(expected_sliced, expected_logprobs)
        ]


def test_greedy_decoder_matches_openai_whisper():
    rng = np.random.default_rng(7)
    n, n_vocab, eot = 6, 80, 70
    theirs = ow.GreedyDecoder(0.0, eot)
    ours = GreedyDecoder(0.0, eot, rng)
    tokens = np.full((n, 2), 5, dtype=np.int64)
    tokens_theirs = torch.from_numpy(tokens.copy())
    sum_ours, sum_theirs = np.zeros(n, np.float32), torch.zeros(n)
    scratch = np.empty((n, n_vocab), np.float32)
    for step in range(30):
        logits = rng.normal(0.0, 2.0, size=(n, n_vocab)).astype(np.float32)
        logits[:, eot] += np.float32(step / 5)
        tokens_theirs, completed_theirs = theirs.update(
            tokens_theirs, torch.from_numpy(logits.copy()), sum_theirs
        )
        next_tokens, sources, completed = ours.update(tokens, logits, sum_ours, scratch)
        assert sources is None
        tokens = np.concatenate([tokens, next_tokens[:, None]], 1)
        np.testing.assert_array_equal(tokens, tokens_theirs.numpy())
        np.testing.assert_allclose(sum_ours, sum_theirs.numpy(), rtol=1e-6, atol=1e-6)
        assert completed == bool(completed_theirs)
        if completed:
            break
    assert completed


# ---------------------------------------------------------------------------------------------
# decode() on jfk's first window


@pytest.fixture(scope="module")
def jfk_mel(jfk_audio) -> np.ndarray:
    """openai-whisper's own log-mel of jfk's first (only) 30-second window."""
    mel = whisper.log_mel_spectrogram(torch.from_numpy(jfk_audio))
    return whisper.pad_or_trim(mel, whisper.audio.N_FRAMES).numpy()


def _assert_same_result(ours, theirs) -> None:
    assert ours.tokens == theirs.tokens
    assert ours.text == theirs.text
    assert ours.language == theirs.language
    assert ours.avg_logprob == pytest.approx(theirs.avg_logprob, abs=1e-4)
    assert ours.no_speech_prob == pytest.approx(theirs.no_speech_prob, abs=1e-4)
    assert ours.compression_ratio == pytest.approx(theirs.compression_ratio)


@pytest.mark.slow
def test_max_decode_of_jfk_equals_whisper_decode(max_tiny, torch_tiny, jfk_mel):
    theirs = whisper.decode(torch_tiny.model, torch.from_numpy(jfk_mel), fp16=False, language="en")
    ours = decode(max_tiny, jfk_mel)
    _assert_same_result(ours, theirs)
    assert "ask not what your country can do for you" in ours.text
    assert ours.tokens[0] == get_tokenizer(TINY_EN).timestamp_begin  # <|0.00|>


DECODE_OPTIONS = [
    {"beam_size": 5},
    {"beam_size": 3, "patience": 2.0, "length_penalty": 0.5},
    {"without_timestamps": True},
    {"prompt": "President Kennedy's inaugural address.", "prefix": "And so, my"},
    {"suppress_tokens": "", "suppress_blank": False, "max_initial_timestamp": None},
    {"sample_len": 12},
]


@pytest.mark.slow
@pytest.mark.parametrize("options", DECODE_OPTIONS, ids=lambda o: ",".join(o))
def test_decode_options_match_whisper_decode(torch_tiny, jfk_mel, options):
    """Our loop on openai-whisper's own module (the same logits) gives openai-whisper's result."""
    theirs = whisper.decode(
        torch_tiny.model, torch.from_numpy(jfk_mel), fp16=False, language="en", **options
    )
    ours = decode(torch_tiny, jfk_mel, **options)
    _assert_same_result(ours, theirs)


@pytest.mark.slow
def test_max_beam_decode_of_a_batch_equals_whisper_decode(max_tiny, torch_tiny, jfk_audio):
    """Two windows (jfk, and its first 8 s at half volume) decoding together, 5 beams each."""
    clips = [jfk_audio, jfk_audio[: 8 * 16000] * np.float32(0.5)]
    mels = np.stack(
        [
            whisper.pad_or_trim(whisper.log_mel_spectrogram(torch.from_numpy(a)), 3000).numpy()
            for a in clips
        ]
    )
    # one window at a time: openai-whisper's own batched beam search fails on a batch (its
    # decoder gets the token rows repeated per beam but not the audio features)
    theirs = [
        whisper.decode(
            torch_tiny.model, torch.from_numpy(m), fp16=False, language="en", beam_size=5
        )
        for m in mels
    ]
    ours = decode(max_tiny, mels, beam_size=5)
    assert len(ours) == 2
    assert ours[0].text != ours[1].text
    for mine, expected in zip(ours, theirs, strict=True):
        _assert_same_result(mine, expected)


# ---------------------------------------------------------------------------------------------
# options openai-whisper rejects, and those the model cannot run


@pytest.mark.parametrize(
    "options,message",
    [
        ({"beam_size": 5, "best_of": 5}, "beam_size and best_of can't be given together"),
        ({"temperature": -0.5}, "temperature must be >= 0"),
        ({"temperature": float("nan")}, "temperature must be >= 0"),
        ({"best_of": 3}, "best_of with greedy sampling"),
        ({"patience": 2.0}, "patience requires beam_size"),
        ({"beam_size": 5, "length_penalty": 1.5}, "length_penalty"),
        ({"beam_size": 0}, "beam_size must be at least 1"),
        ({"temperature": 0.5, "best_of": 0}, "best_of must be at least 1"),
        ({"sample_len": 0}, "sample_len must be at least 1"),
        ({"beam_size": 1, "patience": 0.1}, "Invalid beam size"),
        ({"task": "summarise"}, "unknown task"),
        ({"language": "klingon"}, "unknown language"),
        ({"suppress_tokens": "-1,abc"}, "comma-separated token ids"),
    ],
)
def test_validate_options_rejects(options, message):
    with pytest.raises(DecodingOptionsError, match=message):
        validate_options(DecodingOptions(**options))


@pytest.mark.parametrize(
    "options,message",
    [
        ({"language": "de"}, "English-only model cannot take language"),
        ({"task": "translate"}, "English-only model cannot translate"),
    ],
)
def test_validate_options_against_an_english_only_model(options, message):
    validate_options(DecodingOptions(**options), BASE)  # fine on a multilingual model
    with pytest.raises(DecodingOptionsError, match=message):
        validate_options(DecodingOptions(**options), TINY_EN)


def test_options_openai_whisper_accepts_are_valid():
    for options in [
        {},
        {"beam_size": 5, "patience": 1.5, "length_penalty": 0.2},
        {"temperature": 0.7, "best_of": 5},
        {"language": "German", "task": "translate"},
        {"suppress_tokens": None, "without_timestamps": True},
    ]:
        assert validate_options(DecodingOptions(**options), BASE).temperature >= 0


@pytest.mark.slow
def test_sessions_on_the_same_windows_share_their_cross_keys_values(max_tiny, jfk_mel):
    """Windows decoded in several sessions (prompts of different lengths, fallbacks) get their
    cross-attention keys/values computed once; a session on fresh features gives the same
    logits as one reusing them."""
    windows = np.stack([jfk_mel, jfk_mel[:, ::-1].copy()])
    audio = max_tiny.embed_audio(windows)
    first = max_tiny.start_decoding(audio, np.array([0, 1]))
    second = max_tiny.start_decoding(audio, np.array([1]))
    assert second.cross is first.cross
    prompt = np.array([[50257, 50362, 50363]])
    reused = second.logits(prompt)
    fresh = max_tiny.start_decoding(max_tiny.embed_audio(windows), np.array([1])).logits(prompt)
    np.testing.assert_array_equal(reused, fresh)
    assert not np.array_equal(reused, first.logits(np.repeat(prompt, 2, axis=0))[:1])
