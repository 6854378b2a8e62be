"""Audio loading: dev clips in every format, ogg/m4a made here, bytes/arrays, every error case."""

from __future__ import annotations

import csv
import os
import re
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
import whisper.audio

from maxwhisper_lib.audio.load import (
    SAMPLE_RATE,
    SILENCE_PEAK,
    audio_seconds,
    check_audible,
    check_audio,
    load_audio,
    stream_audio,
)
from maxwhisper_lib.errors import AudioError
from maxwhisper_lib.paths import data_dir

MANIFEST = list(csv.DictReader((data_dir() / "manifest.csv").open(newline="")))
CLIP_IDS = [row["id"] for row in MANIFEST]
SPEECH_CLIP = data_dir() / "librispeech-1089-134686-0002.wav"


def clip_path(row: dict) -> Path:
    return data_dir() / row["file"]


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return load_audio(SPEECH_CLIP)


@pytest.mark.parametrize("row", MANIFEST, ids=CLIP_IDS)
def test_dev_clip_decodes_to_manifest_duration(row):
    samples = load_audio(clip_path(row))
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert len(samples) / SAMPLE_RATE == pytest.approx(float(row["duration_s"]), abs=0.010)
    assert np.abs(samples).max() <= 1.0
    check_audible(samples, row["file"])


@pytest.fixture(scope="module")
def ffmpeg_on_path(tmp_path_factory) -> str:
    """A folder with an ``ffmpeg`` executable for openai-whisper's own ``load_audio``."""
    found = shutil.which("ffmpeg")
    if found:
        return str(Path(found).parent)
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="no ffmpeg CLI to compare with")
    folder = tmp_path_factory.mktemp("ffmpeg_bin")
    (folder / "ffmpeg").symlink_to(imageio_ffmpeg.get_ffmpeg_exe())
    return str(folder)


@pytest.mark.parametrize("row", MANIFEST, ids=CLIP_IDS)
def test_dev_clip_equals_openai_whisper_load_audio(row, ffmpeg_on_path, monkeypatch):
    """Sample for sample what openai-whisper gets from the ffmpeg command line."""
    monkeypatch.setenv("PATH", ffmpeg_on_path + os.pathsep + os.environ.get("PATH", ""))
    expected = whisper.audio.load_audio(str(clip_path(row)))
    np.testing.assert_array_equal(load_audio(clip_path(row)), expected)


def test_stereo_is_the_mean_of_the_channels(tmp_path):
    rng = np.random.default_rng(0)
    left, right = (rng.integers(-8000, 8000, SAMPLE_RATE).astype(np.int16) for _ in range(2))
    soundfile.write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), SAMPLE_RATE)
    mean = (left.astype(np.int32) + right) / 2 / 32768
    np.testing.assert_allclose(load_audio(tmp_path / "stereo.wav"), mean, atol=1 / 32768)


def test_resampling_keeps_a_tone_in_place(tmp_path):
    rate, seconds, hz = 44100, 2.0, 440.0
    tone = 0.5 * np.sin(2 * np.pi * hz * np.arange(int(rate * seconds)) / rate)
    soundfile.write(tmp_path / "tone.flac", tone, rate)
    samples = load_audio(tmp_path / "tone.flac")
    assert len(samples) == int(SAMPLE_RATE * seconds)
    expected = 0.5 * np.sin(2 * np.pi * hz * np.arange(len(samples)) / SAMPLE_RATE)
    middle = slice(1000, -1000)  # away from the resampler's edges
    np.testing.assert_allclose(samples[middle], expected[middle], atol=2e-3)


def encode_with_pyav(samples: np.ndarray, path: Path, container: str, codec: str, rate: int):
    """Encode 16 kHz mono ``samples`` as stereo at ``rate`` with one of PyAV's own encoders."""
    with av.open(str(path), "w", format=container) as output:
        options = {"strict": "experimental"} if codec == "vorbis" else {}
        stream = output.add_stream(codec, rate=rate, layout="stereo", options=options)
        resampler = av.AudioResampler(format=stream.format.name, layout="stereo", rate=rate)
        pcm = (samples * 32767).astype(np.int16)[None, :]
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate, frame.pts = SAMPLE_RATE, 0
        for converted in resampler.resample(frame) + resampler.resample(None):
            output.mux(stream.encode(converted))
        output.mux(stream.encode(None))


