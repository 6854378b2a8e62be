"""``/v1/audio/live``: live transcription over a WebSocket.

The client sends binary messages of raw PCM (16 kHz mono signed 16-bit little-endian, any length)
as the audio comes, and the text message ``{"type": "end"}`` when it ends (closing the socket
works too, without the last confirmations). The server answers with JSON text messages:

- ``{"type": "confirmed", "start", "end", "text", "words": [{"word", "start", "end",
  "probability"}]}``: final, never revised; times in seconds on the stream's timeline;
- ``{"type": "tentative", "text", "seconds"}``: the words after the confirmed ones (may change),
  and the seconds of audio received;
- ``{"type": "done", "text", "seconds"}``: after ``end``: everything confirmed; then it closes;
- ``{"type": "error", "message", "code"}``: then it closes (1007: bad audio data, 1003: a message
  that is neither audio nor ``end``, 1008: bad API key or options, 1013: too many streams).

Query parameters: ``language``, ``prompt``, ``temperature``, ``chunk_seconds``, ``agreement``,
``max_tentative_seconds``, ``buffer_seconds``, ``vad`` (``true``/``false``). With an API key,
send it as ``Authorization: Bearer KEY`` or ``?api_key=KEY``. Each stream's decodes go through the server's batcher, batched with those of
the other streams and with file requests. This is MAX-Whisper's own message shape, not OpenAI's
realtime API (whose sessions, events and base64 audio are a different protocol).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from ..audio.live_input import PCM_FORMAT, pcm_to_float
from ..decoding.live import LiveOptions, LiveRequest, LiveTranscript, decode_options, words_of
from ..errors import AudioError, DecodingOptionsError
from .auth import bearer_key, key_problem
from .batcher import Done, Failed, ServerBusyError

if TYPE_CHECKING:
    from .app import Service

BAD_DATA, UNSUPPORTED, POLICY, TRY_AGAIN = 1007, 1003, 1008, 1013
MAX_MESSAGE_BYTES = 1_000_000
"""The largest audio message taken (about 31 s of PCM)."""


class LiveError(Exception):
    """Ends a stream with an error message and a close code."""

    def __init__(self, message: str, code: str, close: int) -> None:
        super().__init__(message)
        self.code, self.close = code, close


def _flag(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def parse_params(params: dict[str, str]) -> tuple[LiveOptions, dict]:
    """The stream's policy options and decoding options from the query (LiveError if bad)."""
    known = {
        "language",
        "prompt",
        "temperature",
        "chunk_seconds",
        "agreement",
        "max_tentative_seconds",
        "buffer_seconds",
        "vad",
        "api_key",
    }
    unknown = set(params) - known
    try:
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(sorted(unknown))}")
        options = LiveOptions(
            chunk_seconds=float(params.get("chunk_seconds", LiveOptions.chunk_seconds)),
            agreement=int(params.get("agreement", LiveOptions.agreement)),
            max_tentative_seconds=float(
                params.get("max_tentative_seconds", LiveOptions.max_tentative_seconds)
            ),
            buffer_seconds=float(params.get("buffer_seconds", LiveOptions.buffer_seconds)),
            vad=_flag(params.get("vad", "true")),
        )
        decoding: dict[str, Any] = {"temperature": float(params.get("temperature", 0.0))}
        if not 0.0 <= decoding["temperature"] <= 1.0:
            raise ValueError(f"temperature must be in [0, 1], got {decoding['temperature']}")
    except (ValueError, DecodingOptionsError) as error:
        raise LiveError(str(error), "invalid_value", POLICY) from None
    if params.get("language"):
        decoding["language"] = params["language"]
    return options, decoding


