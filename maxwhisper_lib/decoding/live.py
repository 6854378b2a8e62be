"""Live transcription: audio fed as it arrives, text out as it is confirmed.

The policy is LocalAgreement-n (Macháček, Dabre and Bojar, 2023, "Turning Whisper into Real-Time
Transcription System"; their ``whisper_streaming``): the audio since the last cut (the
*buffer*, at most 30 s) is transcribed again each time ``chunk_seconds`` of new audio have come
in, with word timestamps; the words on which the last ``n`` transcriptions agree, from the
start, are *confirmed* (never revised), the rest of the newest is the *tentative* tail. Past
``buffer_seconds`` the buffer is cut at the end of a transcribed segment that is already
confirmed, and the confirmed text before the buffer is the next transcriptions' prompt.

With the VAD on (the default) only speech reaches Whisper (:class:`~maxwhisper_lib.audio.
speech_gate.SpeechGate`): silence confirms nothing, and when an utterance ends its audio is
transcribed a last time and all of it confirmed. Times are seconds on the stream's timeline.

:class:`LiveTranscript` is the policy alone (it says what to decode and takes the results: the
server decodes through its batcher); :class:`LiveTranscriber` runs it on a model.
"""

from __future__ import annotations

import math
import queue
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from ..audio.constants import SAMPLE_RATE
from ..audio.load import SILENCE_PEAK
from ..audio.speech_gate import LIVE_VAD, SpeechAudio, SpeechEnd, SpeechGate
from ..audio.vad import VadParameters
from ..errors import DecodingOptionsError
from .backend import WhisperBackend
from .decode import compression_ratio

MAX_BUFFER_SECONDS = 30.0
"""Whisper's window: the buffer is cut (at the last confirmed word) before it grows past it."""
DROP_BEFORE_COMMITTED = 0.1
"""Words starting this much before the last confirmed word's end are taken as already confirmed
(whisper_streaming's margin)."""
TAIL_SECONDS = 0.3
"""Audio after an utterance's last speech given to its last decode."""
UNHEARD_SECONDS = 1.0
"""An utterance's last decode that stops this long before its speech does is followed by one
more for the rest."""
LOOP_COMPRESSION = 2.4
"""A segment whose text's compression ratio is over this repeats itself (``transcribe``'s
``compression_ratio_threshold``)."""
FALLBACK_STEP = 0.2
"""The temperature step of an utterance's last decode's fallback."""
ECHO_WORDS = 3
"""A segment of this many words or more that says the one before it again loops."""
MAX_OVERLAP_WORDS = 5
"""The longest run of words at a hypothesis' start checked against the confirmed words' end."""
TOKENS_PER_SECOND = 6.0
"""A decode stops after this many tokens a second of its audio, plus ``TOKEN_SLACK``: about 1.1x
the fastest segment of the dev clips' transcripts (5.6 tokens a second, timestamps included;
whole files 2.5-4.6), so that only a decoding loop reaches it. Without it a loop runs to
Whisper's 224 tokens, and on a server every stream in that round waits for it."""
TOKEN_SLACK = 16


@dataclass(frozen=True)
class LiveOptions:
    """The live policy's knobs: at least ``chunk_seconds`` of new audio between decodes;
    ``agreement`` hypotheses that must agree (LocalAgreement-n, n >= 2); the buffer cut at a
    confirmed segment's end past ``buffer_seconds``; the VAD (``vad``, ``vad_parameters``);
    the prompt: the last ``prompt_chars`` characters of confirmed text before the buffer; words
    that ended ``max_tentative_seconds`` before the newest audio confirmed without agreement."""

    chunk_seconds: float = 0.5
    agreement: int = 2
    buffer_seconds: float = 15.0
    vad: bool = True
    vad_parameters: VadParameters = field(default_factory=lambda: LIVE_VAD)
    prompt_chars: int = 200
    max_tentative_seconds: float = 4.0

    def __post_init__(self) -> None:
        if not 0.0 < self.chunk_seconds <= 10.0:
            raise DecodingOptionsError(
                f"live chunk_seconds must be in (0, 10], got {self.chunk_seconds}"
            )
        if self.agreement < 2:
            raise DecodingOptionsError(
                f"live agreement must be at least 2 hypotheses, got {self.agreement}"
            )
        if not 2 * self.chunk_seconds <= self.buffer_seconds <= MAX_BUFFER_SECONDS - 2:
            raise DecodingOptionsError(
                f"live buffer_seconds must be in [{2 * self.chunk_seconds:g}, "
                f"{MAX_BUFFER_SECONDS - 2:g}], got {self.buffer_seconds}"
            )
        if self.max_tentative_seconds < 2 * self.chunk_seconds:
            raise DecodingOptionsError(
                f"live max_tentative_seconds must be at least {2 * self.chunk_seconds:g} "
                f"(two chunks), got {self.max_tentative_seconds}"
            )
        if self.prompt_chars < 0:
            raise DecodingOptionsError(f"live prompt_chars must be >= 0, got {self.prompt_chars}")