@pytest.mark.parametrize(
    ("suffix", "container", "codec", "rate"),
    [
        ("ogg", "ogg", "libopus", 48000),
        ("ogg", "ogg", "vorbis", 44100),
        ("m4a", "ipod", "aac", 44100),
    ],
    ids=["ogg-opus", "ogg-vorbis", "m4a-aac"],
)
def test_lossy_formats_decode_to_the_original(speech, tmp_path, suffix, container, codec, rate):
    path = tmp_path / f"speech.{suffix}"
    encode_with_pyav(speech, path, container, codec, rate)
    decoded = load_audio(path)
    # Within one codec frame (AAC pads its last 1024-sample frame: 23 ms at 44.1 kHz).
    assert abs(len(decoded) - len(speech)) / SAMPLE_RATE <= 0.025
    n = min(len(decoded), len(speech))
    assert np.corrcoef(decoded[:n], speech[:n])[0, 1] > 0.99


def test_bytes_decode_like_the_file():
    path = data_dir() / "multilingual-en-de.mp3"
    np.testing.assert_array_equal(load_audio(path.read_bytes()), load_audio(path))


def test_arrays_pass_through_as_float32(speech):
    np.testing.assert_array_equal(load_audio(speech.astype(np.float64)), speech)
    pcm = np.array([0, 16384, -32768], dtype=np.int16)
    np.testing.assert_array_equal(load_audio(pcm), [0.0, 0.5, -1.0])


def test_truncated_file_decodes_its_first_part(tmp_path):
    """Like the ffmpeg command line, a file cut short gives the audio before the cut."""
    full_path = data_dir() / "jfk.flac"
    data = full_path.read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: len(data) // 2])
    full, cut = load_audio(full_path), load_audio(tmp_path / "cut.flac")
    assert 0.3 * len(full) < len(cut) < 0.7 * len(full)
    np.testing.assert_array_equal(cut[:-100], full[: len(cut) - 100])


def test_corrupt_packets_are_skipped(tmp_path):
    """Like the ffmpeg command line, packets that fail to decode are dropped, not fatal."""
    path = data_dir() / "multilingual-en-de.mp3"
    data = path.read_bytes()
    noise = np.random.default_rng(1).integers(0, 256, 20000, dtype=np.uint8).tobytes()
    (tmp_path / "damaged.mp3").write_bytes(data[:50000] + noise + data[70000:])
    full, damaged = load_audio(path), load_audio(tmp_path / "damaged.mp3")
    assert 0.8 * len(full) < len(damaged) < len(full)
    before_damage = int(0.8 * 50000 / len(data) * len(full))
    np.testing.assert_array_equal(damaged[:before_damage], full[:before_damage])


def write_png(path: Path) -> None:
    with av.open(str(path), "w", format="image2") as output:
        stream = output.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = 8, 8, "rgb24"
        frame = av.VideoFrame.from_ndarray(np.zeros((8, 8, 3), np.uint8), format="rgb24")
        output.mux(stream.encode(frame))
        output.mux(stream.encode(None))


def write_silent_video(path: Path) -> None:
    with av.open(str(path), "w") as output:
        stream = output.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))


