"""Voice activity detection: Silero VAD before the windows, timestamps back on the original
audio, no segments for silence or noise, parameters checked."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest

from maxwhisper_lib.audio import load as audio_module
from maxwhisper_lib.audio.chunking import batched_vad_parameters
from maxwhisper_lib.audio.load import stream_audio
from maxwhisper_lib.audio.vad import (
    VAD_BATCH_WINDOWS,
    VAD_WINDOW,
    FileSpeech,
    SpeechTimeline,
    VadParameters,
    remove_non_speech,
    restore_timestamps,
    speech_chunks,
    speech_only,
    speech_probabilities,
)
from maxwhisper_lib.decoding.text import normalize
from maxwhisper_lib.decoding.transcribe import transcribe
from maxwhisper_lib.errors import AudioError, DecodingOptionsError
from maxwhisper_lib.lab.benchmark import build_long_audio, load_clips
from maxwhisper_lib.lab.long_audio import write_wav
from maxwhisper_lib.lab.manifest import load_manifest

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


PARAMETERS = [
    VadParameters(),
    batched_vad_parameters(None),
    VadParameters(
        threshold=0.3, min_speech_duration_ms=250, speech_pad_ms=30, max_speech_duration_s=8
    ),
]


def faster_whisper_chunks(samples: np.ndarray, parameters: VadParameters) -> list[dict]:
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    return get_speech_timestamps(samples, VadOptions(**asdict(parameters)))


@pytest.mark.parametrize("clip_id", [c.id for c in load_manifest()])
def test_speech_chunks_are_faster_whispers_whole_or_streamed(clip_id):
    """The same chunks as faster-whisper's ``get_speech_timestamps`` on the whole clip, from
    the samples or from the file in pieces of any size."""
    clip = next(c for c in load_manifest() if c.id == clip_id)
    samples = audio_module.load_audio(clip.path)
    for parameters in PARAMETERS:
        expected = faster_whisper_chunks(samples, parameters)
        assert speech_chunks(samples, parameters) == expected
        assert speech_chunks(stream_audio(clip.path, piece_samples=12_345), parameters) == expected


@pytest.mark.slow
def test_streamed_probabilities_are_faster_whispers_across_batches():
    """Past faster-whisper's model batch (10,000 windows, 320 s) and across many of ours, the
    state carried from batch to batch gives bit for bit faster-whisper's probabilities and
    chunks; lengths on and off a whole window."""
    from faster_whisper.vad import get_vad_model

    long = build_long_audio([c.samples for c in load_clips() if c.reference], 700)
    assert long.size > 2 * 10_000 * VAD_WINDOW and VAD_BATCH_WINDOWS < 10_000
    for samples in (long[: 2 * 10_000 * VAD_WINDOW + 3 * VAD_WINDOW], long[:-100]):
        padded = np.pad(samples, (0, VAD_WINDOW - samples.size % VAD_WINDOW))
        expected = get_vad_model()(padded).reshape(-1)
        pieces = [samples[i : i + 99_999] for i in range(0, samples.size, 99_999)]
        probabilities, n_samples = speech_probabilities(pieces)
        assert n_samples == samples.size
        np.testing.assert_array_equal(probabilities, expected)
        for parameters in PARAMETERS[:2]:
            assert speech_chunks(iter(pieces), parameters) == faster_whisper_chunks(
                samples, parameters
            )


def test_speech_only_streams_the_joined_speech(jfk_audio):
    padded = np.concatenate([silence(PAD), jfk_audio, silence(3), jfk_audio[: 4 * SR], silence(4)])
    joined, timeline = remove_non_speech(padded)
    assert len(timeline.chunks) >= 2
    for size in (1_000, 77_777, padded.size):
        pieces = [padded[i : i + size] for i in range(0, padded.size, size)]
        np.testing.assert_array_equal(
            np.concatenate(list(speech_only(pieces, timeline.chunks))), joined
        )
    assert list(speech_only(iter(pieces), [])) == []


def test_a_file_without_samples_is_refused_with_the_vad(max_tiny, tmp_path):
    header_only = write_wav(np.zeros(0, np.float32), tmp_path / "empty.wav")
    with pytest.raises(AudioError, match=r"empty\.wav: the audio stream decodes to no samples"):
        transcribe(max_tiny, header_only, vad_filter=True)


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


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [None, 4])
def test_a_file_with_the_vad_is_read_piece_by_piece(
    max_tiny, monkeypatch, tmp_path, batch_size, replayed_log_mels
):
    """From a path, the VAD and the log-mel read the file in pieces (loading it whole fails
    here), the spectrogram of its speech is not kept whole either (5-second pieces here, 35 s
    kept: the others computed again as windows need them): the same result as from its
    samples, sequential and batched."""
    clips = [c.samples for c in load_clips() if c.reference]
    samples = np.concatenate([silence(5), build_long_audio(clips, 45), silence(3)])
    path = write_wav(samples, tmp_path / "long.wav")
    samples = audio_module.load_audio(path)  # as the file holds them (16-bit)
    expected = transcribe(
        max_tiny, samples, temperature=0.0, vad_filter=True, batch_size=batch_size
    )

    def refuse(*args, **kwargs):
        raise AssertionError("the whole file was decoded at once")

    monkeypatch.setattr(audio_module, "_decode", refuse)
    assert (
        transcribe(max_tiny, path, temperature=0.0, vad_filter=True, batch_size=batch_size)
        == expected
    )
    assert replayed_log_mels and all(mel.reads >= 2 for mel in replayed_log_mels)
    assert expected["segments"] and expected["segments"][0]["start"] >= 4.0


def test_file_speech_reads_only_its_chunks(tmp_path, jfk_audio):
    padded = np.concatenate([silence(PAD), jfk_audio, silence(3)])
    path = write_wav(padded, tmp_path / "padded.wav")
    samples = audio_module.load_audio(path)
    joined, timeline = remove_non_speech(samples)
    speech = FileSpeech(path, speech_chunks(stream_audio(path), name=str(path)))
    assert speech.chunks == timeline.chunks
    np.testing.assert_array_equal(np.concatenate(list(speech.pieces())), joined)


def test_vad_options_need_the_filter(max_tiny, jfk_audio):
    with pytest.raises(DecodingOptionsError, match="without vad_filter"):
        transcribe(max_tiny, jfk_audio, vad_parameters={"threshold": 0.3})
    with pytest.raises(DecodingOptionsError, match="clip_timestamps"):
        transcribe(max_tiny, jfk_audio, vad_filter=True, clip_timestamps="1,5")
