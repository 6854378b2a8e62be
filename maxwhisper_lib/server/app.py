"""OpenAI's audio API over a loaded model: ``POST /v1/audio/transcriptions`` and
``/v1/audio/translations`` (``file``, ``model``, ``language``, ``prompt``, ``response_format``,
``temperature``, ``timestamp_granularities[]``, ``stream``), ``GET /v1/models``, ``GET /health``, and live
transcription over a WebSocket, ``/v1/audio/live`` (:mod:`.live`).

Requests go to a :class:`~maxwhisper_lib.server.batcher.Batcher` (or any object with its
calls), which decodes the requests in flight together. Errors are OpenAI's shape
``{"error": {"message", "type", "param", "code"}}`` with its status codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from .. import __version__
from ..audio.load import load_audio
from ..errors import AudioError, DecodingOptionsError
from . import formats
from .auth import bearer_key, key_problem
from .batcher import Done, Event, Failed, Segments, ServerBusyError, Started
from .live import live_endpoint
from .uploads import UploadError, read_form

OPENAI_ALIAS = "whisper-1"
"""The model name OpenAI's clients send by default; it means the loaded model."""
FIELDS = {
    "model",
    "language",
    "prompt",
    "response_format",
    "temperature",
    "timestamp_granularities[]",
    "timestamp_granularities",
    "stream",
}
GRANULARITIES = ("segment", "word")


class Scheduler(Protocol):
    """What the app needs of the engine's side (:class:`~.batcher.Batcher` is one)."""

    def options(self, **kwargs: Any) -> Any: ...

    def submit(
        self,
        samples: Any,
        options: Any,
        on_event: Callable[[Event], None],
        share_prompt: bool = False,
    ) -> Any: ...

    def start(self) -> Any: ...

    def stop(self, timeout: float | None = None) -> None: ...


