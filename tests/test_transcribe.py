"""Long-form transcription on MAX against openai-whisper's ``whisper.transcribe``.

openai-whisper runs its own checkpoint of the same weights (``checkpoint_path``) in float32 on the
same audio array. At temperature 0 the MAX engine must produce openai-whisper's very tokens and
segment times on every dev clip; options (fallback, beam search, prompts, word timestamps,
batching, translation) are checked on a few clips each.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import whisper

from maxwhisper_lib.audio.features import N_FRAMES, N_SAMPLES
from maxwhisper_lib.audio.load import load_audio
from maxwhisper_lib.checkpoints import checkpoint_path
from maxwhisper_lib.decoding.decode import detect_language
from maxwhisper_lib.decoding.transcribe import transcribe, transcribe_batch, transcript_tokens
from maxwhisper_lib.errors import AudioError, DecodingOptionsError
from maxwhisper_lib.lab.manifest import clip, load_manifest

CLIPS = [c.id for c in load_manifest()]
LONG_CLIP = "ljspeech-lj023-0051-0058"  # 49 s: two windows, so the prompt carries over


def _load_openai_whisper(name: str, weights) -> whisper.model.Whisper:
    """openai-whisper's own model, loaded from the checkpoint of our extracted weights.

    ``whisper.load_model(path)`` keeps the default alignment heads (every head of the upper half
    of the decoder): only a download by name sets the official ones. They are set here, and
    checked to be the ones our weights carry, so word timestamps compare like for like.
    """
    model = whisper.load_model(str(checkpoint_path(name)), device="cpu")
    model.set_alignment_heads(whisper._ALIGNMENT_HEADS[name])
    heads = sorted(map(tuple, model.alignment_heads.indices().T.tolist()))
    assert heads == sorted(map(tuple, weights.alignment_heads))
    return model


@pytest.fixture(scope="module")
def ow_tiny(tiny_weights):
    return _load_openai_whisper("tiny.en", tiny_weights)


@pytest.fixture(scope="module")
def audio_of():
    cache: dict[str, np.ndarray] = {}

    def get(clip_id: str) -> np.ndarray:
        if clip_id not in cache:
            cache[clip_id] = load_audio(clip(clip_id).path)
        return cache[clip_id]

    return get


@pytest.fixture(scope="module")
def max_greedy(max_tiny, audio_of):
    """MAX transcripts at temperature 0, one file at a time (computed once per clip)."""
    cache: dict[str, dict] = {}

    def get(clip_id: str) -> dict:
        if clip_id not in cache:
            cache[clip_id] = transcribe(max_tiny, audio_of(clip_id), temperature=0.0)
        return cache[clip_id]

    return get


def _ow(model, audio: np.ndarray, **kwargs) -> dict:
    return whisper.transcribe(model, audio, fp16=False, **kwargs)


def _times(result: dict) -> list[tuple[float, float]]:
    return [(s["start"], s["end"]) for s in result["segments"]]


# ---------------------------------------------------------------------------------------------
# every dev clip, greedy


@pytest.mark.slow
@pytest.mark.parametrize("clip_id", CLIPS)
def test_greedy_transcript_is_token_identical_to_openai_whisper(
    clip_id, max_greedy, ow_tiny, audio_of
):
    ours = max_greedy(clip_id)
    theirs = _ow(ow_tiny, audio_of(clip_id), temperature=0.0)
    assert transcript_tokens(ours) == transcript_tokens(theirs)
    assert _times(ours) == _times(theirs)
    assert ours["text"] == theirs["text"]
    assert ours["language"] == theirs["language"] == "en"
    assert len(transcript_tokens(ours)) >= 5


@pytest.fixture(scope="module")
def max_ops_loop(tiny_weights):
    """tiny.en with MAX's own ops instead of the Mojo row kernels: the graphs a GPU runs,
    greedy loop included (position, mask and cache writes derived on the device), on the CPU."""
    from maxwhisper_lib.engine.model import MaxWhisper

    return MaxWhisper(tiny_weights, device="cpu", row_kernels=False)


@pytest.mark.slow
@pytest.mark.parametrize("clip_id", CLIPS)
def test_the_gpus_greedy_loop_is_token_identical_on_the_cpu(
    clip_id, max_ops_loop, max_greedy, ow_tiny, audio_of
):
    """The device loop as a GPU runs it (MAX ops) gives openai-whisper's tokens, and the same
    segments and average log-probabilities as the CPU's loop (row kernels)."""
    ours = transcribe(max_ops_loop, audio_of(clip_id), temperature=0.0)
    assert max_ops_loop.run_seconds.get("decode_step", 0) > 0
    theirs = _ow(ow_tiny, audio_of(clip_id), temperature=0.0)
    assert transcript_tokens(ours) == transcript_tokens(theirs)
    cpu = max_greedy(clip_id)
    assert _times(ours) == _times(cpu)
    for mine, other in zip(ours["segments"], cpu["segments"], strict=True):
        assert mine["avg_logprob"] == pytest.approx(other["avg_logprob"], abs=1e-5)
        assert mine["no_speech_prob"] == pytest.approx(other["no_speech_prob"], abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("clip_id", ["jfk", "osr-us-000-0034"])
def test_the_host_loop_and_the_device_loop_agree(clip_id, max_tiny, max_greedy, audio_of):
    """Greedy decoding with the logits on the host (the loop sampling and beam search keep)
    against the device loop: the same tokens, segments and statistics."""
    max_tiny.device_loop = False
    try:
        host = transcribe(max_tiny, audio_of(clip_id), temperature=0.0)
    finally:
        max_tiny.device_loop = True
    loop = max_greedy(clip_id)
    assert transcript_tokens(host) == transcript_tokens(loop)
    assert _times(host) == _times(loop)
    for mine, other in zip(host["segments"], loop["segments"], strict=True):
        assert mine["avg_logprob"] == pytest.approx(other["avg_logprob"], abs=1e-5)
        assert mine["no_speech_prob"] == pytest.approx(other["no_speech_prob"], abs=1e-5)


# ---------------------------------------------------------------------------------------------
# temperature fallback


@pytest.mark.slow
def test_default_temperature_fallback_matches_openai_whisper_on_jfk(max_tiny, ow_tiny, jfk_audio):
    ours = transcribe(max_tiny, jfk_audio)
    theirs = _ow(ow_tiny, jfk_audio)
    assert ours["text"] == theirs["text"]
    assert [s["temperature"] for s in ours["segments"]] == [
        s["temperature"] for s in theirs["segments"]
    ]


@pytest.mark.slow
def test_fallback_keeps_the_last_temperature_as_openai_whisper(max_tiny, ow_tiny, jfk_audio):
    """A compression-ratio threshold no text can meet: every window falls back to 0.2 and keeps
    that attempt. Sampling can't reproduce torch's random stream, so only the structure and our
    own determinism (same seed, same text) are compared."""
    options = {"temperature": (0.0, 0.2), "compression_ratio_threshold": 0.5}
    ours = transcribe(max_tiny, jfk_audio, seed=3, **options)
    theirs = _ow(ow_tiny, jfk_audio, **options)
    assert {s["temperature"] for s in ours["segments"]} == {0.2}
    assert {s["temperature"] for s in theirs["segments"]} == {0.2}
    assert transcribe(max_tiny, jfk_audio, seed=3, **options)["text"] == ours["text"]
    assert "country" in ours["text"]


# ---------------------------------------------------------------------------------------------
# beam search, prompts, conditioning


BEAM_CLIPS = ["jfk", "librispeech-1089-134686-0002", "osr-us-000-0034"]


@pytest.mark.slow
@pytest.mark.parametrize("clip_id", BEAM_CLIPS)
def test_beam_search_matches_openai_whisper(clip_id, max_tiny, torch_tiny, ow_tiny, audio_of):
    audio = audio_of(clip_id)
    theirs = _ow(ow_tiny, audio, temperature=0.0, beam_size=5)
    # our loop on openai-whisper's module: the same logits, so the very same tokens
    reference = transcribe(torch_tiny, audio, temperature=0.0, beam_size=5)
    assert transcript_tokens(reference) == transcript_tokens(theirs)
    ours = transcribe(max_tiny, audio, temperature=0.0, beam_size=5)
    assert ours["text"] == theirs["text"]
    assert _times(ours) == _times(theirs)


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [
        {"initial_prompt": "Franklin D. Roosevelt, fireside chat, 1937."},
        {"initial_prompt": "FDR's fireside chat.", "carry_initial_prompt": True},
        {"condition_on_previous_text": False},
    ],
    ids=lambda o: ",".join(o),
)
def test_prompt_options_match_openai_whisper(options, max_tiny, ow_tiny, audio_of):
    audio = audio_of(LONG_CLIP)
    ours = transcribe(max_tiny, audio, temperature=0.0, **options)
    theirs = _ow(ow_tiny, audio, temperature=0.0, **options)
    assert transcript_tokens(ours) == transcript_tokens(theirs)
    assert _times(ours) == _times(theirs)
    assert len({s["seek"] for s in ours["segments"]}) >= 2  # several windows


