"""The audio encoder as MAX graphs: log-mel windows -> audio features.

``build_encoder_graph`` is the production graph (batch size symbolic). ``build_stem_graph`` and
``build_encoder_block_graph`` expose pieces of it for the per-component checks; the block graph
binds one block's weights under the alias ``block.*`` so a single compile serves every layer.
"""

from __future__ import annotations

from max.dtype import DType
from max.graph import DeviceRef, Graph, Module, TensorType, TensorValue, ops

from ...dims import ModelDimensions
from .custom_ops import KERNEL_EXTENSIONS
from .layers import Params, encoder_block, int8_linear, layer_norm, linear

BATCH = "batch"


def conv_taps(x: TensorValue, stride: int) -> TensorValue:
    """``(b, time, c)`` -> ``(b, time // stride, 3c)``: each output step's three input taps
    (t-1, t, t+1 around ``stride * step``, zero-padded), ready to multiply by a tap matrix."""
    time = x.shape[1]
    steps = int(time) // stride
    padded = ops.pad(x, [0, 0, 1, 1, 0, 0])
    taps = [padded[:, offset : offset + stride * steps : stride, :] for offset in range(3)]
    return ops.concat(taps, axis=-1)


def conv(x: TensorValue, p: Params, name: str, stride: int, width: int) -> TensorValue:
    """A 3-wide convolution ``(b, time, c)`` -> ``(b, time // stride, width)`` as one product
    with the tap matrix ``(3c, width)`` (see weight_mapping), then exact GELU (in the int8 mode
    both in the int8 kernel)."""
    taps = conv_taps(x, stride)
    if p.is_int8(f"{name}.weight"):
        return int8_linear(taps, p, name, width, gelu=True)
    return ops.gelu(linear(taps, p, name, width))


def conv_stem(mel: TensorValue, p: Params, width: int) -> TensorValue:
    """Two 3-wide convolutions with exact GELU, the second with stride 2: ``(b, n_mels, 3000)``
    -> ``(b, 1500, width)``."""
    x = ops.permute(mel, [0, 2, 1])
    return conv(conv(x, p, "encoder.conv1", 1, width), p, "encoder.conv2", 2, width)


def encode(mel: TensorValue, p: Params, dims: ModelDimensions) -> TensorValue:
    x = conv_stem(mel, p, dims.n_audio_state)
    x = x + p("encoder.positional_embedding", (dims.n_audio_ctx, dims.n_audio_state))
    for i in range(dims.n_audio_layer):
        x = encoder_block(x, p.scope(f"encoder.blocks.{i}"), dims.n_audio_head)
    return layer_norm(x, p, "encoder.ln_post")


def _mel_type(dims: ModelDimensions, dtype: DType, device: DeviceRef) -> TensorType:
    return TensorType(dtype, [BATCH, dims.n_mels, 2 * dims.n_audio_ctx], device=device)


def build_encoder_graph(
    dims: ModelDimensions,
    dtype: DType,
    device: DeviceRef,
    int8: bool = False,
    module: Module | None = None,
) -> Graph:
    """log-mel ``(batch, n_mels, 2 * n_audio_ctx)`` -> features ``(batch, n_audio_ctx, width)``;
    ``int8``: the blocks' linear layers as the Mojo int8 kernel (CPU); built into ``module``
    if given (see :mod:`maxwhisper_lib.engine.compiled`)."""
    p = Params(dtype, device, int8=int8)
    with Graph(
        "whisper_encoder" + ("_int8" if int8 else ""),
        input_types=[_mel_type(dims, dtype, device)],
        custom_extensions=KERNEL_EXTENSIONS if int8 else [],
        module=module,
    ) as graph:
        graph.output(encode(graph.inputs[0].tensor, p, dims))
    return graph


def build_stem_graph(
    dims: ModelDimensions, dtype: DType, device: DeviceRef, module: Module | None = None
) -> Graph:
    """log-mel -> the convolution stem's output (before positional embeddings)."""
    p = Params(dtype, device)
    with Graph(
        "whisper_encoder_stem", input_types=[_mel_type(dims, dtype, device)], module=module
    ) as graph:
        graph.output(conv_stem(graph.inputs[0].tensor, p, dims.n_audio_state))
    return graph


ENCODER_BLOCK = "encoder_block"
"""The weight scope of :func:`build_encoder_block_graph` (``encoder_block.attn.query.weight``...)."""


def build_encoder_block_graph(
    dims: ModelDimensions, dtype: DType, device: DeviceRef, module: Module | None = None
) -> Graph:
    """One encoder block ``(batch, n_audio_ctx, width)`` -> same, weights bound as
    ``encoder_block.*`` (any layer's, see ``weight_mapping.select_block``)."""
    p = Params(dtype, device).scope(ENCODER_BLOCK)
    x_type = TensorType(dtype, [BATCH, dims.n_audio_ctx, dims.n_audio_state], device=device)
    with Graph("whisper_encoder_block", input_types=[x_type], module=module) as graph:
        graph.output(encoder_block(graph.inputs[0].tensor, p, dims.n_audio_head))
    return graph