class LiveStream:
    """One WebSocket's stream: its transcript, and at most one decode in the batcher."""

    def __init__(self, websocket: WebSocket, service: Service) -> None:
        self.websocket = websocket
        self.service = service
        self.arrived = asyncio.Event()
        self.tentative = ""

    def check_key(self) -> None:
        key = self.service.api_key
        if not key:
            return
        given = bearer_key(self.websocket.headers.get("authorization", ""))
        given = given or self.websocket.query_params.get("api_key", "")
        problem = key_problem(given, key, "'Authorization: Bearer KEY' or ?api_key=KEY")
        if problem is not None:
            code, message = problem
            raise LiveError(message, code, POLICY)

    async def run(self) -> None:
        self.check_key()
        options, decoding = parse_params(dict(self.websocket.query_params))
        prompt = self.websocket.query_params.get("prompt", "")
        try:
            self.service.scheduler.options(**decoding)  # bad options fail before any audio
        except DecodingOptionsError as error:
            raise LiveError(str(error), "invalid_value", POLICY) from None
        self.transcript = LiveTranscript(options, prompt)
        self.decoding = decoding
        receiver = asyncio.ensure_future(self.receive())
        try:
            await self.decode_loop(receiver)
        finally:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, LiveError):
                await receiver
        await self.send({"type": "done", "text": self.text, "seconds": self.transcript.seconds})

    @property
    def text(self) -> str:
        return "".join(w.text for w in self.transcript.confirmed)

    async def receive(self) -> None:
        """Audio into the transcript until ``end`` (or the client leaves)."""
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            data, text = message.get("bytes"), message.get("text")
            if data is not None:
                if len(data) > MAX_MESSAGE_BYTES:
                    raise LiveError(
                        f"an audio message is limited to {MAX_MESSAGE_BYTES} bytes",
                        "message_too_large",
                        BAD_DATA,
                    )
                try:
                    self.transcript.push(pcm_to_float(data))
                except AudioError as error:
                    raise LiveError(str(error), "invalid_audio", BAD_DATA) from None
            elif text is not None:
                try:
                    kind = json.loads(text).get("type")
                except (ValueError, AttributeError):
                    kind = None
                if kind != "end":
                    raise LiveError(
                        f"expected binary audio messages ({PCM_FORMAT}) or the text "
                        '{"type": "end"}',
                        "unsupported_message",
                        UNSUPPORTED,
                    )
                self.transcript.end()
                self.arrived.set()
                return
            self.arrived.set()

    async def decode_loop(self, receiver: asyncio.Future) -> None:
        """Decode what is due, one request at a time, until the transcript is done."""
        while not self.transcript.done:
            request = self.transcript.next_request()
            if request is None:
                if receiver.done():
                    receiver.result()  # a disconnect or bad message ends the stream here
                    if not self.transcript.ended:  # pragma: no cover: receive ends only so
                        return
                self.arrived.clear()
                waiter = asyncio.ensure_future(self.arrived.wait())
                await asyncio.wait({waiter, receiver}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                continue
            words, ends = ([], []) if request.silent else await self.decode(request)
            update = self.transcript.accept(request, words, ends)
            for confirmed in update.confirmed:
                await self.send({"type": "confirmed", **confirmed.as_dict()})
            if update.tentative != self.tentative or update.confirmed:
                self.tentative = update.tentative
                await self.send(
                    {"type": "tentative", "text": update.tentative, "seconds": update.seconds}
                )

    async def decode(self, request: LiveRequest) -> tuple[list, list]:
        loop = asyncio.get_running_loop()
        result: asyncio.Future = loop.create_future()

        def on_event(event: Any) -> None:
            if isinstance(event, Done | Failed):
                with contextlib.suppress(RuntimeError):  # the loop has closed
                    loop.call_soon_threadsafe(_settle, result, event)

        kwargs = decode_options(request, self.decoding)
        options = self.service.scheduler.options(**kwargs)
        try:
            job = self.service.scheduler.submit(
                request.samples, options, on_event, share_prompt=True
            )
        except ServerBusyError as error:
            raise LiveError(str(error), "overloaded", TRY_AGAIN) from None
        try:
            event = await result
        finally:
            job.cancel()  # a no-op once done; frees the slot of a stream that ended
        if isinstance(event, Failed):
            raise LiveError(f"decoding failed: {event.error}", "decoding_failed", TRY_AGAIN)
        return words_of(event.result, request.start)

    async def send(self, payload: dict) -> None:
        await self.websocket.send_text(json.dumps(payload))


def _settle(future: asyncio.Future, event: Any) -> None:
    if not future.done():
        future.set_result(event)


async def live_endpoint(websocket: WebSocket, service: Service) -> None:
    """Serve one WebSocket (see the module's docstring)."""
    counted = service.live_streams < service.max_live_streams
    service.live_streams += counted  # before the handshake ends: the next client sees it
    try:
        await websocket.accept()
        stream = LiveStream(websocket, service)
        try:
            if not counted:
                raise LiveError(
                    f"this server takes {service.max_live_streams} live streams at a time",
                    "too_many_streams",
                    TRY_AGAIN,
                )
            await stream.run()
        except WebSocketDisconnect:
            return  # the client has gone: nothing to say
        except LiveError as error:
            with contextlib.suppress(Exception):
                await stream.send({"type": "error", "message": str(error), "code": error.code})
                await websocket.close(error.close)
            return
        with contextlib.suppress(Exception):
            await websocket.close(1000)
    finally:
        service.live_streams -= counted


__all__ = ["LiveError", "live_endpoint", "parse_params"]
