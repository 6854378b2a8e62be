"""The canonical weight form every reader produces: dims plus arrays in openai-whisper's naming."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from ..dims import ModelDimensions
from ..errors import WeightsError

# Name -> role of one attention layer's tensors (the key projection has no bias in Whisper).
ATTENTION_TENSORS = (
    "query.weight",
    "query.bias",
    "key.weight",
    "value.weight",
    "value.bias",
    "out.weight",
    "out.bias",
)


def sinusoids(length: int, channels: int) -> np.ndarray:
    """openai-whisper's fixed encoder positional embedding ``(length, channels)``, float32.

    Computed by openai-whisper itself (imported lazily), so it matches its checkpoints bit for bit.
    """
    from whisper.model import sinusoids as whisper_sinusoids

    if channels % 2:
        raise WeightsError(f"sinusoidal positions need an even width, got {channels}")
    return whisper_sinusoids(length, channels).numpy().astype(np.float32)


def expected_shapes(dims: ModelDimensions) -> dict[str, tuple[int, ...]]:
    """Every tensor of a Whisper model, by its openai-whisper name, with the shape ``dims`` implies.

    This is the contract between the weight readers, the PyTorch reference and the MAX graphs.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    a, t = dims.n_audio_state, dims.n_text_state

    def attention(prefix: str, width: int) -> None:
        for name in ATTENTION_TENSORS:
            shape = (width, width) if name.endswith("weight") else (width,)
            shapes[f"{prefix}.{name}"] = shape

    def norm(prefix: str, width: int) -> None:
        shapes[f"{prefix}.weight"] = (width,)
        shapes[f"{prefix}.bias"] = (width,)

    def mlp(prefix: str, width: int) -> None:
        shapes[f"{prefix}.0.weight"] = (4 * width, width)
        shapes[f"{prefix}.0.bias"] = (4 * width,)
        shapes[f"{prefix}.2.weight"] = (width, 4 * width)
        shapes[f"{prefix}.2.bias"] = (width,)

    shapes["encoder.conv1.weight"] = (a, dims.n_mels, 3)
    shapes["encoder.conv1.bias"] = (a,)
    shapes["encoder.conv2.weight"] = (a, a, 3)
    shapes["encoder.conv2.bias"] = (a,)
    shapes["encoder.positional_embedding"] = (dims.n_audio_ctx, a)
    for i in range(dims.n_audio_layer):
        p = f"encoder.blocks.{i}"
        attention(f"{p}.attn", a)
        norm(f"{p}.attn_ln", a)
        mlp(f"{p}.mlp", a)
        norm(f"{p}.mlp_ln", a)
    norm("encoder.ln_post", a)

    shapes["decoder.token_embedding.weight"] = (dims.n_vocab, t)
    shapes["decoder.positional_embedding"] = (dims.n_text_ctx, t)
    for i in range(dims.n_text_layer):
        p = f"decoder.blocks.{i}"
        attention(f"{p}.attn", t)
        norm(f"{p}.attn_ln", t)
        attention(f"{p}.cross_attn", t)
        norm(f"{p}.cross_attn_ln", t)
        mlp(f"{p}.mlp", t)
        norm(f"{p}.mlp_ln", t)
    norm("decoder.ln", t)
    return shapes


@dataclass
class WhisperWeights:
    """A Whisper model's trained weights in canonical form.

    ``tensors`` maps openai-whisper state-dict names to NumPy arrays (float16 or float32, as the
    source stored them). ``alignment_heads`` lists the (layer, head) cross-attention heads used for
    word timestamps, when the source says which they are.
    """

    name: str
    dims: ModelDimensions
    tensors: dict[str, np.ndarray]
    alignment_heads: list[tuple[int, int]] | None = None
    source: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`WeightsError` unless every tensor is present with the shape dims imply."""
        expected = expected_shapes(self.dims)
        missing = sorted(set(expected) - set(self.tensors))
        if missing:
            shown = ", ".join(missing[:5]) + (
                f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""
            )
            raise WeightsError(f"{self.source or self.name}: missing tensors: {shown}")
        unexpected = sorted(set(self.tensors) - set(expected))
        if unexpected:
            raise WeightsError(
                f"{self.source or self.name}: unexpected tensors: {', '.join(unexpected[:5])}"
            )
        for name, shape in expected.items():
            got = tuple(self.tensors[name].shape)
            if got != shape:
                raise WeightsError(
                    f"{self.source or self.name}: tensor {name} has shape {got}, "
                    f"but the model dimensions imply {shape}"
                )
        for layer, head in self.alignment_heads or []:
            if not (0 <= layer < self.dims.n_text_layer and 0 <= head < self.dims.n_text_head):
                raise WeightsError(
                    f"{self.source or self.name}: alignment head {(layer, head)} out of range"
                )

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        return iter(self.tensors.items())

    @property
    def parameter_count(self) -> int:
        """Trainable parameters (the encoder's sinusoidal positional embedding is not one)."""
        return sum(v.size for k, v in self.tensors.items() if k != "encoder.positional_embedding")

    def astype(self, dtype: np.dtype | str) -> WhisperWeights:
        """A copy with every tensor cast to ``dtype``."""
        tensors = {k: np.ascontiguousarray(v.astype(dtype)) for k, v in self.tensors.items()}
        return WhisperWeights(
            self.name, self.dims, tensors, self.alignment_heads, self.source, dict(self.metadata)
        )
