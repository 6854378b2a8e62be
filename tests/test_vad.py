"""Voice activity detection: Silero VAD before the windows, timestamps back on the original
audio, no segments for silence or noise, parameters checked."""

from __future__ import annotations

import numpy as np
import pytest

from maxwhisper_lib.errors import DecodingOptionsError
from maxwhisper_lib.scoring import normalize
from maxwhisper_lib.transcribe import transcribe
from maxwhisper_lib.vad import (
    SpeechTimeline,
    VadParameters,
    remove_non_speech,
    restore_timestamps,
    speech_chunks,
)

SR = 16000
PAD = 8.192  # seconds of silence put before a clip (a whole number of Silero's 512-sample steps)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * SR), np.float32)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"threshold": 1.5}, "threshold"),
        ({"speech_pad_ms": -1}, "speech_pad_ms"),
        ({"max_speech_duration_s": 0}, "max_speech_duration_s"),
    ],
)
def test_bad_vad_parameters_are_refused(kwargs, message):
    with pytest.raises(DecodingOptionsError, match=message):
        VadParameters(**kwargs)


def test_unknown_vad_parameter_is_named():
    with pytest.raises(DecodingOptionsError, match="thresh"):
        VadParameters.from_options({"thresh": 0.3})


def test_silence_and_white_noise_have_no_speech():
    noise = (np.random.default_rng(0).standard_normal(30 * SR) * 0.1).astype(np.float32)
    assert speech_chunks(silence(30)) == []
    assert speech_chunks(noise) == []


def test_restore_timestamps_maps_segments_and_words_through_the_chunks():
    # speech at 2-4 s and 10-12 s of the original: 0-2 s and 2-4 s of the joined audio
    timeline = SpeechTimeline(
        [{"start": 2 * SR, "end": 4 * SR}, {"start": 10 * SR, "end": 12 * SR}]
    )
    result = {
        "segments": [
            {"start": 0.5, "end": 1.5},
            {
                "start": 2.2,
                "end": 3.0,
                "words": [{"start": 2.2, "end": 2.6}, {"start": 2.6, "end": 3.0}],
            },
        ]
    }
    restore_timestamps(result, timeline)
    first, second = result["segments"]
    assert (first["start"], first["end"]) == (2.5, 3.5)
    assert [(w["start"], w["end"]) for w in second["words"]] == [(10.2, 10.6), (10.6, 11.0)]
    assert (second["start"], second["end"]) == (10.2, 11.0)
    assert timeline.speech_seconds == 4.0


def test_remove_non_speech_keeps_only_the_chunks(jfk_audio):
    padded = np.concatenate([silence(PAD), jfk_audio, silence(3)])
    speech, timeline = remove_non_speech(padded)
    (chunk,) = timeline.chunks
    assert chunk["start"] > 7 * SR and chunk["end"] < len(padded) - 2 * SR
    np.testing.assert_array_equal(speech, padded[chunk["start"] : chunk["end"]])


@pytest.mark.slow
def test_vad_timestamps_land_on_the_original_timeline(max_tiny, jfk_audio):
    """jfk after 8.192 s of silence: with the VAD each segment is the joined speech's segment
    moved by where its chunk starts, and lands on the unpadded clip's time plus the padding."""
    padded = np.concatenate([silence(PAD), jfk_audio, silence(3)])
    speech, timeline = remove_non_speech(padded)
    offset = timeline.chunks[0]["start"] / SR
    with_vad = transcribe(max_tiny, padded, temperature=0.0, vad_filter=True)
    on_speech = transcribe(max_tiny, speech, temperature=0.0)
    plain = transcribe(max_tiny, jfk_audio, temperature=0.0)
    assert with_vad["text"] == on_speech["text"]
    assert len(with_vad["segments"]) == len(on_speech["segments"]) >= 1
    for restored, joined in zip(with_vad["segments"], on_speech["segments"], strict=True):
        assert restored["start"] == pytest.approx(joined["start"] + offset, abs=0.006)
        assert restored["end"] == pytest.approx(joined["end"] + offset, abs=0.006)
    assert normalize(with_vad["text"]) == normalize(plain["text"])


@pytest.mark.slow
def test_vad_word_timestamps_move_with_their_chunk(max_tiny, jfk_audio):
    """Words after the VAD land where the unpadded clip has them plus the padding: within one
    20 ms frame for most (the decoder sees the speech 48 ms later in its window, since the chunk
    keeps 400 ms of padding the unpadded clip cannot have; its first word starts at the chunk)."""
    padded = np.concatenate([silence(PAD), jfk_audio])
    with_vad = transcribe(max_tiny, padded, temperature=0.0, vad_filter=True, word_timestamps=True)
    plain = transcribe(max_tiny, jfk_audio, temperature=0.0, word_timestamps=True)
    moved = [w for s in with_vad["segments"] for w in s["words"]]
    original = [w for s in plain["segments"] for w in s["words"]]
    assert [normalize(w["word"]) for w in moved] == [normalize(w["word"]) for w in original]
    shifts = np.array([m["start"] - o["start"] - PAD for m, o in zip(moved, original, strict=True)])
    assert np.median(np.abs(shifts)) <= 0.02
    assert np.mean(np.abs(shifts[1:]) <= 0.02 + 0.001) >= 0.9
    for segment in with_vad["segments"]:
        assert segment["start"] == segment["words"][0]["start"]
        assert segment["end"] == segment["words"][-1]["end"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["silence", "white noise"])
def test_no_segments_for_silence_or_noise_with_the_vad(max_tiny, kind):
    audio = (
        silence(30)
        if kind == "silence"
        else (np.random.default_rng(1).standard_normal(30 * SR) * 0.1).astype(np.float32)
    )
    result = transcribe(max_tiny, audio, temperature=0.0, vad_filter=True)
    assert result == {"text": "", "segments": [], "language": "en"}


def test_vad_options_need_the_filter(max_tiny, jfk_audio):
    with pytest.raises(DecodingOptionsError, match="without vad_filter"):
        transcribe(max_tiny, jfk_audio, vad_parameters={"threshold": 0.3})
    with pytest.raises(DecodingOptionsError, match="clip_timestamps"):
        transcribe(max_tiny, jfk_audio, vad_filter=True, clip_timestamps="1,5")
