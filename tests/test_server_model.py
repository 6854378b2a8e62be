"""``maxwhisper-server`` on real models (tiny.en, base), for real: uvicorn on 127.0.0.1 and the
official ``openai`` client; every answer equals the library's transcript of the same file alone
with the same options."""

from __future__ import annotations

import io
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import openai
import pytest
import whisper.utils
from server_harness import running, server_process, wav_bytes

from maxwhisper_lib.api import WhisperModel
from maxwhisper_lib.audio.load import load_audio
from maxwhisper_lib.lab.manifest import clip, load_manifest
from maxwhisper_lib.server import ServerSettings, build_service, create_app

pytestmark = pytest.mark.slow

ENGLISH = [c.id for c in load_manifest() if c.has_reference]


@pytest.fixture(scope="module")
def tiny(max_tiny) -> WhisperModel:
    return WhisperModel(max_tiny, "tiny.en", "cpu", "float32")


@pytest.fixture(scope="module")
def library(tiny):
    """The library's result for a clip alone, per options (computed once)."""
    cache: dict = {}

    def get(clip_id: str, **options) -> dict:
        key = (clip_id, tuple(sorted(options.items())))
        if key not in cache:
            cache[key] = tiny.transcribe(clip(clip_id).path, **options)
        return cache[key]

    return get


@pytest.fixture(scope="module")
def server(tiny):
    service = build_service(ServerSettings(max_batch=16, max_wait_ms=100), model=tiny)
    with running(create_app(service)) as url:
        yield url, service


def api(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=600)


def upload(clip_id: str):
    path = clip(clip_id).path
    return (path.name, path.read_bytes())


def written(result: dict, fmt: str) -> str:
    """openai-whisper's own writer's output for ``result``."""
    buffer = io.StringIO()
    whisper.utils.get_writer(fmt, ".").write_result(result, file=buffer, options={})
    return buffer.getvalue()


@pytest.mark.parametrize("clip_id", ["jfk", "osr-us-000-0034"])
def test_every_response_format_is_the_librarys_transcript(server, library, clip_id):
    url, _ = server
    expected = library(clip_id)
    client = api(url)

    def create(**kwargs):
        return client.audio.transcriptions.create(file=upload(clip_id), model="whisper-1", **kwargs)

    assert create().text == expected["text"].strip()
    assert create(response_format="text") == expected["text"].strip() + "\n"
    assert create(response_format="srt") == written(expected, "srt")
    assert create(response_format="vtt") == written(expected, "vtt")
    verbose = create(response_format="verbose_json")
    assert verbose.text == expected["text"].strip()
    assert verbose.language == "english"
    assert verbose.duration == pytest.approx(clip(clip_id).duration, abs=0.01)
    assert [s.tokens for s in verbose.segments] == [s["tokens"] for s in expected["segments"]]
    assert [(s.start, s.end) for s in verbose.segments] == [
        (s["start"], s["end"]) for s in expected["segments"]
    ]
    assert verbose.words is None


def test_word_timestamps_are_the_librarys(server, library):
    url, _ = server
    expected = library("jfk", word_timestamps=True)
    verbose = api(url).audio.transcriptions.create(
        file=upload("jfk"),
        model="tiny.en",
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    words = [w for s in expected["segments"] for w in s["words"]]
    assert [w.word for w in verbose.words] == [w["word"] for w in words]
    np.testing.assert_allclose([w.start for w in verbose.words], [w["start"] for w in words])
    np.testing.assert_allclose([w.end for w in verbose.words], [w["end"] for w in words])


def test_a_prompt_and_a_temperature_reach_the_decoder(server, library):
    url, _ = server
    options = {"initial_prompt": "Kennedy's inaugural address, 1961.", "temperature": 0.0}
    expected = library("jfk", **options)
    answer = api(url).audio.transcriptions.create(
        file=upload("jfk"), model="whisper-1", prompt=options["initial_prompt"], temperature=0.0
    )  # 0 is OpenAI's "from 0 upwards"; the library's 0.0 alone decodes the same here
    assert answer.text == expected["text"].strip()


def test_streaming_sends_the_librarys_segments(server, library):
    url, _ = server
    expected = library("ljspeech-lj028-0030-0039")
    events = list(
        api(url).audio.transcriptions.create(
            file=upload("ljspeech-lj028-0030-0039"), model="whisper-1", stream=True
        )
    )
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    assert [e.delta for e in deltas] == [s["text"] for s in expected["segments"]]
    assert [e.start for e in deltas] == [s["start"] for s in expected["segments"]]
    assert events[-1].type == "transcript.text.done"
    assert events[-1].text == expected["text"].strip()


def test_concurrent_clients_each_get_the_librarys_transcript(server, library):
    """16 clients at once over the dev clips: each answer is the library's for that file alone,
    and the server decoded windows of several requests together."""
    url, service = server
    clips = [ENGLISH[i % len(ENGLISH)] for i in range(16)]
    before = service.scheduler.stats.largest_batch

    def ask(clip_id: str) -> str:
        return api(url).audio.transcriptions.create(file=upload(clip_id), model="whisper-1").text

    with ThreadPoolExecutor(len(clips)) as pool:
        answers = list(pool.map(ask, clips))
    assert answers == [library(c)["text"].strip() for c in clips]
    assert service.scheduler.stats.largest_batch >= max(before, 8)


def long_upload(minutes: float) -> bytes:
    """The dev clips end to end, repeated up to ``minutes`` (a WAV, about 1.9 MB a minute)."""
    pieces, total = [], 0
    while total < minutes * 60 * 16000:
        for clip_id in ENGLISH:
            samples = load_audio(clip(clip_id).path)
            pieces.append(samples)
            total += len(samples)
    return wav_bytes(np.concatenate(pieces)[: int(minutes * 60 * 16000)])


def test_a_client_that_disconnects_frees_its_place(server):
    url, service = server
    stats = service.scheduler.stats
    cancelled, completed = stats.cancelled, stats.completed
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{url}/v1/audio/transcriptions",
            data={"model": "whisper-1"},
            files={"file": ("long.wav", long_upload(12))},  # 23 MB
            timeout=httpx.Timeout(60, read=2),
        )  # the client gives up after 2 s and closes the connection
    deadline = time.monotonic() + 5  # 12 minutes of audio take far longer
    while stats.cancelled == cancelled and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stats.cancelled == cancelled + 1
    assert stats.completed == completed
    assert httpx.get(f"{url}/health").json()["in_flight"] == 0
    answer = api(url).audio.transcriptions.create(file=upload("jfk"), model="whisper-1")
    assert answer.text.startswith("And so my fellow Americans")


