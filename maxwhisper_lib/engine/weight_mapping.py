"""Canonical openai-whisper tensors -> the tensors the MAX graphs bind, in the graphs' layout.

The graphs multiply activations ``(…, in)`` by weights ``(in, out)``, so linear weights are stored
transposed; self-attention uses one fused QKV projection and cross-attention one fused KV projection
(Whisper's key projections have no bias: their slots in the fused biases are zeros); each
convolution becomes a matrix over its three time taps. Nothing here builds graphs or runs them.

With ``rows=True`` (MAX's CPU decoder) the decoder's linear weights instead keep openai-whisper's
``(out, in)`` layout and the checkpoint's precision, for the Mojo row kernels
(:mod:`maxwhisper_lib.engine.graphs.custom_ops`), and the tied logits projection reads the token
embedding itself (no transposed copy).

With ``int8=True`` (MAX's CPU int8 mode, on top of ``rows``) every linear layer of
:data:`INT8_LINEARS` and the logits projection are quantized per output channel and packed for
the Mojo int8 kernel (:mod:`maxwhisper_lib.engine.quantization`): ``<name>.weight`` becomes the packed
int8 tensor, beside ``<name>.weight_scale`` (float32) and ``<name>.weight_sum`` (int32).

The names, shapes and dtypes this produces are the ones the graphs declare
(:class:`maxwhisper_lib.engine.graphs.layers.Params`); nothing here restates them.
"""

from __future__ import annotations

import numpy as np

from ..checkpoints.canonical import WhisperWeights
from .quantization import SCALE_SUFFIX, SUM_SUFFIX, quantize_linear


def _linear_t(w: np.ndarray) -> np.ndarray:
    return w.T


def _conv_taps(w: np.ndarray) -> np.ndarray:
    """Conv1d weight ``(out, in, 3)`` -> ``(3 * in, out)``, rows ordered tap-major (t-1, t, t+1)."""
    out_channels, in_channels, width = w.shape
    return w.transpose(2, 1, 0).reshape(width * in_channels, out_channels)


ROW_LINEARS = ("attn.qkv", "attn.out", "cross_attn.query", "cross_attn.out", "mlp.fc1", "mlp.fc2")
"""The decoder's decode-shaped linear layers: row kernels with ``rows=True``. (The cross-attention
key/value projection runs once per window over 1,500 positions, so it stays a MAX matmul.)"""

TOKEN_EMBEDDING = "decoder.token_embedding"


INT8_LINEARS = (*ROW_LINEARS, "cross_attn.kv")
"""Linear layers quantized in the int8 mode, in both stacks (the encoder has the self-attention
and MLP ones); the cross-attention key/value projection too (once per window, ``(in, out)``)."""
LOGITS = "decoder.logits.weight"


STEM = ("encoder.conv1.weight", "encoder.conv2.weight")
"""The convolution stem's tap matrices ``(3 * channels, width)``: products over 3,000 and 1,500
steps, in int8 too in the int8 mode."""


def is_int8_weight(name: str) -> bool:
    """Whether ``name`` is quantized to int8 in the int8 mode: every linear weight of the encoder
    and the decoder blocks, the convolution stem's tap matrices and the logits projection."""
    if name == LOGITS or name in STEM:
        return True
    if ".blocks." not in name and not name.startswith("block."):
        return False
    return any(name.endswith(f".{lin}.weight") for lin in INT8_LINEARS)


def is_row_weight(name: str) -> bool:
    """Whether ``name`` (a decoder weight, possibly renamed ``block.*``) is stored ``(out, in)``
    at source precision in the row layout."""
    return name == TOKEN_EMBEDDING or any(name.endswith(f".{lin}.weight") for lin in ROW_LINEARS)


def row_weight_dtype(weights: WhisperWeights) -> np.dtype:
    """The checkpoint's precision for the row weights: float16 when it was published in float16,
    else float32."""
    source = weights.tensors[f"{TOKEN_EMBEDDING}.weight"].dtype
    return np.dtype(np.float16) if source == np.float16 else np.dtype(np.float32)


