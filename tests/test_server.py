"""``maxwhisper-server``: OpenAI's audio API, for real (uvicorn on 127.0.0.1, the ``openai``
client). The fast tier runs the real app and batcher over the scripted engine (many windows in
milliseconds); the slow tier runs tiny.en and base and compares with the library."""

from __future__ import annotations

import dataclasses
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import openai
import pytest
from fakes import ScriptedBackend, Window
from server_harness import running, wav_bytes
from test_seek_loop import DIMS, TOKENIZER, audio, text, ts

from maxwhisper_lib.api import WhisperModel
from maxwhisper_lib.server import ServerSettings, build_service, create_app
from maxwhisper_lib.server.app import ApiError, parse_request
from maxwhisper_lib.server.batcher import Batcher

# ------------------------------------------------------------------ the fast tier


def each_window(seek: int) -> Window:
    """Two segments per window, then the whole window is done (a single timestamp ends it)."""
    return Window([ts(0), *text(f" frame {seek}"), ts(10), ts(10), *text(" more"), ts(20)])


def scripted() -> WhisperModel:
    backend = ScriptedBackend(DIMS, each_window, TOKENIZER)
    return WhisperModel(backend, "tiny.en", "cpu", "float32")


@pytest.fixture
def scripted_server():
    model = scripted()
    service = build_service(ServerSettings(max_batch=8, max_wait_ms=100), model=model)
    with running(create_app(service)) as url:
        yield url, model, service


def client(url: str, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=kwargs.pop("api_key", "none"), **kwargs)


def test_concurrent_requests_are_decoded_together_and_each_gets_its_own(scripted_server):
    url, model, service = scripted_server
    lengths = [40, 10, 160, 70, 220, 100, 190, 130]  # 2, 1, 6, 3, 8, 4, 7, 5 windows
    uploads = [wav_bytes(audio(s)) for s in lengths]
    expected = [model.transcribe(u, temperature=0.0)["text"].strip() for u in uploads]

    def ask(upload: bytes) -> str:
        return (
            client(url)
            .audio.transcriptions.create(
                file=("clip.wav", upload), model="whisper-1", temperature=0.0
            )
            .text
        )

    with ThreadPoolExecutor(len(uploads)) as pool:
        answers = list(pool.map(ask, uploads))
    assert answers == expected
    assert len(set(answers)) == len(answers)  # different lengths, different transcripts
    stats = service.scheduler.stats
    assert stats.completed == len(uploads)
    assert stats.largest_batch > 1  # windows of several requests in one encoder call


def test_a_request_joins_while_others_are_decoding():
    """The batcher admits requests at every round: a short file submitted while a long one is
    decoding finishes first."""
    model = scripted()
    batcher = Batcher(model.backend, max_batch=4, max_wait=0).start()
    order: list[str] = []
    done = threading.Event()

    def record(name: str):
        def on_event(event) -> None:
            if type(event).__name__ == "Done":
                order.append(name)
                if len(order) == 2:
                    done.set()

        return on_event

    options = batcher.options(temperature=0.0)
    batcher.submit(audio(600), options, record("long"))
    batcher.submit(audio(10), options, record("short"))
    assert done.wait(60)
    batcher.stop()
    assert order == ["short", "long"]


def test_responses_in_every_format(scripted_server):
    url, model, _ = scripted_server
    upload = wav_bytes(audio(50))
    result = model.transcribe(upload, temperature=0.0)
    api = client(url)

    def create(**kwargs):
        return api.audio.transcriptions.create(
            file=("a.wav", upload), model="tiny.en", temperature=0.0, **kwargs
        )

    assert create().text == result["text"].strip()
    assert create(response_format="text") == result["text"].strip() + "\n"
    srt = create(response_format="srt")
    assert srt.startswith("1\n00:00:00,000 --> 00:00:10,000\n frame 0".replace(" frame", "frame"))
    assert srt.count(" --> ") == len(result["segments"])
    vtt = create(response_format="vtt")
    assert vtt.startswith("WEBVTT\n") and vtt.count(" --> ") == len(result["segments"])
    verbose = create(response_format="verbose_json")
    assert verbose.language == "english" and verbose.duration == pytest.approx(50.0)
    assert [s.tokens for s in verbose.segments] == [s["tokens"] for s in result["segments"]]
    assert [s.start for s in verbose.segments] == [s["start"] for s in result["segments"]]