# ---------------------------------------------------------------------------------------------
# word timestamps


@pytest.mark.slow
@pytest.mark.parametrize("clip_id", ["jfk", "osr-us-000-0034"])
def test_word_timestamps_on_max_match_openai_whisper(clip_id, max_tiny, ow_tiny, audio_of):
    audio = audio_of(clip_id)
    ours = transcribe(max_tiny, audio, temperature=0.0, word_timestamps=True)
    theirs = _ow(ow_tiny, audio, temperature=0.0, word_timestamps=True)
    words = [w for s in ours["segments"] for w in s["words"]]
    expected = [w for s in theirs["segments"] for w in s["words"]]
    assert [w["word"] for w in words] == [w["word"] for w in expected]
    for mine, reference in zip(words, expected, strict=True):
        assert mine["start"] == pytest.approx(reference["start"], abs=0.02), mine
        assert mine["end"] == pytest.approx(reference["end"], abs=0.02), mine
        assert mine["probability"] == pytest.approx(reference["probability"], abs=1e-3)
    if clip_id == "jfk":
        assert words[0]["word"] == " And" and words[-1]["word"] == " country"


# ---------------------------------------------------------------------------------------------
# batching


@pytest.mark.slow
def test_batch_of_three_files_gives_the_one_at_a_time_texts(max_tiny, max_greedy):
    ids = ["osr-us-000-0034", "jfk", "librispeech-1089-134686-0001"]  # 2 windows, 1, 1
    results = transcribe_batch(max_tiny, [clip(i).path for i in ids], batch_size=3, temperature=0.0)
    # the windows end at different steps of one device loop
    assert [transcript_tokens(r) for r in results] == [
        transcript_tokens(max_greedy(i)) for i in ids
    ]
    assert [r["text"] for r in results] == [max_greedy(i)["text"] for i in ids]
    assert [_times(r) for r in results] == [_times(max_greedy(i)) for i in ids]