def _block_tensors(src: dict[str, np.ndarray], prefix: str, cross: bool) -> dict[str, np.ndarray]:
    def get(name: str) -> np.ndarray:
        return src[f"{prefix}.{name}"]

    def zeros_like_bias(name: str) -> np.ndarray:
        return np.zeros_like(get(name))

    out = {}
    norms = ["attn_ln", "mlp_ln"] + (["cross_attn_ln"] if cross else [])
    for norm in norms:
        out[f"{prefix}.{norm}.weight"] = get(f"{norm}.weight")
        out[f"{prefix}.{norm}.bias"] = get(f"{norm}.bias")
    out[f"{prefix}.attn.qkv.weight"] = np.concatenate(
        [_linear_t(get(f"attn.{p}.weight")) for p in ("query", "key", "value")], axis=1
    )
    out[f"{prefix}.attn.qkv.bias"] = np.concatenate(
        [get("attn.query.bias"), zeros_like_bias("attn.query.bias"), get("attn.value.bias")]
    )
    out[f"{prefix}.attn.out.weight"] = _linear_t(get("attn.out.weight"))
    out[f"{prefix}.attn.out.bias"] = get("attn.out.bias")
    if cross:
        out[f"{prefix}.cross_attn.query.weight"] = _linear_t(get("cross_attn.query.weight"))
        out[f"{prefix}.cross_attn.query.bias"] = get("cross_attn.query.bias")
        out[f"{prefix}.cross_attn.kv.weight"] = np.concatenate(
            [_linear_t(get(f"cross_attn.{p}.weight")) for p in ("key", "value")], axis=1
        )
        out[f"{prefix}.cross_attn.kv.bias"] = np.concatenate(
            [zeros_like_bias("cross_attn.value.bias"), get("cross_attn.value.bias")]
        )
        out[f"{prefix}.cross_attn.out.weight"] = _linear_t(get("cross_attn.out.weight"))
        out[f"{prefix}.cross_attn.out.bias"] = get("cross_attn.out.bias")
    out[f"{prefix}.mlp.fc1.weight"] = _linear_t(get("mlp.0.weight"))
    out[f"{prefix}.mlp.fc1.bias"] = get("mlp.0.bias")
    out[f"{prefix}.mlp.fc2.weight"] = _linear_t(get("mlp.2.weight"))
    out[f"{prefix}.mlp.fc2.bias"] = get("mlp.2.bias")
    return out


def map_weights(
    weights: WhisperWeights,
    dtype: np.dtype | str = np.float32,
    rows: bool = False,
    int8: bool = False,
) -> dict[str, np.ndarray]:
    """The graphs' weight registry for ``weights``: contiguous arrays of ``dtype``; with ``rows``
    the decoder's row weights stay ``(out, in)`` in :func:`row_weight_dtype`; ``int8`` quantizes
    the int8 mode's weights at load time (see above)."""
    src = weights.tensors
    dims = weights.dims
    out = {
        "encoder.conv1.weight": _conv_taps(src["encoder.conv1.weight"]),
        "encoder.conv1.bias": src["encoder.conv1.bias"],
        "encoder.conv2.weight": _conv_taps(src["encoder.conv2.weight"]),
        "encoder.conv2.bias": src["encoder.conv2.bias"],
        "encoder.positional_embedding": src["encoder.positional_embedding"],
        "encoder.ln_post.weight": src["encoder.ln_post.weight"],
        "encoder.ln_post.bias": src["encoder.ln_post.bias"],
        "decoder.token_embedding": src["decoder.token_embedding.weight"],
        "decoder.logits.weight": _linear_t(src["decoder.token_embedding.weight"]),
        "decoder.positional_embedding": src["decoder.positional_embedding"],
        "decoder.ln.weight": src["decoder.ln.weight"],
        "decoder.ln.bias": src["decoder.ln.bias"],
    }
    for i in range(dims.n_audio_layer):
        out.update(_block_tensors(src, f"encoder.blocks.{i}", cross=False))
    for i in range(dims.n_text_layer):
        out.update(_block_tensors(src, f"decoder.blocks.{i}", cross=True))
    if not rows:
        return {k: np.ascontiguousarray(v, dtype=dtype) for k, v in out.items()}
    del out["decoder.logits.weight"]
    source = row_weight_dtype(weights)
    mapped = {
        k: np.ascontiguousarray(v.T, dtype=source)
        if k.startswith("decoder.blocks.") and is_row_weight(k)
        else np.ascontiguousarray(v, dtype=source if k == TOKEN_EMBEDDING else dtype)
        for k, v in out.items()
    }
    if int8:
        mapped[LOGITS] = mapped[TOKEN_EMBEDDING]
        for name in [n for n in mapped if is_int8_weight(n)]:
            rows_layout = name == LOGITS or (name.startswith("decoder.") and is_row_weight(name))
            weight = mapped[name] if rows_layout else mapped[name].T
            quantized = quantize_linear(weight)
            mapped[name] = quantized.packed
            mapped[name + SCALE_SUFFIX] = quantized.scale
            mapped[name + SUM_SUFFIX] = quantized.weight_sum
    return mapped


def select_block(
    registry: dict[str, np.ndarray], prefix: str, alias: str = "block"
) -> dict[str, np.ndarray]:
    """The tensors of one block (``prefix`` like ``encoder.blocks.2``), renamed to ``alias.*``.

    Lets one compiled single-block graph run every layer of a model for the per-component checks.
    """
    head = prefix + "."
    return {alias + "." + k[len(head) :]: v for k, v in registry.items() if k.startswith(head)}