def test_streaming_sends_each_segment_then_the_text(scripted_server):
    url, model, _ = scripted_server
    upload = wav_bytes(audio(95))
    result = model.transcribe(upload, temperature=0.0)
    events = list(
        client(url).audio.transcriptions.create(
            file=("a.wav", upload), model="whisper-1", temperature=0.0, stream=True
        )
    )
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    assert [e.delta for e in deltas] == [s["text"] for s in result["segments"]]
    assert [(e.start, e.end) for e in deltas] == [
        (s["start"], s["end"]) for s in result["segments"]
    ]
    assert events[-1].type == "transcript.text.done"
    assert events[-1].text == result["text"].strip()


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def post(url: str, *, data=None, files=None, headers=None, path="transcriptions"):
    return httpx.post(f"{url}/v1/audio/{path}", data=data, files=files, headers=headers, timeout=60)


@pytest.mark.parametrize(
    ("data", "files", "status", "message"),
    [
        ({"model": "whisper-1"}, {"file": ("a.wav", b"not audio")}, 400, "not a readable audio"),
        ({"model": "whisper-1"}, {"file": ("a.wav", b"")}, 400, "empty (0 bytes)"),
        ({"model": "whisper-1"}, {"file": ("a.wav", wav_bytes(np.zeros(16000)))}, 400, "silent"),
        (
            {"model": "whisper-1"},
            {"file": ("a.wav", wav_bytes(audio(5))[:30])},
            400,
            "not a readable",
        ),
        ({"model": "whisper-1"}, None, 400, "multipart/form-data"),
        ({"model": "large-v3"}, {"file": ("a.wav", b"x")}, 404, "does not exist"),
        ({}, {"file": ("a.wav", b"x")}, 400, "provide a model"),
        (
            {"model": "whisper-1", "response_format": "xml"},
            {"file": ("a.wav", b"x")},
            400,
            "response_format",
        ),
        ({"model": "whisper-1", "temperature": "hot"}, {"file": ("a.wav", b"x")}, 400, "a number"),
        (
            {"model": "whisper-1", "temperature": "3"},
            {"file": ("a.wav", b"x")},
            400,
            "between 0 and 1",
        ),
        ({"model": "whisper-1", "beam": "5"}, {"file": ("a.wav", b"x")}, 400, "unknown parameter"),
        (
            {"model": "whisper-1", "language": "klingon"},
            {"file": ("a.wav", wav_bytes(audio(5)))},
            400,
            "unknown language",
        ),
        (
            {"model": "whisper-1", "language": "de"},
            {"file": ("a.wav", wav_bytes(audio(5)))},
            400,
            "English",
        ),
        (
            {"model": "whisper-1", "timestamp_granularities[]": "word"},
            {"file": ("a.wav", b"x")},
            400,
            "verbose_json",
        ),
        (
            {
                "model": "whisper-1",
                "timestamp_granularities[]": "char",
                "response_format": "verbose_json",
            },
            {"file": ("a.wav", b"x")},
            400,
            "granularity",
        ),
        ({"model": "whisper-1"}, {"audio": ("a.wav", b"x")}, 400, "'file' field"),
    ],
)
def test_bad_requests_get_openai_shaped_errors(scripted_server, data, files, status, message):
    url, _, service = scripted_server
    response = post(url, data=data, files=files)
    assert response.status_code == status, response.text
    error = error_of(response)
    assert message in error["message"]
    assert error["type"] == "invalid_request_error"
    assert service.scheduler.stats.failed == 0  # refused before reaching the engine
    assert httpx.get(f"{url}/health").json()["status"] == "ok"


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # openai: translations
def test_translation_on_an_english_only_model_is_refused(scripted_server):
    url, _, _ = scripted_server
    with pytest.raises(openai.BadRequestError, match="English-only"):
        client(url).audio.translations.create(
            file=("a.wav", wav_bytes(audio(5))), model="whisper-1"
        )


def test_bad_requests_amid_good_ones_leave_the_good_ones_intact(scripted_server):
    url, model, _ = scripted_server
    good = wav_bytes(audio(64))
    expected = model.transcribe(good, temperature=0.0)["text"].strip()
    bad = [b"junk", b"", wav_bytes(np.zeros(8000))]

    def ask(index: int):
        upload = good if index % 2 == 0 else bad[index // 2 % len(bad)]
        return post(
            url, data={"model": "whisper-1", "temperature": "0"}, files={"file": ("x.wav", upload)}
        )

    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(ask, range(12)))
    for index, response in enumerate(responses):
        if index % 2 == 0:
            assert response.status_code == 200 and response.json()["text"] == expected
        else:
            assert response.status_code == 400 and error_of(response)["code"] == "invalid_file"