@dataclass(frozen=True)
class LiveWord:
    """A word (with its leading space, as Whisper writes it) and its time on the stream."""

    start: float
    end: float
    text: str
    probability: float = 1.0
    repeats: bool = False
    """Its segment repeats itself (a decoding loop): never confirmed for being old alone."""
    loop: bool = False
    """Its segment loops: its own text repeats itself (compression ratio over
    ``LOOP_COMPRESSION``) or says the one before it again word for word. Never confirmed, by
    agreement or age, and left out of an utterance's last decode."""

    @property
    def key(self) -> str:
        """What agreement compares: the word without case or punctuation."""
        return _key(self.text)


def _key(text: str) -> str:
    return re.sub(r"[^\w]", "", text.lower()) or text.strip()


@dataclass(frozen=True)
class Confirmed:
    """Words confirmed together: final, on the stream's timeline."""

    start: float
    end: float
    text: str
    words: tuple[LiveWord, ...]

    @classmethod
    def of(cls, words: list[LiveWord]) -> Confirmed:
        return cls(words[0].start, words[-1].end, "".join(w.text for w in words), tuple(words))

    def as_dict(self) -> dict:
        return {
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "words": [
                {"word": w.text, "start": w.start, "end": w.end, "probability": w.probability}
                for w in self.words
            ],
        }


@dataclass(frozen=True)
class LiveUpdate:
    """What a step changed: the newly ``confirmed`` words (maybe none; never revised later),
    the ``tentative`` text after them (may change), and the ``seconds`` of stream received."""

    confirmed: tuple[Confirmed, ...]
    tentative: str
    seconds: float

    @staticmethod
    def merge(updates: Iterable[LiveUpdate], tentative: str, seconds: float) -> LiveUpdate:
        confirmed = tuple(c for u in updates for c in u.confirmed)
        return LiveUpdate(confirmed, tentative, seconds)


@dataclass(frozen=True)
class LiveRequest:
    """One decode the policy needs: ``samples`` of the buffer starting at ``start`` (seconds on
    the stream), the confirmed text before it as ``prompt``; ``final``: the utterance (or the
    stream) ended, so everything decoded now is confirmed."""

    samples: np.ndarray
    start: float
    prompt: str
    final: bool
    utterance: int

    @property
    def silent(self) -> bool:
        """Nothing audible: no decode needed (Whisper would only hallucinate)."""
        return not self.samples.size or float(np.abs(self.samples).max()) < SILENCE_PEAK


def words_of(result: dict, start: float) -> tuple[list[LiveWord], list[float]]:
    """The words of a ``transcribe`` result (word timestamps on) and its segments' ends, moved
    to the stream's timeline (the buffer began at ``start``). Words of a window whose
    compression ratio is over ``LOOP_COMPRESSION`` are marked as repeating; those of a segment
    whose own text is, or of ``ECHO_WORDS`` words or more that says the one before it again,
    as looping."""
    words, ends = [], []
    previous: list[str] = []
    for segment in result.get("segments", []):
        ends.append(start + float(segment["end"]))
        # punctuation alone: nothing to confirm
        said = [w for w in segment.get("words") or [] if re.search(r"\w", w["word"])]
        keys = [_key(w["word"]) for w in said]
        loop = (len(keys) >= ECHO_WORDS and keys == previous) or compression_ratio(
            str(segment.get("text", ""))
        ) > LOOP_COMPRESSION
        previous = keys
        repeats = loop or float(segment.get("compression_ratio", 0.0)) > LOOP_COMPRESSION
        for word in said:
            words.append(
                LiveWord(
                    start + float(word["start"]),
                    start + float(word["end"]),
                    word["word"],
                    float(word.get("probability", 1.0)),
                    repeats,
                    loop,
                )
            )
    return words, ends