@pytest.mark.slow
def test_ended_windows_leave_the_cpus_batch_and_change_nothing(max_tiny, audio_of):
    """On the CPU a window's rows leave the step graph's batch once it has ended: the batch
    shrinks as the windows end, and every token, log-probability sum and no-speech probability
    is what running every row to the last step gives."""
    from maxwhisper_lib.decoding.decode import DecodingOptions, decode

    ids = ["jfk", "osr-us-000-0034", "librispeech-1089-134686-0001", "stereo-diarization"]
    mels = np.stack(
        [max_tiny.log_mel(audio_of(i)[:N_SAMPLES], N_SAMPLES)[:, :N_FRAMES] for i in ids]
    )
    loop = max_tiny.greedy_loop
    batches: list[int] = []
    run = max_tiny.run

    def counting(name, *inputs):
        if name == "decode_step":
            batches.append(int(inputs[0].shape[0]))
        return run(name, *inputs)

    options = DecodingOptions(temperature=0.0, without_timestamps=False)
    max_tiny.run = counting
    try:
        dropping = decode(max_tiny, mels, options)
        shrunk = list(batches)
        loop.drop_ended = False
        batches.clear()
        keeping = decode(max_tiny, mels, options)
    finally:
        loop.drop_ended = True
        del max_tiny.run
    assert shrunk[0] == len(ids) and shrunk[-1] < len(ids), shrunk
    assert shrunk == sorted(shrunk, reverse=True) and len(shrunk) == len(batches)
    assert set(batches) == {len(ids)}
    for mine, full in zip(dropping, keeping, strict=True):
        assert mine.tokens == full.tokens
        assert mine.avg_logprob == full.avg_logprob
        assert mine.no_speech_prob == full.no_speech_prob
    assert len({len(r.tokens) for r in keeping}) > 1  # the windows ended at different steps


