"""openai-whisper's seek loop on a scripted backend (tests/fakes.py): segments, seek steps,
prompts, temperature fallback and skipped silence, without a network or a compile.

Each expectation follows ``whisper.transcribe``'s rules: a window whose tokens end with a
single timestamp moves on by the whole window; otherwise the seek moves to the last timestamp
pair; a window without timestamp pairs is one segment up to its last timestamp.
"""

from __future__ import annotations

import numpy as np
import pytest
from fakes import ScriptedBackend, Window

from maxwhisper_lib.audio.constants import SAMPLE_RATE
from maxwhisper_lib.checkpoints.catalog import official_dims
from maxwhisper_lib.decoding.tokenizer import get_tokenizer, timestamp_token
from maxwhisper_lib.decoding.transcribe import transcribe

DIMS = official_dims("tiny.en")
TOKENIZER = get_tokenizer(DIMS)
GREEDY = {"temperature": 0.0, "beam_size": None, "best_of": None, "verbose": None}


def ts(seconds: float) -> int:
    return timestamp_token(TOKENIZER, seconds)


def text(words: str) -> list[int]:
    return TOKENIZER.encode(words)


def audio(seconds: float) -> np.ndarray:
    """Audible samples (the loop refuses silence), their content irrelevant to the script."""
    return (
        np.random.default_rng(0).uniform(-0.5, 0.5, int(seconds * SAMPLE_RATE)).astype(np.float32)
    )


def backend(windows: dict[int, Window]) -> ScriptedBackend:
    return ScriptedBackend(DIMS, lambda seek: windows[seek], TOKENIZER)


FIFTY_SECONDS = {
    # ends with a single timestamp: two segments, then the whole window (3000 frames)
    0: Window([ts(0), *text(" Hello"), ts(2), ts(2), *text(" world"), ts(10)]),
    # ends with text after a pair: one segment, then seek to the pair (5 s = 500 frames)
    3000: Window([ts(0), *text(" again"), ts(5), ts(5), *text(" cut off")]),
    # no pair: one segment up to the last timestamp; the last 15 s (1500 frames)
    3500: Window([ts(0), *text(" the end"), ts(4)]),
}


def test_segments_and_seek_steps_follow_openai_whisper():
    scripted = backend(FIFTY_SECONDS)
    result = transcribe(scripted, audio(50), **GREEDY)
    assert scripted.windows == [0, 3000, 3500]
    got = [(s["start"], s["end"], s["text"], s["seek"]) for s in result["segments"]]
    assert got == [
        (0.0, 2.0, " Hello", 0),
        (2.0, 10.0, " world", 0),
        (30.0, 35.0, " again", 3000),
        (35.0, 39.0, " the end", 3500),
    ]
    assert result["text"] == " Hello world again the end"
    assert result["segments"][0]["tokens"] == [ts(0), *text(" Hello"), ts(2)]
    assert all(s["temperature"] == 0.0 for s in result["segments"])


def test_the_previous_text_is_the_next_prompt_unless_disabled():
    scripted = backend(FIFTY_SECONDS)
    transcribe(scripted, audio(50), **GREEDY)
    first, second, third = scripted.prompts
    assert first == [TOKENIZER.sot]
    assert second == [TOKENIZER.sot_prev, *FIFTY_SECONDS[0].tokens, TOKENIZER.sot]
    # the cut-off text after the last pair is not kept: only the segments' tokens are
    kept = [ts(0), *text(" again"), ts(5)]
    assert third == [TOKENIZER.sot_prev, *FIFTY_SECONDS[0].tokens, *kept, TOKENIZER.sot]
    scripted = backend(FIFTY_SECONDS)
    transcribe(scripted, audio(50), condition_on_previous_text=False, **GREEDY)
    assert scripted.prompts == [[TOKENIZER.sot]] * 3


def test_initial_prompt_comes_first():
    scripted = backend(FIFTY_SECONDS)
    transcribe(scripted, audio(50), initial_prompt=" Names: Ann.", **GREEDY)
    assert scripted.prompts[0] == [TOKENIZER.sot_prev, *text(" Names: Ann."), TOKENIZER.sot]