@dataclass
class _Utterance:
    """Audio on its way to Whisper: from ``start`` (stream sample), ``closed`` at its end."""

    index: int
    start: int
    samples: list[np.ndarray] = field(default_factory=list)
    size: int = 0
    decoded: int = 0  # samples in it at its last decode
    closed: bool = False
    dropped: bool = False  # too little speech: not decoded
    last_speech: int | None = None  # stream position where the VAD last heard speech

    def add(self, samples: np.ndarray) -> None:
        self.samples.append(samples)
        self.size += samples.size

    def audio(self) -> np.ndarray:
        if len(self.samples) > 1:
            self.samples = [np.concatenate(self.samples)]
        return self.samples[0] if self.samples else np.zeros(0, np.float32)

    def cut(self, at: int) -> None:
        """Forget the samples before stream position ``at``."""
        audio = self.audio()[at - self.start :]
        self.samples, self.size = [audio], audio.size
        self.decoded = max(0, self.decoded - (at - self.start))
        self.start = at


class LiveTranscript:
    """The live policy without an engine: :meth:`push` audio, ask :meth:`next_request` what to
    decode, hand its result to :meth:`accept`; :meth:`end` when the input ends (then requests
    go on until :attr:`done`)."""

    def __init__(self, options: LiveOptions | None = None, initial_prompt: str = "") -> None:
        self.options = options or LiveOptions()
        self.gate = SpeechGate(self.options.vad_parameters) if self.options.vad else None
        self.received = 0  # samples pushed
        self.ended = False
        self.confirmed: list[LiveWord] = []
        self._initial_prompt = initial_prompt
        self._utterances: list[_Utterance] = []
        self._count = 0
        self._hypotheses: list[list[LiveWord]] = []  # the last n - 1, confirmed words taken off
        self._in_prompt = 0  # confirmed words before the current buffer

    # -- the input ---------------------------------------------------------------------------
    def push(self, samples: np.ndarray) -> None:
        """The next samples of the stream (16 kHz mono float32, any length)."""
        if self.ended:
            raise DecodingOptionsError("the live stream has ended: no more audio can be pushed")
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        self.received += samples.size
        if self.gate is None:
            self._speech(SpeechAudio(self.received - samples.size, samples))
            return
        for event in self.gate.push(samples):
            self._speech(event)

    def end(self) -> None:
        """The input ended: what is left is decoded a last time and confirmed."""
        if self.ended:
            return
        self.ended = True
        if self.gate is not None:
            for event in self.gate.finish():
                self._speech(event)
        elif self._utterances:
            self._utterances[-1].closed = True

    def _speech(self, event: SpeechAudio | SpeechEnd) -> None:
        if isinstance(event, SpeechEnd):
            if self._utterances and not self._utterances[-1].closed:
                self._utterances[-1].closed = True
                self._utterances[-1].dropped = event.too_short
                self._utterances[-1].last_speech = event.last_speech
            return
        if not self._utterances or self._utterances[-1].closed:
            self._count += 1
            self._utterances.append(_Utterance(self._count, event.start))
        self._utterances[-1].add(event.samples)

    # -- what to decode ----------------------------------------------------------------------
    @property
    def seconds(self) -> float:
        """Seconds of stream received."""
        return self.received / SAMPLE_RATE

    @property
    def done(self) -> bool:
        """The input ended and everything in it is confirmed."""
        return self.ended and not self._utterances

    @property
    def tentative(self) -> str:
        return "".join(w.text for w in self._hypotheses[-1]) if self._hypotheses else ""

    def prompt(self) -> str:
        """The confirmed text before the buffer (its last ``prompt_chars`` characters)."""
        text = self._initial_prompt + "".join(w.text for w in self.confirmed[: self._in_prompt])
        return text[-self.options.prompt_chars :] if self.options.prompt_chars else ""

    def next_request(self) -> LiveRequest | None:
        """The decode due now, or None (not enough new audio yet, or nothing left)."""
        while self._utterances:
            first = self._utterances[0]
            if first.closed and (first.dropped or not first.size):
                self._utterances.pop(0)
                self._hypotheses = []
                continue
            final = first.closed
            new = first.size - first.decoded
            if not final and new < self.options.chunk_seconds * SAMPLE_RATE:
                return None
            first.decoded = first.size
            audio = first.audio()
            if final and first.last_speech is not None:
                # the silence that closed the utterance is left out (Whisper fills a long one
                # with "Thank you."), but for a little of it
                keep = first.last_speech - first.start + int(TAIL_SECONDS * SAMPLE_RATE)
                audio = audio[: max(keep, 0)]
            return LiveRequest(audio, first.start / SAMPLE_RATE, self.prompt(), final, first.index)
        return None

    # -- its result --------------------------------------------------------------------------
    def accept(
        self, request: LiveRequest, words: list[LiveWord], segment_ends: list[float]
    ) -> LiveUpdate:
        """Take the words decoded for ``request`` (on the stream's timeline, see
        :func:`words_of`): confirm what the last ``agreement`` hypotheses agree on (everything
        when ``request.final``) and cut the buffer when it is long."""
        utterance = next((u for u in self._utterances if u.index == request.utterance), None)
        if utterance is not None and utterance.last_speech is not None:
            # words starting after the last speech the VAD heard: Whisper's inventions in the
            # utterance's trailing silence ("Thank you.")
            heard = utterance.last_speech / SAMPLE_RATE
            words = [w for w in words if w.start < heard]
        new = self._unconfirmed(words)
        if request.final:
            confirmed = [w for w in new if not w.loop]
            self._hypotheses = []
        else:
            self._hypotheses = [*self._hypotheses, new][-self.options.agreement :]
            confirmed = (
                _common_prefix(self._hypotheses)
                if len(self._hypotheses) == self.options.agreement
                else []
            )
            self._hypotheses = [h[len(confirmed) :] for h in self._hypotheses]
            # words the hypotheses have not agreed on for long (two voices at once, noise):
            # the newest one's, from its start, that ended max_tentative_seconds before the
            # buffer's end are confirmed anyway, so that no word waits for ever
            heard = request.start + request.samples.size / SAMPLE_RATE
            stale = _prefix_ending_by(
                self._hypotheses[-1], heard - self.options.max_tentative_seconds
            )
            if stale:
                confirmed = [*confirmed, *stale]
                self._hypotheses = [self._hypotheses[-1][len(stale) :]]
        self.confirmed.extend(confirmed)
        if utterance is not None:
            if request.final:
                self._in_prompt = len(self.confirmed)
                if not self._rest_unheard(utterance, confirmed):
                    self._utterances.remove(utterance)
            else:
                forced = self._trim(utterance, segment_ends)
                confirmed = [*confirmed, *forced]
        return LiveUpdate(
            (Confirmed.of(confirmed),) if confirmed else (), self.tentative, self.seconds
        )

    def _rest_unheard(self, utterance: _Utterance, confirmed: list[LiveWord]) -> bool:
        """After an utterance's last decode: when Whisper stopped well before the speech did
        (it ends a window early now and then, more so after an odd prompt), cut the utterance at
        the last word and keep it for one more last decode of the rest; True if so."""
        if not confirmed:
            return False
        end = utterance.start + utterance.size
        heard = utterance.last_speech if utterance.last_speech is not None else end
        last = round(confirmed[-1].end * SAMPLE_RATE)
        if heard - last < UNHEARD_SECONDS * SAMPLE_RATE or not utterance.start < last < end:
            return False
        utterance.cut(last)
        utterance.decoded = 0
        return True

    def _unconfirmed(self, words: list[LiveWord]) -> list[LiveWord]:
        """``words`` less those already confirmed: those starting before the last confirmed
        word's end, and a run at the start repeating the confirmed words' end."""
        if not self.confirmed:
            return list(words)
        last = self.confirmed[-1].end
        words = [w for w in words if w.start > last - DROP_BEFORE_COMMITTED]
        if words and abs(words[0].start - last) < 1.0:
            tail = [w.key for w in self.confirmed[-MAX_OVERLAP_WORDS:]]
            for n in range(min(len(tail), len(words)), 0, -1):
                if tail[-n:] == [w.key for w in words[:n]]:
                    return words[n:]
        return words

    def _trim(self, utterance: _Utterance, segment_ends: list[float]) -> list[LiveWord]:
        """Past ``buffer_seconds``, cut the buffer at the end of the latest segment (not the last
        one) that ends before the last confirmed word's end. Near 30 s, at that word's end; with
        nothing confirmed in the buffer, ``buffer_seconds`` before its end, the newest
        hypothesis' words before that confirmed (returned)."""
        seconds = utterance.size / SAMPLE_RATE
        if seconds <= self.options.buffer_seconds:
            return []
        start = utterance.start / SAMPLE_RATE
        last = self.confirmed[-1].end if self.confirmed else start
        forced: list[LiveWord] = []
        cut = max((e for e in segment_ends[:-1] if start < e <= last), default=None)
        if cut is None and seconds > MAX_BUFFER_SECONDS - 2 * self.options.chunk_seconds:
            if last > start:
                cut = last
            else:
                cut = start + seconds - self.options.buffer_seconds
                newest = self._hypotheses[-1] if self._hypotheses else []
                forced = [w for w in newest if w.end <= cut and not w.loop]
                self.confirmed.extend(forced)
        if cut is None:
            return []
        utterance.cut(min(round(cut * SAMPLE_RATE), utterance.start + utterance.size))
        self._in_prompt = sum(1 for w in self.confirmed if w.end <= cut + 1e-6)
        self._hypotheses = [[w for w in h if w.start >= cut] for h in self._hypotheses]
        return forced