def test_sigterm_finishes_the_requests_in_flight(library):
    """``maxwhisper-server`` as its own process: SIGTERM while a request is decoding; the
    request still gets its transcript, then the server exits 0."""
    expected = library("ljspeech-lj028-0030-0039")["text"].strip()
    with server_process("--model", "tiny.en", "--device", "cpu") as running_server:
        url, process = running_server.url, running_server.process
        answers: list = []

        def ask() -> None:
            answers.append(
                api(url).audio.transcriptions.create(
                    file=upload("ljspeech-lj028-0030-0039"), model="whisper-1"
                )
            )

        thread = threading.Thread(target=ask)
        thread.start()
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/health").json()["in_flight"] == 0:
            assert time.monotonic() < deadline, "the request never started"
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        thread.join(120)
        assert process.wait(120) == 0
        assert [a.text for a in answers] == [expected]
        assert "Finished server process" in running_server.output()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/health")


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # openai: translations
def test_translation_on_base_is_the_librarys(max_base):
    """``/v1/audio/translations`` on multilingual base: the German part of the multilingual clip
    in English, equal to the library's translation of the same upload."""
    model = WhisperModel(max_base, "base", "cpu", "float32")
    samples = load_audio(clip("multilingual-en-de").path)[31 * 16000 : 45 * 16000]
    german = wav_bytes(samples)
    expected = model.transcribe(german, task="translate")
    detected = model.transcribe(german)
    service = build_service(ServerSettings(model="base"), model=model)
    with running(create_app(service)) as url:
        client = api(url)
        translated = client.audio.translations.create(
            file=("german.wav", german), model="base", response_format="verbose_json"
        )
        transcribed = client.audio.transcriptions.create(
            file=("german.wav", german), model="whisper-1", response_format="verbose_json"
        )
    assert translated.text == expected["text"].strip()
    assert "software" in translated.text.lower()
    assert translated.language == "german"
    assert transcribed.text == detected["text"].strip()
    assert transcribed.language == "german"


def test_a_two_minute_soak_of_good_and_bad_requests():
    """``maxwhisper-server`` as its own process for 2 minutes of good requests, bad ones (not
    audio, empty, silent, unknown model, bad option) and clients that give up: no good request
    fails or changes its answer, every bad one gets its error, and the server's peak memory at
    the end is within 1.1x of the first minute's (the 20-minute soak is in the report)."""
    from maxwhisper_lib.lab.server_load import dev_uploads, soak

    with server_process("--model", "tiny.en", "--device", "cpu", "--log_level", "warning") as ran:
        report = soak(ran.url, ran.pid, 120, dev_uploads(), clients=6, progress=False)
    assert report["good"] > 20 and report["bad"] > 10 and report["abandoned"] > 0
    assert report["failed_good"] == 0 and report["lost"] == 0 and report["wrong_status"] == 0
    assert report["peak_ratio"] <= 1.1, report
    health = report["health"]
    assert health["completed"] == report["good"]
    assert health["cancelled"] == report["abandoned"]
    assert health["in_flight"] == health["waiting"] == 0
