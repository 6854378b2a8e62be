"""Voice activity on a live stream: which of the audio, as it arrives, is speech.

:class:`SpeechGate` runs Silero VAD (:class:`~maxwhisper_lib.audio.vad.SileroStream`) on the
samples pushed into it and hands on only utterances: each starts at the first window whose speech
probability reaches the threshold (with up to ``speech_pad_ms`` of the audio before it) and ends
once the probability has stayed below ``threshold - 0.15`` for ``min_silence_duration_ms`` (the
hysteresis of faster-whisper's ``get_speech_timestamps``). Silence between utterances is
dropped, and an utterance with less than ``min_speech_duration_ms`` of speech in it is marked so
that the caller can drop it too. Positions are samples on the stream's own timeline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .constants import SAMPLE_RATE
from .vad import VAD_WINDOW, SileroStream, VadParameters

LIVE_VAD = VadParameters(
    min_speech_duration_ms=250, min_silence_duration_ms=1000, speech_pad_ms=200
)
"""The live defaults: an utterance ends after a second of silence (faster-whisper's file default,
2 s, would hold back the last words before each pause; half a second cut sentences at their
commas and cost words: "ask not, what your country" heard as "Ask not! Like your country")."""


@dataclass(frozen=True)
class SpeechAudio:
    """Samples of the current utterance; ``start``: the stream position of the first one."""

    start: int
    samples: np.ndarray


@dataclass(frozen=True)
class SpeechEnd:
    """The current utterance ended at stream position ``end``, its last speech at
    ``last_speech`` (the end of its last window judged speech); ``speech``: samples judged speech
    in it (below ``min_speech_duration_ms``, ``too_short``: a blip, not worth decoding)."""

    end: int
    last_speech: int
    speech: int
    too_short: bool


GateEvent = SpeechAudio | SpeechEnd


class SpeechGate:
    """Silero VAD on a live stream: :meth:`push` samples as they arrive and get the
    utterances' audio and ends (:data:`GateEvent`), :meth:`finish` when the stream ends."""

    def __init__(self, parameters: VadParameters | None = None) -> None:
        self.parameters = p = parameters or LIVE_VAD
        self._silero = SileroStream(live=True)
        self._threshold, self._low = p.threshold, max(p.threshold - 0.15, 0.01)
        self._pad = int(SAMPLE_RATE * p.speech_pad_ms / 1000)
        self._min_silence = SAMPLE_RATE * p.min_silence_duration_ms / 1000
        self._min_speech = SAMPLE_RATE * p.min_speech_duration_ms / 1000
        self._unjudged = np.zeros(0, np.float32)  # pushed, probability not known yet
        self._position = 0  # stream position of the first unjudged sample
        self._before = np.zeros(0, np.float32)  # the last pad samples of silence
        self.in_speech = False
        self._silence = 0  # samples since the probability fell below the low threshold
        self._speech = 0  # speech samples in the current utterance
        self._last_speech = 0  # stream position after its last speech window

    def push(self, samples: np.ndarray) -> list[GateEvent]:
        """Take the next samples (16 kHz mono float32); the events they complete, in order."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        probabilities = self._silero.push(samples)
        joined = np.concatenate([self._unjudged, samples]) if self._unjudged.size else samples
        judged = probabilities.size * VAD_WINDOW
        self._unjudged = joined[judged:].copy()
        return self._judge(joined[:judged], probabilities)

    def finish(self) -> list[GateEvent]:
        """The stream ended: the last samples judged, and the open utterance (if any) ended."""
        tail = self._unjudged
        self._unjudged = np.zeros(0, np.float32)
        last = self._silero.finish()
        events = self._judge(tail, last) if tail.size else []
        if self.in_speech:
            events.append(self._end(self._position))
        return events

    def _judge(self, samples: np.ndarray, probabilities: np.ndarray) -> list[GateEvent]:
        events: list[GateEvent] = []
        run_start, run = self._position, []  # the current utterance's samples in this call
        for i, probability in enumerate(probabilities.tolist()):
            window = samples[i * VAD_WINDOW : (i + 1) * VAD_WINDOW]
            at = self._position
            self._position += window.size
            if not self.in_speech:
                if probability < self._threshold:
                    if self._pad:
                        self._before = np.concatenate([self._before, window])[-self._pad :]
                    continue
                self.in_speech, self._silence, self._speech = True, 0, 0
                run_start, run = at - self._before.size, [self._before]
                self._before = np.zeros(0, np.float32)
            run.append(window)
            if probability >= self._threshold:
                self._silence = 0
                self._speech += window.size
                self._last_speech = self._position
            elif probability < self._low or self._silence:
                self._silence += window.size
                if self._silence >= self._min_silence:
                    events.append(SpeechAudio(run_start, np.concatenate(run)))
                    events.append(self._end(self._position))
                    self._before = np.zeros(0, np.float32)  # its silence went with it
                    run = []
        if run:
            events.append(SpeechAudio(run_start, np.concatenate(run)))
        return events

    def _end(self, end: int) -> SpeechEnd:
        self.in_speech = False
        self._silence = 0
        return SpeechEnd(end, self._last_speech, self._speech, self._speech < self._min_speech)


__all__ = ["LIVE_VAD", "GateEvent", "SpeechAudio", "SpeechEnd", "SpeechGate"]