@pytest.mark.slow
@pytest.mark.parametrize("read_every", [3, 8])
def test_reading_the_tokens_back_every_k_steps_changes_nothing(max_tiny, max_greedy, read_every):
    """The GPU's way of learning that every window has ended (the tokens copied back every K
    steps without blocking, a few steps past the end at most) on the CPU: the same transcripts
    as reading after every step, for windows that end at different steps."""
    ids = ["osr-us-000-0034", "jfk", "librispeech-1089-134686-0001"]
    loop = max_tiny.greedy_loop
    loop.read_every = read_every
    try:
        results = transcribe_batch(
            max_tiny, [clip(i).path for i in ids], batch_size=3, temperature=0.0
        )
    finally:
        loop.read_every = 1
    assert [transcript_tokens(r) for r in results] == [
        transcript_tokens(max_greedy(i)) for i in ids
    ]
    for result, clip_id in zip(results, ids, strict=True):
        for mine, other in zip(result["segments"], max_greedy(clip_id)["segments"], strict=True):
            assert mine["avg_logprob"] == pytest.approx(other["avg_logprob"], abs=1e-5)


@pytest.mark.slow
def test_the_gpus_workspaces_decode_like_the_cpus_buffers(tiny_weights, max_greedy):
    """The GPU's way of holding the loop's buffers (one workspace per batch size, the keys and
    values of each window batch copied in, capture tried once and given up where the device
    has none, as on this CPU): the same transcripts, batched and one file at a time."""
    from maxwhisper_lib.engine.model import MaxWhisper

    model = MaxWhisper(tiny_weights, device="cpu", capture=True)
    ids = ["osr-us-000-0034", "jfk", "librispeech-1089-134686-0001"]
    batched = transcribe_batch(model, [clip(i).path for i in ids], batch_size=3, temperature=0.0)
    alone = [transcribe(model, load_audio(clip(i).path), temperature=0.0) for i in ids]
    loop = model.greedy_loop
    assert "No graph-capture devices" in loop.capture_failed
    assert sorted(loop.workspaces) == [1, 3]
    expected = [transcript_tokens(max_greedy(i)) for i in ids]
    assert [transcript_tokens(r) for r in batched] == expected
    assert [transcript_tokens(r) for r in alone] == expected


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [None, 4])
def test_a_long_files_spectrogram_is_computed_again_as_it_is_used(
    max_tiny, audio_of, replayed_log_mels, batch_size
):
    """From a path, a spectrogram longer than what is kept (5-second pieces, 35 s kept here) is
    computed again from the file as the windows reach it: the same result as from the samples,
    window after window and batched."""
    clip_id = "osr-us-000-0034"
    expected = transcribe(max_tiny, audio_of(clip_id), temperature=0.0, batch_size=batch_size)
    result = transcribe(max_tiny, clip(clip_id).path, temperature=0.0, batch_size=batch_size)
    assert result == expected and result["segments"]
    assert len(replayed_log_mels) == 1 and replayed_log_mels[0].reads >= 2


# ---------------------------------------------------------------------------------------------
# errors: options are checked before any audio is read or decoded