def test_repetitive_text_falls_back_through_every_temperature():
    """gzip compression ratio above 2.4 at every temperature: the last attempt (1.0) is kept,
    and a window decoded above 0.5 resets the prompt."""
    loop = [ts(0), *text(" la" * 60), ts(8)]
    scripted = backend({0: Window(loop), 3000: Window([ts(0), *text(" fine"), ts(1)])})
    result = transcribe(
        scripted, audio(40), temperature=(0.0, 0.4, 1.0), best_of=2, beam_size=None, verbose=None
    )
    first, second = result["segments"]
    assert first["temperature"] == 1.0 and first["compression_ratio"] > 2.4
    assert second["temperature"] == 0.0
    assert len(scripted.prompts) == 1 + 2 + 2 + 1  # greedy, 2 samples at 0.4 and at 1.0, next
    assert scripted.prompts[-1] == [TOKENIZER.sot]  # prompt reset after the 1.0 window


def test_silence_is_skipped_when_no_speech_and_low_confidence():
    """no_speech_prob above 0.6 and avg_logprob below -1: the window gives no segment (and no
    fallback); a confident window is kept whatever its no-speech probability."""
    unsure = Window([ts(0), *text(" um"), ts(1)], confidence=2.0, no_speech=30.0)
    sure = Window([ts(0), *text(" yes"), ts(1)], no_speech=30.0)
    scripted = backend({0: unsure, 3000: sure})
    result = transcribe(scripted, audio(40), **{**GREEDY, "temperature": (0.0, 0.5)})
    assert [s["text"] for s in result["segments"]] == [" yes"]
    assert len(scripted.prompts) == 2  # no fallback for the silent window
    assert result["segments"][0]["no_speech_prob"] == pytest.approx(1.0)


def test_clip_timestamps_bound_the_windows():
    scripted = backend({1000: Window([ts(0), *text(" inside"), ts(3)])})
    result = transcribe(scripted, audio(50), clip_timestamps="10,14", **GREEDY)
    assert scripted.windows == [1000]
    (segment,) = result["segments"]
    assert (segment["start"], segment["end"], segment["text"]) == (10.0, 13.0, " inside")


def counted_sessions(scripted: ScriptedBackend) -> list[int]:
    """The rows of each decoder session ``scripted`` starts from now on (a list it fills)."""
    sessions: list[int] = []
    start = scripted.start_decoding

    def counted(audio, rows):
        sessions.append(len(rows))
        return start(audio, rows)

    scripted.start_decoding = counted
    return sessions


def test_a_batched_files_follow_up_windows_share_one_decoder_session():
    """``transcribe(batch_size=...)`` decodes a file's spans side by side. Two spans whose text
    stops at a closed timestamp pair before their end each need a follow-up window with the
    span's text as its prompt: the prompts are cut to the shorter one's length (each keeping
    its latest tokens), so both follow-ups decode in one session instead of one each."""
    short = [ts(0), *text(" Hello"), ts(2)]
    long = [ts(0), *text(" a much longer first sentence than the other"), ts(5)]
    windows = {
        0: Window([*short, ts(2)]),  # ends on a pair at 2 s: the span goes on from there
        3000: Window([*long, ts(5)]),  # the same at 35 s
        200: Window([ts(0), *text(" end"), ts(1)]),
        3500: Window([ts(0), *text(" end"), ts(1)]),
    }
    scripted = backend(windows)
    sessions = counted_sessions(scripted)
    result = transcribe(scripted, audio(60), batch_size=2, clip_timestamps="0,30,30,60", **GREEDY)
    assert scripted.windows == [0, 3000, 200, 3500]
    assert sessions == [2, 2]
    first, second = scripted.prompts[2:]
    assert first == [TOKENIZER.sot_prev, *short, TOKENIZER.sot]
    assert second == [TOKENIZER.sot_prev, *long[-len(short) :], TOKENIZER.sot]
    assert result["text"] == " Hello end a much longer first sentence than the other end"


def test_aligned_prompts_keep_each_prompts_latest_tokens():
    from maxwhisper_lib.decoding.transcribe import aligned_prompts

    assert aligned_prompts([[1, 2, 3, 4], [], [7, 8]]) == [[3, 4], [], [7, 8]]
    assert aligned_prompts([[], []]) == [[], []]
    assert aligned_prompts([[5, 6]]) == [[5, 6]]
