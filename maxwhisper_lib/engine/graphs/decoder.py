"""The text decoder as MAX graphs, with a key/value cache that stays on the device.

* ``build_cross_kv_graph``: audio features -> every block's cross-attention keys/values, once per
  window (rows may repeat a window, e.g. for beams).
* ``build_decoder_step_graph``: ``n_new`` tokens per sequence (the whole prompt, or one token) ->
  logits at chosen positions. Each block's self-attention cache is a pair of mutable device
  buffers of fixed capacity ``n_text_ctx``: the step reads the cache, attends to it (slots at or
  past ``offset`` masked) and to the new positions, and writes the new keys/values at ``offset``
  once every block is done. (Writing each block's slot before the next block reads makes
  MAX 26.7's compiler crash; writing last keeps one read and one write per buffer.) Positions and
  attention masks come from the host (:func:`self_attention_mask`), see ``layers.decoder_block``.
  With ``row_dtype`` each block's self-attention is instead one Mojo kernel that writes its new
  keys/values into the buffers in place and reads only the filled slots (the mask is unused).
* ``build_reorder_graph``: beam search moves cache rows (gather along the batch).
* ``build_alignment_graph``: one uncached pass returning logits and every head's cross-attention
  scores, for word timestamps.
* ``build_decoder_block_graph``: one block with full causal attention, for the component checks.

Built with ``row_dtype`` (MAX's CPU device), the decoder's linear layers and the logits projection
run as the Mojo row kernels over weights kept ``(out, in)`` at the checkpoint's precision
(``weight_mapping``, rows layout); without it (GPU) they are MAX matmuls in the model dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
from max.dtype import DType
from max.graph import (
    BufferType,
    BufferValue,
    DeviceRef,
    Graph,
    Module,
    TensorType,
    TensorValue,
    ops,
)

from ...dims import ModelDimensions
from ..weight_mapping import LOGITS, TOKEN_EMBEDDING
from .custom_ops import KERNEL_EXTENSIONS, int8_product, matmul_rows
from .layers import Params, cross_keys_values, decoder_block, layer_norm

BATCH = "batch"
WINDOWS = "windows"
N_NEW = "n_new"
N_LOGITS = "n_logits"
HOST = DeviceRef.CPU()
T = TypeVar("T")


def head_width(dims: ModelDimensions) -> int:
    return dims.n_text_state // dims.n_text_head


def cache_types(
    dims: ModelDimensions, dtype: DType, device: DeviceRef, rows: bool = False
) -> list[BufferType]:
    """Per block: keys ``(batch, heads, head_width, n_text_ctx)``, values ``(…, ctx, head_width)``;
    with ``rows`` (the self-attention kernel's layout) keys ``(…, ctx, head_width)`` too."""
    h, dh, cap = dims.n_text_head, head_width(dims), dims.n_text_ctx
    types = []
    for _ in range(dims.n_text_layer):
        types.append(
            BufferType(dtype, [BATCH, h, cap, dh] if rows else [BATCH, h, dh, cap], device=device)
        )
        types.append(BufferType(dtype, [BATCH, h, cap, dh], device=device))
    return types


def cross_dtype(dtype: DType, int8: bool = False) -> DType:
    """How the cross keys/values are stored: float16 in the int8 mode (the CPU row kernel widens
    them as it reads them: half the bytes each decoder step reads per sequence, the step's
    largest read at batch 8), else ``dtype``."""
    return DType.float16 if int8 else dtype


def cross_types(
    dims: ModelDimensions,
    dtype: DType,
    device: DeviceRef,
    per_window: bool = False,
    int8: bool = False,
) -> list[TensorType]:
    """Per block: cross keys and values, each ``(batch, heads, n_audio_ctx, head_width)``, or
    ``(windows, …)`` with ``per_window`` (the CPU step reads them through each sequence's row),
    in :func:`cross_dtype`.

    One tensor per block and kind, not a stacked ``(layers, …)`` pair: slicing a layer out of a
    stacked input costs the decoder step a copy per layer on MAX's CPU backend.
    """
    shape = [WINDOWS if per_window else BATCH, dims.n_text_head, dims.n_audio_ctx, head_width(dims)]
    stored = cross_dtype(dtype, int8)
    return [TensorType(stored, shape, device=device) for _ in range(2 * dims.n_text_layer)]


def self_attention_mask(offset: int, n_new: int, capacity: int | None = None) -> np.ndarray:
    """Additive float32 mask for ``n_new`` positions starting at ``offset``.

    With ``capacity``: ``(n_new, capacity + n_new)``, cache slots before ``offset`` visible, then
    causal among the new positions; without: ``(n_new, n_new)`` causal.
    """
    causal = np.triu(np.full((n_new, n_new), -np.inf, dtype=np.float32), 1)
    if capacity is None:
        return causal
    past = np.where(np.arange(capacity) < offset, 0.0, -np.inf).astype(np.float32)
    return np.concatenate([np.broadcast_to(past, (n_new, capacity)), causal], axis=1)


def decoder_params(
    dims: ModelDimensions,
    dtype: DType,
    device: DeviceRef,
    row_dtype: DType | None,
    int8: bool = False,
) -> Params:
    """The decoder graphs' weights, in the row layout when ``row_dtype`` is given (``int8``:
    the int8 mode's packed weights)."""
    return Params(dtype, device, row_dtype=row_dtype, int8=int8)


def extensions(row_dtype: DType | None) -> list:
    """The ``custom_extensions`` a decoder graph needs (the row kernels, if it uses them)."""
    return KERNEL_EXTENSIONS if row_dtype is not None else []


def embed_tokens(
    tokens: TensorValue, positions: TensorValue, p: Params, dims: ModelDimensions
) -> TensorValue:
    """Token plus learned positional embeddings, ``(batch, n, width)``."""
    table = p(TOKEN_EMBEDDING, (dims.n_vocab, dims.n_text_state))
    tokens_embedded = ops.gather(table, tokens, axis=0)
    if tokens_embedded.dtype != p.dtype:  # a float16 row weight, widened exactly
        tokens_embedded = ops.cast(tokens_embedded, p.dtype)
    positional = p("decoder.positional_embedding", (dims.n_text_ctx, dims.n_text_state))
    return tokens_embedded + ops.gather(positional, positions, axis=0)


def logits(x: TensorValue, p: Params, n_vocab: int) -> TensorValue:
    """Final LayerNorm and the tied output projection, in float32."""
    width = int(x.shape[-1])
    x = layer_norm(x, p, "decoder.ln")
    if p.is_int8(LOGITS):
        return int8_product(x, *p.int8_weight(LOGITS, n_vocab, width), out_features=n_vocab)
    if p.is_rows(TOKEN_EMBEDDING):
        return matmul_rows(x, p(TOKEN_EMBEDDING, (n_vocab, width)))
    out = x @ p(LOGITS, (width, n_vocab))
    return out if out.dtype == DType.float32 else ops.cast(out, DType.float32)


def build_cross_kv_graph(
    dims: ModelDimensions,
    dtype: DType,
    device: DeviceRef,
    int8: bool = False,
    module: Module | None = None,
) -> Graph:
    """features ``(n_audio, n_audio_ctx, width)``, rows ``(batch,)`` -> each block's cross keys
    and values (:func:`cross_types`), interleaved; ``int8``: the projection as the int8 kernel,
    stored in float16."""
    p = Params(dtype, device, int8=int8)
    features = TensorType(dtype, ["n_audio", dims.n_audio_ctx, dims.n_audio_state], device=device)
    rows = TensorType(DType.int64, [BATCH], device=device)
    with Graph(
        "whisper_cross_kv" + ("_int8" if int8 else ""),
        input_types=[features, rows],
        custom_extensions=KERNEL_EXTENSIONS if int8 else [],
        module=module,
    ) as graph:
        xa = ops.gather(graph.inputs[0].tensor, graph.inputs[1].tensor, axis=0)
        stored = cross_dtype(dtype, int8)
        graph.output(
            *(
                tensor if tensor.dtype == stored else ops.cast(tensor, stored)
                for i in range(dims.n_text_layer)
                for tensor in cross_keys_values(
                    xa, p.scope(f"decoder.blocks.{i}"), dims.n_text_head
                )
            )
        )
    return graph


@dataclass
class DecoderStepInputs(Generic[T]):
    """The decoder step graph's inputs by name, in one place: the graph unpacks its values
    with :meth:`from_list`, the caller passes its buffers with :meth:`as_list`, both in the
    order of :meth:`types`."""

    tokens: T
    """``(batch, n_new)`` int64"""
    positions: T
    """``(n_new,)`` int64: the new tokens' positions"""
    offset: T
    """``()`` int64 on the host: how many positions the cache holds"""
    mask: T
    """``(n_new, n_text_ctx + n_new)`` float32: additive self-attention mask"""
    logit_positions: T
    """``(n_logits,)`` int64: which new positions' logits come back"""
    rows: T | None
    """``(batch,)`` int64: each sequence's window (CPU row kernels), else None"""
    cross: Sequence[T]
    """per block: cross keys, cross values (:func:`cross_types`)"""
    caches: Sequence[T]
    """per block: self-attention key and value buffers (:func:`cache_types`)"""

    @staticmethod
    def types(
        dims: ModelDimensions,
        dtype: DType,
        device: DeviceRef,
        per_window: bool,
        int8: bool = False,
    ) -> list[TensorType | BufferType]:
        """The graph's input types (``per_window``: the CPU step with row kernels; ``int8``:
        the int8 mode's float16 cross keys/values)."""
        return [
            TensorType(DType.int64, [BATCH, N_NEW], device=device),
            TensorType(DType.int64, [N_NEW], device=device),
            TensorType(DType.int64, [], device=HOST),
            TensorType(DType.float32, [N_NEW, "n_visible"], device=device),
            TensorType(DType.int64, [N_LOGITS], device=device),
            *([TensorType(DType.int64, [BATCH], device=device)] if per_window else []),
            *cross_types(dims, dtype, device, per_window, int8),
            *cache_types(dims, dtype, device, rows=per_window),
        ]

    @classmethod
    def from_list(
        cls, values: Sequence[T], n_layers: int, per_window: bool
    ) -> DecoderStepInputs[T]:
        first_cross = 6 if per_window else 5
        return cls(
            *values[:5],
            rows=values[5] if per_window else None,
            cross=values[first_cross : first_cross + 2 * n_layers],
            caches=values[first_cross + 2 * n_layers :],
        )

    def as_list(self) -> list[T]:
        return [
            self.tokens,
            self.positions,
            self.offset,
            self.mask,
            self.logit_positions,
            *([self.rows] if self.rows is not None else []),
            *self.cross,
            *self.caches,
        ]


CacheStore = Callable[
    [BufferValue, BufferValue, tuple[TensorValue, TensorValue], TensorValue, TensorValue], None
]
"""Writes one block's new keys ``(b, h, dh, n_new)`` and values ``(b, h, n_new, dh)`` into its
cache buffers, whose loaded values it is given (MAX-ops steps; the CPU kernel writes its cache
itself)."""


def store_at_host_offset(offset: TensorValue, n_new) -> CacheStore:
    """A :data:`CacheStore` writing at ``offset`` (a host scalar) with a sliced store."""
    new_slots = (slice(offset, offset + ops.shape_to_tensor([n_new]).reshape([])), n_new)

    def store(k_buffer, v_buffer, past, new_k, new_v) -> None:
        ops.buffer_store_slice(k_buffer, new_k, [slice(None)] * 3 + [new_slots])
        ops.buffer_store_slice(v_buffer, new_v, [slice(None)] * 2 + [new_slots, slice(None)])

    return store


def store_at_device_offset(offset: TensorValue, slot_ids: TensorValue) -> CacheStore:
    """A :data:`CacheStore` writing one new position at ``offset`` (``(1,)`` on the device,
    which a captured graph reads afresh at every replay): each cache is rewritten with the new
    slot blended in (``slot_ids``: ``0 .. capacity - 1``), MAX ops only."""
    capacity = int(slot_ids.shape[0])
    at_k = ops.reshape(slot_ids, [1, 1, 1, capacity]) == ops.reshape(offset, [1, 1, 1, 1])
    at_v = ops.reshape(slot_ids, [1, 1, capacity, 1]) == ops.reshape(offset, [1, 1, 1, 1])

    def store(k_buffer, v_buffer, past, new_k, new_v) -> None:
        ops.buffer_store(k_buffer, ops.where(at_k, new_k, past[0]))
        ops.buffer_store(v_buffer, ops.where(at_v, new_v, past[1]))

    return store


def device_offset_mask(offset: TensorValue, slot_ids: TensorValue) -> TensorValue:
    """The self-attention mask ``(1, capacity + 1)`` of one new position at ``offset`` (a device
    ``(1,)``): cache slots before it visible, then the new position itself."""
    device = offset.device
    past = ops.where(
        slot_ids < offset,
        ops.constant(0.0, DType.float32, device=device),
        ops.constant(float("-inf"), DType.float32, device=device),
    )
    own = ops.broadcast_to(ops.constant(0.0, DType.float32, device=device), [1])
    return ops.reshape(ops.concat([past, own]), [1, int(slot_ids.shape[0]) + 1])


def decoder_forward(
    tokens: TensorValue,
    positions: TensorValue,
    p: Params,
    dims: ModelDimensions,
    cross: Sequence[TensorValue],
    caches: Sequence[BufferValue],
    offset: TensorValue,
    mask: TensorValue | None,
    rows: TensorValue | None,
    store: CacheStore | None,
) -> TensorValue:
    """The decoder over ``tokens (b, n_new)`` at ``positions`` against the caches, which hold
    ``offset`` positions: hidden states ``(b, n_new, width)`` before the final LayerNorm.

    With ``rows`` (the CPU step: row kernels, per-window cross keys/values) each block's
    self-attention is the Mojo kernel, which reads ``offset`` and writes its cache itself;
    otherwise MAX ops attend under ``mask`` ``(n_new, n_text_ctx + n_new)`` and ``store`` writes
    the new keys/values once every block is done. (Writing each block's slot before the next
    block reads makes MAX 26.7's compiler crash; writing last keeps one read and one write per
    buffer.)"""
    per_window = rows is not None
    x = embed_tokens(tokens, positions, p, dims)
    writes = []
    for i in range(dims.n_text_layer):
        k_buffer, v_buffer = caches[2 * i], caches[2 * i + 1]
        block = p.scope(f"decoder.blocks.{i}")
        # the self-attention kernel writes its cache itself; MAX ops return what to store
        cache = (k_buffer, v_buffer, offset) if per_window else None
        past = None if per_window else (ops.buffer_load(k_buffer), ops.buffer_load(v_buffer))
        x, new_k, new_v, _ = decoder_block(
            x, block, dims.n_text_head, cross[2 * i], cross[2 * i + 1], mask, past, rows, cache
        )
        if past is not None:
            writes.append((k_buffer, v_buffer, past, new_k, new_v))
    for write in writes:
        assert store is not None
        store(*write)
    return x


def build_decoder_step_graph(
    dims: ModelDimensions,
    dtype: DType,
    device: DeviceRef,
    row_dtype: DType | None = None,
    int8: bool = False,
    module: Module | None = None,
) -> Graph:
    """:class:`DecoderStepInputs` (window rows, per-window cross keys/values and caches in the
    rows layout with ``row_dtype``) -> logits ``(batch, n_logits, n_vocab)`` (float32)."""
    p = decoder_params(dims, dtype, device, row_dtype, int8)
    cap = dims.n_text_ctx
    per_window = row_dtype is not None
    with Graph(
        "whisper_decoder_step" + ("_int8" if int8 else ""),
        input_types=DecoderStepInputs.types(dims, dtype, device, per_window, int8),
        custom_extensions=extensions(row_dtype),
        module=module,
    ) as graph:
        inputs = DecoderStepInputs.from_list(list(graph.inputs), dims.n_text_layer, per_window)
        tokens = inputs.tokens.tensor
        offset = inputs.offset.tensor
        n_new = tokens.shape[1]
        x = decoder_forward(
            tokens,
            inputs.positions.tensor,
            p,
            dims,
            [v.tensor for v in inputs.cross],
            [v.buffer for v in inputs.caches],
            offset,
            ops.rebind(inputs.mask.tensor, [n_new, cap + n_new]),
            inputs.rows.tensor if inputs.rows is not None else None,
            None if per_window else store_at_host_offset(offset, n_new),
        )
        logit_positions = inputs.logit_positions.tensor
        graph.output(logits(ops.gather(x, logit_positions, axis=1), p, dims.n_vocab))
    return graph


def build_reorder_graph(
    dims: ModelDimensions,
    dtype: DType,
    device: DeviceRef,
    row_dtype: DType | None = None,
    module: Module | None = None,
) -> Graph:
    """source rows ``(batch,)`` then the cache buffers: row ``i`` becomes old row ``source[i]``
    (the caches in the step graph's layout for the same ``row_dtype``)."""
    caches = cache_types(dims, dtype, device, rows=row_dtype is not None)
    inputs = [TensorType(DType.int64, [BATCH], device=device), *caches]
    with Graph("whisper_cache_reorder", input_types=inputs, module=module) as graph:
        source = graph.inputs[0].tensor
        buffers = [v.buffer for v in graph.inputs[1:]]
        moved = [ops.gather(ops.buffer_load(b), source, axis=0) for b in buffers]
        for buffer, value in zip(buffers, moved, strict=True):
            ops.buffer_store(buffer, value)
        graph.output()
    return graph


def build_alignment_graph(
    dims: ModelDimensions,
    dtype: DType,
    device: DeviceRef,
    row_dtype: DType | None = None,
    int8: bool = False,
    module: Module | None = None,
) -> Graph:
    """tokens ``(1, n)``, positions ``(n,)``, causal mask ``(n, n)`` and one window's features ->
    logits ``(1, n, n_vocab)`` and cross-attention scores ``(layers, heads, n, n_audio_ctx)``
    (scaled, before softmax), in one uncached pass."""
    p = decoder_params(dims, dtype, device, row_dtype, int8)
    inputs = [
        TensorType(DType.int64, [1, N_NEW], device=device),
        TensorType(DType.int64, [N_NEW], device=device),
        TensorType(DType.float32, [N_NEW, N_NEW], device=device),
        TensorType(dtype, [1, dims.n_audio_ctx, dims.n_audio_state], device=device),
    ]
    with Graph(
        "whisper_alignment" + ("_int8" if int8 else ""),
        input_types=inputs,
        custom_extensions=extensions(row_dtype),
        module=module,
    ) as graph:
        tokens, positions, mask, xa = (v.tensor for v in graph.inputs)
        x = embed_tokens(tokens, positions, p, dims)
        scores = []
        for i in range(dims.n_text_layer):
            block = p.scope(f"decoder.blocks.{i}")
            cross_k, cross_v = cross_keys_values(xa, block, dims.n_text_head)
            x, _, _, cross_scores = decoder_block(
                x, block, dims.n_text_head, cross_k, cross_v, mask
            )
            scores.append(cross_scores[0])
        graph.output(logits(x, p, dims.n_vocab), ops.stack(scores))
    return graph


DECODER_BLOCK = "decoder_block"
"""The weight scope of :func:`build_decoder_block_graph`."""


def build_decoder_block_graph(
    dims: ModelDimensions,
    dtype: DType,
    device: DeviceRef,
    row_dtype: DType | None = None,
    module: Module | None = None,
) -> Graph:
    """One decoder block with full causal self-attention: x ``(batch, n, width)``, audio features
    ``(batch, n_audio_ctx, width)`` and the causal mask ``(n, n)`` -> x; weights as
    ``decoder_block.*`` (any layer's, see ``weight_mapping.select_block``)."""
    p = Params(dtype, device, row_dtype=row_dtype).scope(DECODER_BLOCK)
    inputs = [
        TensorType(dtype, [BATCH, N_NEW, dims.n_text_state], device=device),
        TensorType(dtype, [BATCH, dims.n_audio_ctx, dims.n_audio_state], device=device),
        TensorType(DType.float32, [N_NEW, N_NEW], device=device),
    ]
    with Graph(
        "whisper_decoder_block",
        input_types=inputs,
        custom_extensions=extensions(row_dtype),
        module=module,
    ) as graph:
        x, xa, mask = (v.tensor for v in graph.inputs)
        cross_k, cross_v = cross_keys_values(xa, p, dims.n_text_head)
        graph.output(decoder_block(x, p, dims.n_text_head, cross_k, cross_v, mask)[0])
    return graph