def _prefix_ending_by(words: list[LiveWord], time: float) -> list[LiveWord]:
    """The words, from the start, that end by ``time``, up to the first that repeats."""
    count = 0
    while count < len(words) and words[count].end <= time and not words[count].repeats:
        count += 1
    return words[:count]


def _common_prefix(hypotheses: list[list[LiveWord]]) -> list[LiveWord]:
    """The newest hypothesis' words, from its start, on which all of them agree, up to the
    first that loops."""
    newest = hypotheses[-1]
    count = 0
    while (
        count < min(len(h) for h in hypotheses)
        and not newest[count].loop
        and all(h[count].key == newest[count].key for h in hypotheses)
    ):
        count += 1
    return newest[:count]


Decode = Callable[[LiveRequest], tuple[list[LiveWord], list[float]]]
"""Decodes a request: its words and segment ends on the stream's timeline."""


def token_budget(samples: int) -> int:
    """The most tokens a decode of ``samples`` of audio may write (``TOKENS_PER_SECOND``; at
    most Whisper's 224)."""
    return min(224, math.ceil(TOKENS_PER_SECOND * samples / SAMPLE_RATE) + TOKEN_SLACK)


def decode_options(request: LiveRequest, options: dict) -> dict:
    """``transcribe``'s keyword arguments for a request: greedy at ``options``' temperature (0 by
    default; the first of a sequence) without fallback, but for an utterance's last decode,
    which confirms all it hears: that one falls back (by 0.2 up to 1.0, or along the sequence
    given) as ``transcribe`` does, so that a decoding loop is decoded again; word timestamps;
    the prompt; at most :func:`token_budget` tokens (``sample_len``), unless ``options``
    set ``sample_len``."""
    given = options.get("temperature", 0.0)
    if isinstance(given, int | float):
        steps = max(round((1.0 - given) / FALLBACK_STEP), 0)
        schedule = tuple(round(given + FALLBACK_STEP * i, 6) for i in range(steps + 1))
    else:
        schedule = tuple(given) or (0.0,)
    return {
        "condition_on_previous_text": False,
        "sample_len": token_budget(request.samples.size),
        **options,
        "temperature": schedule if request.final else schedule[0],
        "word_timestamps": True,
        "initial_prompt": request.prompt or None,
    }


