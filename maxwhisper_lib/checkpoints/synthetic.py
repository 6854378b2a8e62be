"""Small random Whisper weights, for fast tests of readers, writers and graphs (not for speech)."""

from __future__ import annotations

import numpy as np

from ..dims import ModelDimensions
from .canonical import WhisperWeights, expected_shapes

# A toy architecture with the real vocabulary and context sizes (so tokenizers and positional
# ranges behave as for real models) but 16-wide, 2-layer stacks.
TOY_DIMS = ModelDimensions(
    n_mels=80,
    n_audio_ctx=1500,
    n_audio_state=16,
    n_audio_head=2,
    n_audio_layer=2,
    n_vocab=51864,
    n_text_ctx=448,
    n_text_state=16,
    n_text_head=2,
    n_text_layer=2,
)


def random_weights(
    dims: ModelDimensions = TOY_DIMS, seed: int = 0, dtype: str = "float16", name: str = "toy"
) -> WhisperWeights:
    """Weights of ``dims`` drawn from N(0, 0.1²) (layer-norm gains around 1), deterministic."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for key, shape in expected_shapes(dims).items():
        values = rng.normal(0.0, 0.1, size=shape)
        if key.endswith(("_ln.weight", "ln_post.weight", "decoder.ln.weight")):
            values += 1.0
        tensors[key] = values.astype(dtype)
    heads = [(dims.n_text_layer - 1, h) for h in range(dims.n_text_head)]
    return WhisperWeights(name, dims, tensors, heads, source=f"random(seed={seed})")
