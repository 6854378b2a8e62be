"""The PyTorch reference: openai-whisper's own model built from canonical weights."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import whisper.model

from ..checkpoints.canonical import WhisperWeights

if TYPE_CHECKING:
    from ..audio.features import LogMelPieces


def alignment_mask(weights: WhisperWeights) -> torch.Tensor | None:
    """Boolean (n_text_layer, n_text_head) mask of the alignment heads, or None if unknown."""
    if not weights.alignment_heads:
        return None
    mask = torch.zeros(weights.dims.n_text_layer, weights.dims.n_text_head, dtype=torch.bool)
    for layer, head in weights.alignment_heads:
        mask[layer, head] = True
    return mask


def build_reference_model(
    weights: WhisperWeights, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> whisper.model.Whisper:
    """openai-whisper's ``Whisper`` module holding exactly ``weights`` (cast to ``dtype``)."""
    model = whisper.model.Whisper(whisper.model.ModelDimensions(**weights.dims.to_dict()))
    state = {
        k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in weights.tensors.items()
    }
    model.load_state_dict(state)
    mask = alignment_mask(weights)
    if mask is not None:
        model.register_buffer("alignment_heads", mask.to_sparse(), persistent=False)
    return model.to(device=device, dtype=dtype).eval()


def load_openai_whisper(
    checkpoint: str | Path, device: str = "cpu", weights: WhisperWeights | None = None
) -> whisper.model.Whisper:
    """openai-whisper's own ``load_model(checkpoint)``: the one place the peers, the checks and
    the notebooks load openai-whisper from a ``.pt`` file. With ``weights``, their alignment
    heads are set (``load_model`` of a path keeps the default heads, which word timestamps
    would notice)."""
    model = whisper.load_model(str(checkpoint), device=device)
    mask = alignment_mask(weights) if weights is not None else None
    if mask is not None:
        model.register_buffer("alignment_heads", mask.to_sparse().to(device), persistent=False)
    return model


class TorchAudioFeatures:
    """Encoder output held as a torch tensor."""

    def __init__(self, features: torch.Tensor) -> None:
        self.tensor = features

    @property
    def batch_size(self) -> int:
        return self.tensor.shape[0]

    def numpy(self) -> np.ndarray:
        return self.tensor.float().cpu().numpy()


class TorchDecoderSession:
    """openai-whisper's own KV-cache hooks behind the :class:`DecoderSession` protocol.

    The hooks are installed for the duration of each call only, so several sessions (and the
    uncached alignment pass) can share one model.
    """

    def __init__(self, model: whisper.model.Whisper, features: torch.Tensor) -> None:
        self.model = model
        self.features = features
        self.kv_cache: dict = {}
        self._length = 0

    @property
    def batch_size(self) -> int:
        return self.features.shape[0]

    @property
    def length(self) -> int:
        return self._length

    @torch.no_grad()
    def step(self, tokens: np.ndarray) -> torch.Tensor:
        """Feed ``tokens (batch, n)``; every position's logits, left on the device."""
        x = torch.as_tensor(np.asarray(tokens, dtype=np.int64), device=self.features.device)
        self.kv_cache, hooks = self.model.install_kv_cache_hooks(self.kv_cache)
        try:
            out = self.model.decoder(x, self.features, kv_cache=self.kv_cache)
        finally:
            for hook in hooks:
                hook.remove()
        self._length += x.shape[1]
        return out

    def logits(self, tokens: np.ndarray, positions=(-1,)) -> np.ndarray:
        return self.step(tokens)[:, list(positions)].float().cpu().numpy()

    def reorder(self, source_rows: np.ndarray) -> None:
        index = torch.as_tensor(
            np.asarray(source_rows, dtype=np.int64), device=self.features.device
        )
        # as openai-whisper's rearrange_kv_cache: every cached key/value, cross-attention included
        for module, tensor in self.kv_cache.items():
            self.kv_cache[module] = tensor[index].detach()
        self.features = self.features[index]


class TorchBackend:
    """openai-whisper's PyTorch model behind the :class:`WhisperBackend` protocol; its
    default front end is openai-whisper's own, its ``log_mel`` MAX's on the CPU."""

    mel_frontend = "reference"

    def __init__(
        self, weights: WhisperWeights, device: str = "cpu", dtype: torch.dtype = torch.float32
    ):
        self.model = build_reference_model(weights, device=device, dtype=dtype)
        self.dims = weights.dims
        self.alignment_heads = weights.alignment_heads
        self.device = device
        self.dtype = dtype

    def log_mel(self, samples: np.ndarray, padding: int = 0) -> np.ndarray:
        from ..audio.features import LogMelSpectrogram

        return LogMelSpectrogram(self.dims.n_mels, "cpu").numpy(samples, padding)

    def log_mel_stream(
        self, chunks: Iterable[np.ndarray] | Callable[[], Iterable[np.ndarray]], padding: int = 0
    ) -> LogMelPieces:
        from ..audio.features import LogMelSpectrogram

        return LogMelSpectrogram(self.dims.n_mels, "cpu").stream(chunks, padding)

    @torch.no_grad()
    def embed_audio(self, mel) -> TorchAudioFeatures:
        x = torch.as_tensor(np.asarray(mel, dtype=np.float32), device=self.device).to(self.dtype)
        return TorchAudioFeatures(self.model.encoder(x))

    def start_decoding(self, audio: TorchAudioFeatures, rows: np.ndarray) -> TorchDecoderSession:
        index = torch.as_tensor(np.asarray(rows, dtype=np.int64), device=self.device)
        return TorchDecoderSession(self.model, audio.tensor[index])

    @torch.no_grad()
    def alignment(self, audio: TorchAudioFeatures, row: int, tokens: np.ndarray):
        captured: list[torch.Tensor] = []
        hooks = [
            block.cross_attn.register_forward_hook(
                lambda _m, _i, outs: captured.append(outs[-1][0])
            )
            for block in self.model.decoder.blocks
        ]
        try:
            x = torch.as_tensor(np.asarray(tokens, dtype=np.int64)[None], device=self.device)
            with whisper.model.disable_sdpa():
                logits = self.model.decoder(x, audio.tensor[row : row + 1])[0]
        finally:
            for hook in hooks:
                hook.remove()
        return logits.float().cpu().numpy(), torch.stack(captured).float().cpu().numpy()