class LiveTranscriber:
    """Live transcription on a model: :meth:`feed` audio as it arrives, get a
    :class:`LiveUpdate` each time; :meth:`finish` at the end of the input. ``options``:
    :class:`LiveOptions`; ``decode_options``: ``transcribe``'s (``language``, ``task``,
    ``initial_prompt``, ``temperature``, ...)."""

    def __init__(
        self,
        backend: WhisperBackend,
        options: LiveOptions | None = None,
        decode: Decode | None = None,
        **decode_options,
    ) -> None:
        from .transcribe import make_options

        if "word_timestamps" in decode_options or "vad_filter" in decode_options:
            raise DecodingOptionsError(
                "live transcription sets word_timestamps itself and has its own VAD "
                "(LiveOptions.vad)"
            )
        initial_prompt = decode_options.pop("initial_prompt", None) or ""
        make_options(backend.dims, **decode_options)  # bad options fail here
        self.backend = backend
        self.decode_options = decode_options
        self.transcript = LiveTranscript(options, initial_prompt)
        self._decode = decode or self._transcribe
        self.decodes = 0

    def _transcribe(self, request: LiveRequest) -> tuple[list[LiveWord], list[float]]:
        from .transcribe import transcribe

        kwargs = decode_options(request, self.decode_options)
        result = transcribe(self.backend, request.samples, verbose=None, progress=False, **kwargs)
        return words_of(result, request.start)

    def feed(self, samples: np.ndarray) -> LiveUpdate:
        """Push ``samples`` and make every decode that is due."""
        self.transcript.push(samples)
        return self.step()

    def step(self) -> LiveUpdate:
        """Every decode that is due now (none when too little new audio has come in)."""
        updates = []
        while (request := self.transcript.next_request()) is not None:
            words, ends = ([], []) if request.silent else self._decode(request)
            self.decodes += not request.silent
            updates.append(self.transcript.accept(request, words, ends))
        return LiveUpdate.merge(updates, self.transcript.tentative, self.transcript.seconds)

    def finish(self) -> LiveUpdate:
        """The input ended: the rest decoded and confirmed."""
        self.transcript.end()
        return self.step()

    @property
    def text(self) -> str:
        """Everything confirmed so far."""
        return "".join(w.text for w in self.transcript.confirmed)


