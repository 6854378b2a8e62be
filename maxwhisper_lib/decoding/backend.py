"""What the decoding loop needs from a Whisper network, whichever engine runs it.

Two engines implement these protocols: :class:`maxwhisper_lib.engine.model.MaxWhisper` (MAX Graph, the
product) and :class:`maxwhisper_lib.decoding.reference.TorchBackend` (openai-whisper's PyTorch module, the
reference the tests compare against). Decoding, long-form transcription and word timestamps are
written once against the protocols.

One optional capability: a backend whose ``device_loop`` is true has sessions with
``decode_greedy(initial, sot_index, steps, masks, settings)``, and greedy decoding at
temperature 0 then runs whole on the device, filters, choice and their state included, instead
of copying each step's logits to the host (:mod:`maxwhisper_lib.engine.graphs.loop`,
:mod:`maxwhisper_lib.engine.greedy_loop`; MaxWhisper's default).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import numpy as np

from ..dims import ModelDimensions


class AudioFeatures(Protocol):
    """Encoder output for a batch of 30-second windows; it stays on the engine's device."""

    @property
    def batch_size(self) -> int: ...

    def numpy(self) -> np.ndarray:
        """Copy to the host as float32 ``(batch, n_audio_ctx, n_audio_state)``."""
        ...


class DecoderSession(Protocol):
    """A batch of token sequences decoding together, each reading one window of audio features.

    The session owns the self-attention KV cache and the cross-attention keys/values (computed once,
    when the session starts).
    """

    @property
    def batch_size(self) -> int: ...

    @property
    def length(self) -> int:
        """Tokens consumed so far by every sequence (the KV cache length)."""
        ...

    def logits(self, tokens: np.ndarray, positions: Sequence[int] = (-1,)) -> np.ndarray:
        """Feed ``tokens`` ``(batch, n_new)`` to every sequence and advance the cache by ``n_new``.

        Returns float32 logits ``(batch, len(positions), n_vocab)`` at the given positions among the
        new tokens (negative counts from the end), so a prompt costs one call and only the logits
        needed leave the device.
        """
        ...

    def reorder(self, source_rows: np.ndarray) -> None:
        """Beam search: cache row ``i`` continues the sequence that was row ``source_rows[i]``."""
        ...


class WhisperBackend(Protocol):
    """A Whisper network on some engine and device."""

    dims: ModelDimensions
    alignment_heads: list[tuple[int, int]] | None
    mel_frontend: str
    """The log-mel front end ``transcribe`` uses by default: ``max`` (:meth:`log_mel`) or
    ``reference`` (openai-whisper's torch function)."""

    def log_mel(self, samples: np.ndarray, padding: int = 0) -> np.ndarray:
        """Host float32 log-mel of ``samples`` plus ``padding`` zeros from the MAX Graph front
        end (:class:`~maxwhisper_lib.audio.features.LogMelSpectrogram`) on this backend's device, or the
        CPU where the backend is not MAX."""
        ...

    def log_mel_stream(
        self, chunks: Iterable[np.ndarray] | Callable[[], Iterable[np.ndarray]], padding: int = 0
    ) -> Any:
        """:meth:`log_mel` of the samples ``chunks`` yield, taken as they arrive
        (a :class:`~maxwhisper_lib.audio.features.LogMelPieces`: the samples are never held whole), or of
        a function that yields them afresh each call (a file: a long spectrogram is then
        computed again as it is used instead of held whole)."""
        ...

    def embed_audio(self, mel: np.ndarray | Any) -> AudioFeatures:
        """Encode log-mel ``(batch, n_mels, 3000)`` windows."""
        ...

    def start_decoding(self, audio: AudioFeatures, rows: np.ndarray) -> DecoderSession:
        """A session of ``len(rows)`` sequences; sequence ``i`` attends to window ``rows[i]``."""
        ...

    def alignment(
        self, audio: AudioFeatures, row: int, tokens: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """One full, uncached pass over ``tokens`` ``(n_tokens,)`` against window ``row``.

        Returns ``(logits, cross_qk)``: float32 logits ``(n_tokens, n_vocab)`` and the scaled
        cross-attention scores before softmax,
        ``(n_text_layer, n_text_head, n_tokens, n_audio_ctx)``,
        as openai-whisper's word-timestamp hooks capture them.
        """
        ...