class ApiError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = (
            status,
            message,
            kind,
            param,
            code,
        )

    def payload(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse(self.payload(), status_code=self.status, headers=headers)


@dataclass
class Service:
    """What a server serves: the scheduler, the model's name and dims, and the limits."""

    scheduler: Scheduler
    model_name: str
    multilingual: bool
    max_upload_bytes: int = 25_000_000
    api_key: str | None = None
    description: dict | None = None
    created: int = 0
    max_live_streams: int = 16
    live_streams: int = 0

    def __post_init__(self) -> None:
        self.created = self.created or int(time.time())

    def model_ids(self) -> list[str]:
        return [self.model_name, OPENAI_ALIAS]

    def health(self) -> dict:
        scheduler = self.scheduler
        stats = getattr(scheduler, "stats", None)
        return {
            "status": "ok",
            "model": self.model_name,
            "pid": os.getpid(),  # which process (Ray Serve replica) answered
            **(self.description or {}),
            "waiting": getattr(scheduler, "waiting", None),
            "in_flight": getattr(scheduler, "in_flight", None),
            "live_streams": self.live_streams,
            **(vars(stats) if stats is not None else {}),
        }


@dataclass(frozen=True)
class AudioRequest:
    """A request's fields, checked: the transcription options and how to answer."""

    options: dict
    response_format: str
    stream: bool
    words: bool
    task: str


def parse_request(form_fields: dict[str, list[str]], task: str, service: Service) -> AudioRequest:
    """OpenAI's form fields as ``transcribe`` options; :class:`ApiError` for what is wrong."""
    unknown = sorted(set(form_fields) - FIELDS)
    if unknown:
        raise ApiError(
            400,
            f"unknown parameter(s): {', '.join(unknown)}",
            param=unknown[0],
            code="unknown_parameter",
        )

    def one(name: str) -> str | None:
        values = form_fields.get(name)
        return values[-1] if values else None

    model = one("model")
    if not model:
        raise ApiError(400, "you must provide a model parameter", param="model")
    if model not in service.model_ids():
        raise ApiError(
            404,
            f"the model {model!r} does not exist on this server; it serves "
            f"{' and '.join(repr(m) for m in service.model_ids())}",
            param="model",
            code="model_not_found",
        )
    response_format = (one("response_format") or "json").strip()
    if response_format not in formats.RESPONSE_FORMATS:
        raise ApiError(
            400,
            f"unsupported response_format {response_format!r}; choose one of "
            f"{', '.join(formats.RESPONSE_FORMATS)}",
            param="response_format",
        )
    granularities = form_fields.get("timestamp_granularities[]", []) + form_fields.get(
        "timestamp_granularities", []
    )
    bad = [g for g in granularities if g not in GRANULARITIES]
    if bad:
        raise ApiError(
            400,
            f"unknown timestamp granularity {bad[0]!r}; choose segment or word",
            param="timestamp_granularities[]",
        )
    words = "word" in granularities
    if granularities and response_format != "verbose_json":
        raise ApiError(
            400,
            "timestamp_granularities needs response_format verbose_json",
            param="timestamp_granularities[]",
        )
    stream_value = (one("stream") or "false").strip().lower()
    if stream_value not in ("true", "false"):
        raise ApiError(400, f"stream must be true or false, not {stream_value!r}", param="stream")
    options: dict[str, Any] = {"task": task, "word_timestamps": words}
    temperature = one("temperature")
    if temperature is not None and temperature.strip():
        try:
            value = float(temperature)
        except ValueError:
            raise ApiError(
                400, f"temperature must be a number, not {temperature!r}", param="temperature"
            ) from None
        if not 0 <= value <= 1:
            raise ApiError(
                400, f"temperature must be between 0 and 1, not {value}", param="temperature"
            )
        if value > 0:  # 0 (and no value) is OpenAI's "raise it while the output looks wrong"
            options["temperature"] = value
    language = one("language")
    if language:
        options["language"] = language
    if task == "translate" and not service.multilingual:
        raise ApiError(
            400,
            f"{service.model_name} is an English-only model: it cannot translate",
            param="model",
        )
    prompt = one("prompt")
    if prompt:
        options["initial_prompt"] = prompt
    return AudioRequest(options, response_format, stream_value == "true", words, task)


def _sse(payload: dict) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


async def _watch_disconnect(request: Request) -> None:
    """Returns once the client has gone (the body is already read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def create_app(service: Service, *, manage_scheduler: bool = True) -> FastAPI:
    """The ASGI app over ``service``; ``manage_scheduler``: start the scheduler with the app and
    stop it (finishing what is in flight) when the app shuts down."""

    # uploads are decoded on a few threads of their own: as many as the cores, not the 40 of
    # the shared pool (each thread would fragment memory with the arrays it allocates)
    decoders = ThreadPoolExecutor(max(2, os.cpu_count() or 2), thread_name_prefix="decode")

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage_scheduler:
            service.scheduler.start()
        try:
            yield
        finally:
            if manage_scheduler:
                await run_in_threadpool(service.scheduler.stop)
            decoders.shutdown(wait=False)

    app = FastAPI(
        title="maxwhisper-server",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service

    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return error.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return ApiError(error.status_code, str(error.detail)).response()

    @app.middleware("http")
    async def authenticate(request: Request, call_next):
        if service.api_key and request.url.path.startswith("/v1/"):
            given = bearer_key(request.headers.get("authorization", ""))
            problem = key_problem(given, service.api_key, "'Authorization: Bearer KEY'")
            if problem is not None:
                code, message = problem
                return ApiError(401, message, code=code).response()
        return await call_next(request)

    @app.websocket("/v1/audio/live")
    async def live(websocket: WebSocket) -> None:
        await live_endpoint(websocket, service)

    @app.get("/health")
    async def health() -> dict:
        return service.health()

    @app.get("/v1/models")
    async def models() -> dict:
        return {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": service.created, "owned_by": "maxwhisper"}
                for m in service.model_ids()
            ],
        }

    @app.get("/v1/models/{model}")
    async def model(model: str) -> dict:
        if model not in service.model_ids():
            raise ApiError(404, f"the model {model!r} does not exist", code="model_not_found")
        return {
            "id": model,
            "object": "model",
            "created": service.created,
            "owned_by": "maxwhisper",
        }

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> Response:
        return await _audio(request, "transcribe")

    @app.post("/v1/audio/translations")
    async def translations(request: Request) -> Response:
        return await _audio(request, "translate")

    async def _audio(request: Request, task: str) -> Response:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > service.max_upload_bytes + 65536:
            raise ApiError(
                413,
                f"the upload is larger than this server's limit of "
                f"{service.max_upload_bytes / 1e6:g} MB",
                param="file",
                code="file_too_large",
            )
        try:
            form = await read_form(
                request.headers.get("content-type"), request.stream(), service.max_upload_bytes
            )
        except UploadError as error:
            raise ApiError(error.status, str(error), param=error.param) from None
        except ClientDisconnect:
            return Response(status_code=499)  # nobody is listening
        parsed = parse_request(form.fields, task, service)
        loop = asyncio.get_running_loop()
        if form.file_data is None:
            raise ApiError(400, "no audio: send the file as the 'file' field", param="file")
        try:
            samples = await loop.run_in_executor(
                decoders,
                functools.partial(
                    load_audio, form.file_data, reject_silent=True, name=form.file_name
                ),
            )
        except AudioError as error:
            raise ApiError(400, str(error), param="file", code="invalid_file") from None
        finally:
            form.file_data = None  # the upload is not kept
        try:
            options = service.scheduler.options(**parsed.options)
        except DecodingOptionsError as error:
            raise ApiError(400, str(error), code="invalid_value") from None
        events: asyncio.Queue[Event] = asyncio.Queue()

        def on_event(event: Event) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(events.put_nowait, event)

        try:
            job = service.scheduler.submit(samples, options, on_event)
        except ServerBusyError as error:
            raise ApiError(503, str(error), kind="server_error", code="overloaded") from None
        del samples
        if parsed.stream:
            return StreamingResponse(_stream(job, events), media_type="text/event-stream")
        return await _answer(request, job, events, parsed)

    async def _answer(
        request: Request, job: Any, events: asyncio.Queue[Event], parsed: AudioRequest
    ) -> Response:
        watcher = asyncio.ensure_future(_watch_disconnect(request))
        duration = 0.0
        try:
            while True:
                getter = asyncio.ensure_future(events.get())
                done, _ = await asyncio.wait({getter, watcher}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    job.cancel()  # the client has gone: free its place in the batch
                    return Response(status_code=499)
                event = getter.result()
                if isinstance(event, Started):
                    duration = event.seconds
                elif isinstance(event, Failed):
                    raise _failure(event.error)
                elif isinstance(event, Done):
                    content = formats.body(
                        event.result, parsed.response_format, parsed.task, duration, parsed.words
                    )
                    if isinstance(content, dict):
                        return JSONResponse(content)
                    return PlainTextResponse(
                        content, media_type=formats.MEDIA_TYPES[parsed.response_format]
                    )
        finally:
            watcher.cancel()

    async def _stream(job: Any, events: asyncio.Queue[Event]) -> AsyncIterator[bytes]:
        duration = 0.0
        try:
            while True:
                event = await events.get()
                if isinstance(event, Started):
                    duration = event.seconds
                elif isinstance(event, Segments):
                    for segment in event.segments:
                        yield _sse(formats.delta_event(segment))
                elif isinstance(event, Done):
                    yield _sse(formats.done_event(event.result, duration))
                    return
                elif isinstance(event, Failed):
                    yield _sse(_failure(event.error).payload())
                    return
        finally:
            job.cancel()  # a no-op once done; frees the slot of a client that left

    return app


def _failure(error: BaseException) -> ApiError:
    if isinstance(error, AudioError):
        return ApiError(400, str(error), param="file", code="invalid_file")
    if isinstance(error, DecodingOptionsError):
        return ApiError(400, str(error), code="invalid_value")
    return ApiError(500, f"the engine failed: {error}", kind="server_error")


__all__ = [
    "OPENAI_ALIAS",
    "ApiError",
    "AudioRequest",
    "Scheduler",
    "Service",
    "create_app",
    "parse_request",
]
