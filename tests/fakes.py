"""A Whisper backend without a network, for fast tests of decoding and the seek loop.

:class:`ScriptedBackend` has a real model's dims (so the real tokenizer and logit filters
apply) and no weights: its "log-mel" numbers the frames, so the "encoder" knows at which frame
each window starts, and its decoder makes the tokens ``script(seek_frame)`` returns for that
window overwhelmingly likely, then end-of-text. What the seek loop does with them (segments,
seek steps, prompts, fallback, skipped silence) can then be checked against openai-whisper's
rules by hand, in milliseconds. Every prompt the decoder is given is recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from maxwhisper_lib.audio.constants import HOP_LENGTH
from maxwhisper_lib.dims import ModelDimensions


@dataclass
class Window:
    """What the scripted decoder does for one window: the tokens it emits (then EOT), how sure
    it is of them (the chosen token's logit above all others' 0) and the no-speech logit."""

    tokens: Sequence[int]
    confidence: float = 20.0
    no_speech: float = 0.0


@dataclass
class ScriptedFeatures:
    seeks: list[int]

    @property
    def batch_size(self) -> int:
        return len(self.seeks)

    def numpy(self) -> np.ndarray:
        raise NotImplementedError("the scripted backend has no audio features")


@dataclass
class ScriptedSession:
    backend: ScriptedBackend
    windows: list[Window]
    emitted: np.ndarray = field(init=False)
    fed: int = 0

    def __post_init__(self) -> None:
        self.emitted = np.zeros(len(self.windows), dtype=np.int64)

    @property
    def batch_size(self) -> int:
        return len(self.windows)

    @property
    def length(self) -> int:
        return self.fed

    def logits(self, tokens: np.ndarray, positions: Sequence[int] = (-1,)) -> np.ndarray:
        n_new = tokens.shape[1]
        if self.fed == 0:
            self.backend.prompts.extend(row.tolist() for row in tokens)
        else:
            self.emitted += n_new
        self.fed += n_new
        vocab = self.backend.dims.n_vocab
        out = np.zeros((len(self.windows), len(positions), vocab), dtype=np.float32)
        for row, window in enumerate(self.windows):
            # the decoder asks for (start-of-transcript, last) on a prompt, else for the last
            *sot, _ = range(len(positions))
            for column in sot:  # where openai-whisper reads the no-speech probability
                out[row, column, self.backend.no_speech_token] = window.no_speech
            script = [*window.tokens, self.backend.eot]
            step = min(int(self.emitted[row]), len(script) - 1)
            out[row, -1, script[step]] = window.confidence
        return out

    def reorder(self, source_rows: np.ndarray) -> None:
        self.windows = [self.windows[i] for i in source_rows]
        self.emitted = self.emitted[source_rows]


class ScriptedBackend:
    """The :class:`~maxwhisper_lib.decoding.backend.WhisperBackend` protocol, scripted (see above)."""

    mel_frontend = "max"
    alignment_heads = None

    def __init__(self, dims: ModelDimensions, script: Callable[[int], Window], tokenizer) -> None:
        self.dims = dims
        self.script = script
        self.eot = tokenizer.eot
        self.no_speech_token = tokenizer.no_speech
        self.prompts: list[list[int]] = []
        self.windows: list[int] = []
        """Seek frame of every window encoded, in order."""

    def log_mel(self, samples: np.ndarray, padding: int = 0) -> np.ndarray:
        frames = (len(samples) + padding) // HOP_LENGTH
        mel = np.zeros((self.dims.n_mels, frames), dtype=np.float32)
        mel[0] = np.arange(frames)
        return mel

    def log_mel_stream(self, chunks, padding: int = 0) -> np.ndarray:
        pieces = chunks() if callable(chunks) else chunks  # a file's pieces, read afresh
        return self.log_mel(np.concatenate(list(pieces)), padding)

    def embed_audio(self, mel) -> ScriptedFeatures:
        seeks = [round(float(window[0, 0])) for window in np.asarray(mel)]
        self.windows.extend(seeks)
        return ScriptedFeatures(seeks)

    def start_decoding(self, audio: ScriptedFeatures, rows: np.ndarray) -> ScriptedSession:
        return ScriptedSession(self, [self.script(audio.seeks[int(r)]) for r in rows])

    def alignment(self, audio, row, tokens):
        raise NotImplementedError("the scripted backend has no attention to align with")