def run_live(
    transcriber: LiveTranscriber,
    pieces: Iterable[np.ndarray],
    on_update: Callable[[LiveUpdate], None],
) -> None:
    """Transcribe a live source: ``pieces`` come as the audio does (a pipe, a microphone, or
    :func:`~maxwhisper_lib.audio.live_input.played`), read by a thread of their own; each step
    takes all that has arrived meanwhile and makes the decodes due, so the transcriber keeps up
    whatever a decode costs (slower decodes see longer chunks). ``on_update`` gets each step's
    update, the last one after the input ended. An error reading the input is raised here,
    after what came before it is finished."""
    arrived: queue.Queue = queue.Queue()
    end = object()

    def read() -> None:
        try:
            for piece in pieces:
                arrived.put(piece)
        except BaseException as error:  # handed to the loop, raised there
            arrived.put(error)
        arrived.put(end)

    reader = threading.Thread(target=read, name="maxwhisper-live-input", daemon=True)
    reader.start()
    failure: BaseException | None = None
    finished = False
    while not finished:
        items = [arrived.get()]
        while True:
            try:
                items.append(arrived.get_nowait())
            except queue.Empty:
                break
        for item in items:
            if item is end:
                finished = True
            elif isinstance(item, BaseException):
                failure = item
            else:
                transcriber.transcript.push(item)
        on_update(transcriber.finish() if finished else transcriber.step())
    if failure is not None:
        raise failure


def replay(
    transcriber: LiveTranscriber,
    samples: np.ndarray | Iterable[np.ndarray],
    chunk_seconds: float = 0.5,
) -> Iterable[LiveUpdate]:
    """Feed ``samples`` (whole, or as pieces) ``chunk_seconds`` at a time, as fast as it decodes
    (no waiting: tests, and a file read faster than real time), then finish; an update per
    chunk."""
    step = max(1, int(chunk_seconds * SAMPLE_RATE))
    for piece in [samples] if isinstance(samples, np.ndarray) else samples:
        for at in range(0, len(piece), step):
            yield transcriber.feed(piece[at : at + step])
    yield transcriber.finish()


__all__ = [
    "Confirmed",
    "LiveOptions",
    "LiveRequest",
    "LiveTranscriber",
    "LiveTranscript",
    "LiveUpdate",
    "LiveWord",
    "decode_options",
    "replay",
    "run_live",
    "words_of",
]