def make_bad_file(kind: str, folder: Path) -> Path:
    """Build one broken input of ``kind`` in ``folder`` and return its path."""
    flac = (data_dir() / "jfk.flac").read_bytes()
    name, write = {
        "missing": ("missing.wav", lambda p: None),
        "folder": ("folder.wav", lambda p: p.mkdir()),
        "empty": ("empty.wav", lambda p: p.write_bytes(b"")),
        "text": ("text.wav", lambda p: p.write_text("these are words, not sounds\n" * 20)),
        "random": ("random.mp3", lambda p: p.write_bytes(np.random.default_rng(2).bytes(5000))),
        "header_only": ("header_only.flac", lambda p: p.write_bytes(flac[:100])),
        "png": ("image.png", write_png),
        "video": ("video.mp4", write_silent_video),
        "no_samples": ("no_samples.wav", lambda p: soundfile.write(p, np.zeros(0), SAMPLE_RATE)),
    }[kind]
    path = folder / name
    write(path)
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "no such file"),
        ("folder", "not a file"),
        ("empty", "empty file (0 bytes)"),
        ("text", "not a readable audio file"),
        ("random", "not a readable audio file"),
        ("header_only", "not a readable audio file"),
        ("png", "no audio stream (found video)"),
        ("video", "no audio stream (found video)"),
        ("no_samples", "decodes to no samples"),
    ],
)
def test_bad_inputs_raise_one_line_audio_errors(tmp_path, kind, message):
    path = make_bad_file(kind, tmp_path)
    with pytest.raises(AudioError) as caught:
        load_audio(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: ") and message in text
    assert "\n" not in text


def test_silent_audio_is_rejected_on_request(tmp_path):
    path = tmp_path / "silence.wav"
    soundfile.write(path, np.zeros(SAMPLE_RATE, np.int16), SAMPLE_RATE)
    assert not load_audio(path).any()  # allowed by default, as openai-whisper allows it
    with pytest.raises(AudioError, match=rf"^{path}: the audio is silent \(digital silence\)$"):
        load_audio(path, reject_silent=True)


def test_check_audible_threshold():
    rng = np.random.default_rng(3)
    hiss = (rng.uniform(-1, 1, SAMPLE_RATE) * SILENCE_PEAK).astype(np.float32)
    with pytest.raises(AudioError, match=r"^hiss: the audio is silent \(peak -8\d dBFS\)$"):
        check_audible(hiss, "hiss")
    check_audible(hiss * 10, "quiet speech")  # -60 dBFS is quiet, not silent
    with pytest.raises(AudioError, match="no audio samples"):
        check_audible(np.zeros(0, np.float32), "nothing")


def test_bad_arrays_and_bytes():
    with pytest.raises(AudioError, match=r"^<array>: expected a 1-D mono waveform"):
        load_audio(np.zeros((2, 100), np.float32))
    with pytest.raises(AudioError, match="NaN"):
        load_audio(np.array([0.0, np.nan], np.float32))
    with pytest.raises(AudioError, match=r"^clip: empty \(0 bytes\)$"):
        load_audio(b"", name="clip")
    with pytest.raises(AudioError, match=r"^<bytes>: not a readable audio file"):
        load_audio(b"definitely not audio" * 10)


# ---------------------------------------------------------------------------------------------
# streaming


@pytest.mark.parametrize("name", ["jfk.flac", "multilingual-en-de.mp3", "osr-us-000-0034-8k.wav"])
@pytest.mark.parametrize("piece", [1, 12_345, 10**8])
def test_streamed_pieces_join_to_the_loaded_samples(name, piece):
    path = data_dir() / name
    pieces = list(stream_audio(path, piece_samples=piece)) if piece > 1000 else None
    if pieces is None:  # one sample per piece would take long: take the first few
        stream = stream_audio(path, piece_samples=piece)
        first = [next(stream) for _ in range(5)]
        assert [p.size for p in first] == [1] * 5
        np.testing.assert_array_equal(np.concatenate(first), load_audio(path)[:5])
        return
    whole = load_audio(path)
    assert all(p.size == piece for p in pieces[:-1]) and 0 < pieces[-1].size <= piece
    assert all(p.dtype == np.float32 for p in pieces)
    np.testing.assert_array_equal(np.concatenate(pieces), whole)
    assert check_audio(path) == pytest.approx(whole.size / SAMPLE_RATE)
    assert audio_seconds(path) == pytest.approx(whole.size / SAMPLE_RATE, abs=0.05)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "no such file"),
        ("empty", "empty file (0 bytes)"),
        ("text", "not a readable audio file"),
        ("video", "no audio stream (found video)"),
        ("no_samples", "decodes to no samples"),
    ],
)
def test_streaming_bad_files_raises_the_same_errors(tmp_path, kind, message):
    path = make_bad_file(kind, tmp_path)
    with pytest.raises(AudioError, match=re.escape(message)):
        list(stream_audio(path))
    with pytest.raises(AudioError, match=re.escape(message)):
        check_audio(path)
    if kind != "no_samples":  # the container says nothing wrong until it is decoded
        with pytest.raises(AudioError, match=re.escape(message)):
            audio_seconds(path)


def test_streaming_silence_is_rejected_after_the_last_piece(tmp_path):
    path = tmp_path / "silence.wav"
    soundfile.write(path, np.zeros(3 * SAMPLE_RATE, np.int16), SAMPLE_RATE)
    assert sum(p.size for p in stream_audio(path)) == 3 * SAMPLE_RATE
    with pytest.raises(AudioError, match=r"the audio is silent \(digital silence\)$"):
        check_audio(path, reject_silent=True)