@pytest.mark.parametrize(
    "options,message",
    [
        ({"temperature": -0.1}, "temperature must be >= 0"),
        ({"temperature": (0.0, 0.2, -1.0)}, "temperature must be >= 0"),
        ({"temperature": ()}, "at least one temperature"),
        ({"language": "klingon"}, "unknown language 'klingon'"),
        ({"language": "de"}, "English-only model cannot take language 'de'"),
        ({"task": "translate"}, "English-only model cannot translate"),
        ({"task": "summarise"}, "unknown task"),
        ({"beam": 5}, "unknown transcription option"),
        ({"patience": 2.0}, "patience requires beam_size"),
        ({"clip_timestamps": "zero,ten"}, "clip_timestamps"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
    ],
)
def test_bad_options_raise_before_decoding(options, message, tiny_weights):
    # a backend that can't decode and a file that doesn't exist: only the options are checked
    backend = SimpleNamespace(dims=tiny_weights.dims)
    with pytest.raises(DecodingOptionsError, match=message):
        transcribe_batch(backend, ["/nonexistent/clip.wav"], **options)


def test_beam_size_and_best_of_together_are_fine_across_temperatures(tiny_weights):
    """openai-whisper's CLI defaults (beam_size=5, best_of=5): beam search runs at temperature 0,
    best-of sampling above, so the pair only clashes in one window's DecodingOptions."""
    backend = SimpleNamespace(dims=tiny_weights.dims)
    with pytest.raises(AudioError, match="no such file"):  # the options passed
        transcribe(backend, "/nonexistent/clip.wav", beam_size=5, best_of=5)


@pytest.mark.parametrize(
    "audio,message",
    [
        (np.zeros(16000, np.float32), "silent"),
        (np.full(16000, 3e-5, np.float32), "silent"),
        (np.zeros(0, np.float32), "no audio samples"),
        (np.zeros((2, 16000), np.float32), "1-D mono"),
        ("/nonexistent/clip.wav", "no such file"),
    ],
    ids=["zeros", "dc-hum", "empty", "stereo-array", "missing-file"],
)
def test_unusable_audio_raises_audio_error(audio, message, tiny_weights):
    backend = SimpleNamespace(dims=tiny_weights.dims)  # never reached
    with pytest.raises(AudioError, match=message):
        transcribe(backend, audio)


# ---------------------------------------------------------------------------------------------
# multilingual base: language detection and translation


@pytest.fixture(scope="module")
def ow_base(base_weights):
    return _load_openai_whisper("base", base_weights)


@pytest.fixture(scope="module")
def multilingual_audio(audio_of) -> np.ndarray:
    return audio_of("multilingual-en-de")


GERMAN_START_S = 31  # the clip reads the licence in English until ~30 s, then in German


@pytest.mark.slow
def test_language_detection_matches_openai_whisper(max_base, ow_base, multilingual_audio):
    """The first 30 s (as transcribe detects it) are English; 31-61 s German."""
    mel = whisper.log_mel_spectrogram(torch.from_numpy(multilingual_audio), padding=N_SAMPLES)
    start = GERMAN_START_S * 100
    windows = torch.stack([mel[:, :N_FRAMES], mel[:, start : start + N_FRAMES]])
    _, expected = ow_base.detect_language(windows)
    _, ours = detect_language(max_base, max_base.embed_audio(windows.numpy()))
    assert [max(p, key=p.get) for p in ours] == [max(p, key=p.get) for p in expected]
    assert [max(p, key=p.get) for p in ours] == ["en", "de"]
    for mine, reference in zip(ours, expected, strict=True):
        assert list(mine) == list(reference)  # every language, in token order
        np.testing.assert_allclose(list(mine.values()), list(reference.values()), atol=1e-3)
        assert max(mine.values()) == pytest.approx(max(reference.values()), abs=1e-3)


@pytest.mark.slow
def test_the_front_doors_language_is_openai_whispers(max_base, ow_base, multilingual_audio):
    """``WhisperModel.detect_language`` on the German part, and ``stream``'s ``info`` on the
    whole clip (its first 30 s: English), against openai-whisper's ``detect_language``."""
    from maxwhisper_lib.api import WhisperModel

    model = WhisperModel(max_base, "base", "cpu", "float32")
    german = multilingual_audio[GERMAN_START_S * 16000 :]
    language, probs = model.detect_language(german)
    mel = whisper.log_mel_spectrogram(torch.from_numpy(german), padding=N_SAMPLES)[:, :N_FRAMES]
    _, (expected,) = ow_base.detect_language(mel[None])
    assert language == max(expected, key=expected.get) == "de"
    np.testing.assert_allclose(list(probs.values()), list(expected.values()), atol=1e-3)
    segments, info = model.stream(multilingual_audio, temperature=0.0, clip_timestamps="0,10")
    english, english_probs = model.detect_language(multilingual_audio)
    assert info.language == english == "en"
    assert info.language_probability == pytest.approx(english_probs["en"], abs=1e-6)
    assert info.duration == pytest.approx(len(multilingual_audio) / 16000)
    assert "".join(s["text"] for s in segments).strip()


@pytest.mark.slow
def test_translating_the_german_part_matches_openai_whisper(max_base, ow_base, multilingual_audio):
    options = {
        "task": "translate",
        "language": "de",
        "temperature": 0.0,
        "clip_timestamps": f"{GERMAN_START_S},45",
    }
    ours = transcribe(max_base, multilingual_audio, **options)
    theirs = _ow(ow_base, multilingual_audio, **options)
    assert ours["text"] == theirs["text"]
    assert transcript_tokens(ours) == transcript_tokens(theirs)
    assert ours["language"] == "de"
    assert "software" in ours["text"].lower()  # English words from German speech
    assert ours["segments"][0]["start"] == GERMAN_START_S


@pytest.mark.slow
def test_base_detects_english_when_transcribing(max_base, ow_base, multilingual_audio):
    """No language given: transcribe detects it from the file's first 30 s, as openai-whisper."""
    options = {"temperature": 0.0, "clip_timestamps": "0,9"}
    ours = transcribe(max_base, multilingual_audio, **options)
    theirs = _ow(ow_base, multilingual_audio, **options)
    assert ours["language"] == theirs["language"] == "en"
    assert transcript_tokens(ours) == transcript_tokens(theirs)


# ---------------------------------------------------------------------------------------------
# scoring helpers (what notebook 03 reports)


def test_word_error_rate_normalises_like_openai_whisper():
    from maxwhisper_lib.decoding.text import word_error_rate

    reference = "And so my fellow Americans, ask not what your country can do for you."
    assert (
        word_error_rate(
            [reference], ["and so my fellow americans ask not what your country can do for you"]
        )
        == 0
    )
    assert word_error_rate(
        [reference], ["And so my fellow Americans, ask what your country can do for you."]
    ) == pytest.approx(1 / 14)
    assert word_error_rate(["Mr. Smith paid $20"], ["mister smith paid twenty dollars"]) == 0
    assert np.isnan(word_error_rate([""], ["anything"]))
    # corpus-level: total edits over total reference words, not a mean of the clips' rates
    assert word_error_rate(["a b c d", "e f"], ["a b c d", "x f"]) == pytest.approx(1 / 6)


def test_identity_summary_names_the_first_different_token():
    from maxwhisper_lib.lab.scoring import (
        TranscriptMismatch,
        assert_token_identical,
        first_difference,
        identity_summary,
    )

    assert first_difference([1, 2, 3], [1, 2, 3]) is None
    assert first_difference([1, 2, 3], [1, 5, 3]) == 1
    assert first_difference([1, 2], [1, 2, 3]) == 2
    table = pd.DataFrame(
        {
            "clip": ["a", "b", "c"],
            "token-identical": [True, False, False],
            "first different token": [None, 7, 2],
            "segment times equal": [True, True, False],
            "sampled": [False, False, True],
        }
    )
    assert identity_summary(table) == (
        "1/2 clips token-identical to openai-whisper (1 clip(s) fell back to sampling: "
        "not comparable)\n  b: first different token at index 7"
    )
    with pytest.raises(TranscriptMismatch, match=r"1 clip.* differ from openai-whisper: b$"):
        assert_token_identical(table)
    assert_token_identical(table[table["clip"] != "b"])


# ---------------------------------------------------------------------------------------------
# segment splitting (pure: no model)

BEGIN, EOT = 50363, 50256  # tiny.en's first timestamp token and end of text


def stamp(seconds: float) -> int:
    return BEGIN + round(seconds / 0.02)


def spans_of(tokens, seek=0, size=3000, keep_unfinished=False):
    from maxwhisper_lib.decoding.transcribe import split_segments

    spans, advance, single = split_segments(
        np.array(tokens), BEGIN, EOT, seek, size, keep_unfinished
    )
    return [(round(s.start, 6), round(s.end, 6), s.tokens) for s in spans], advance, single


def test_consecutive_timestamps_close_segments_and_a_single_one_ends_the_window():
    tokens = [stamp(0), 11, 12, stamp(1), stamp(1), 13, stamp(2)]
    spans, advance, single = spans_of(tokens, seek=500)
    assert spans == [(5.0, 6.0, tokens[:4]), (6.0, 7.0, tokens[4:])]
    assert (advance, single) == (3000, True)


def test_an_unfinished_segment_is_dropped_and_decoded_again_from_its_timestamp():
    tokens = [stamp(0), 11, stamp(1.5), stamp(1.5), 12]
    spans, advance, single = spans_of(tokens)
    assert spans == [(0.0, 1.5, tokens[:3])]
    assert (advance, single) == (150, False)  # 1.5 s = 75 positions = 150 frames


def test_a_batched_span_keeps_its_unfinished_text_up_to_its_end():
    tokens = [stamp(0), 11, stamp(1.5), stamp(1.5), 12]
    spans, advance, single = spans_of(tokens, size=2000, keep_unfinished=True)
    assert spans == [(0.0, 1.5, tokens[:3]), (1.5, 20.0, tokens[3:])]
    assert (advance, single) == (2000, True)


def test_without_consecutive_timestamps_the_window_is_one_segment():
    tokens = [stamp(0), 11, 12, stamp(2.5)]
    assert spans_of(tokens, seek=100) == ([(1.0, 3.5, tokens)], 3000, True)
    assert spans_of([11, 12], size=1234) == ([(0.0, 12.34, [11, 12])], 1234, False)
    # a window that only repeats the first timestamp lasts the whole segment
    assert spans_of([stamp(0), 11], size=800)[0] == [(0.0, 8.0, [stamp(0), 11])]