def test_the_upload_limit():
    service = build_service(ServerSettings(max_upload_mb=0.2), model=scripted())
    with running(create_app(service)) as url:
        big = wav_bytes(audio(10))  # 320 kB
        response = post(url, data={"model": "whisper-1"}, files={"file": ("a.wav", big)})
        assert response.status_code == 413
        assert "0.2 MB" in error_of(response)["message"]
        small = wav_bytes(audio(5))
        assert (
            post(url, data={"model": "whisper-1"}, files={"file": ("a.wav", small)}).status_code
            == 200
        )


def test_the_api_key():
    service = build_service(ServerSettings(api_key="sesame"), model=scripted())
    upload = wav_bytes(audio(10))
    with running(create_app(service)) as url:
        with pytest.raises(openai.AuthenticationError, match="incorrect API key"):
            client(url, api_key="wrong").audio.transcriptions.create(
                file=("a.wav", upload), model="whisper-1"
            )
        response = post(url, data={"model": "whisper-1"}, files={"file": ("a.wav", upload)})
        assert response.status_code == 401 and error_of(response)["code"] == "missing_api_key"
        assert httpx.get(f"{url}/v1/models").status_code == 401
        assert httpx.get(f"{url}/health").status_code == 200  # for load balancers
        answer = client(url, api_key="sesame").audio.transcriptions.create(
            file=("a.wav", upload), model="whisper-1"
        )
        assert answer.text.startswith("frame 0")


def test_models_and_health(scripted_server):
    url, _, _ = scripted_server
    models = client(url).models.list()
    assert [m.id for m in models.data] == ["tiny.en", "whisper-1"]
    assert client(url).models.retrieve("whisper-1").id == "whisper-1"
    assert httpx.get(f"{url}/nowhere").status_code == 404
    health = httpx.get(f"{url}/health").json()
    assert health["model"] == "tiny.en" and health["max_batch"] == 8


def test_a_full_queue_answers_503():
    model = scripted()
    batcher = Batcher(model.backend, max_batch=1, max_queue=1)  # not started: nothing leaves
    batcher.submit(audio(5), batcher.options(), lambda e: None)
    service = dataclasses.replace(build_service(ServerSettings(), model=model), scheduler=batcher)
    with running(create_app(service, manage_scheduler=False)) as url:
        response = post(
            url, data={"model": "whisper-1"}, files={"file": ("a.wav", wav_bytes(audio(5)))}
        )
    assert response.status_code == 503
    assert error_of(response)["code"] == "overloaded"


def test_parse_request_maps_openais_fields_to_transcribe_options():
    service = build_service(ServerSettings(), model=scripted())
    fields = {
        "model": ["whisper-1"],
        "language": ["en"],
        "prompt": ["Names: Ada."],
        "temperature": ["0"],
        "response_format": ["verbose_json"],
        "timestamp_granularities[]": ["segment", "word"],
        "stream": ["true"],
    }
    parsed = parse_request(fields, "transcribe", service)
    assert parsed.options == {
        "task": "transcribe",
        "word_timestamps": True,
        "language": "en",
        "initial_prompt": "Names: Ada.",
    }  # temperature 0: OpenAI's (and openai-whisper's) fallback from 0 upwards
    assert parsed.stream and parsed.words and parsed.response_format == "verbose_json"
    assert (
        parse_request(
            {"model": ["tiny.en"], "temperature": ["0.4"]}, "transcribe", service
        ).options["temperature"]
        == 0.4
    )
    with pytest.raises(ApiError, match="stream must be true or false"):
        parse_request({"model": ["tiny.en"], "stream": ["yes"]}, "transcribe", service)


def test_a_malformed_body_is_a_400(scripted_server):
    url, _, _ = scripted_server
    response = httpx.post(
        f"{url}/v1/audio/transcriptions",
        content=b'--xyz\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1',
        headers={"content-type": "multipart/form-data; boundary=xyz"},
    )
    assert response.status_code == 400, response.text
    error = json.loads(response.text)["error"]
    assert error["param"] == "file" and "closing boundary" in error["message"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max_batch", "0"], "--max_batch must be at least 1"),
        (["--port", "70000"], "--port must be 0-65535"),
        (["--max_upload_mb", "0"], "--max_upload_mb must be positive"),
        (["--dtype", "int8"], "invalid choice"),
    ],
)
def test_the_command_refuses_bad_options(argv, message, capsys):
    from maxwhisper_lib.server.__main__ import main

    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_the_command_names_an_unknown_model(capsys):
    from maxwhisper_lib.server.__main__ import main

    assert main(["--model", "tiny.klingon", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "cannot load 'tiny.klingon'" in err and "Named models:" in err
