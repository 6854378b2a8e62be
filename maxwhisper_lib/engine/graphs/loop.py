"""Greedy decoding with every token's work on the device: two graphs over state buffers.

* ``build_decode_start_graph``: a window's prompt ``(batch, n_prompt)`` through the decoder
  (cache from slot 0), the no-speech probability at ``<|startoftranscript|>``, the first greedy
  choice under the first step's mask; it resets the decode state below.
* ``build_decode_step_graph``: one token per sequence. It reads the last token and the cache
  length from the state, runs the decoder step, applies the logit filters with each sequence's
  timestamp-rule state (:mod:`.selection`), chooses greedily, keeps ended sequences at
  end-of-text, and writes the new token, the rule state, the summed log-probabilities and the
  length back in place. It takes no per-token input at all: the host calls (or, on a GPU,
  replays a captured copy of) the same graph with the same buffers, and reads the tokens back
  only now and then (:class:`maxwhisper_lib.engine.model.MaxDecoderSession`).

The state (:func:`state_types`), all on the model's device: the token history ``(batch,
n_text_ctx + 1)`` int64 (prompt first; the host writes it once per window), the history length
``(1,)`` int64 (the cache holds one position fewer), the rule state ``(batch, 3)``
(:data:`~.selection.RULE_STATE`) and the summed log-probabilities ``(batch,)`` float32.

On the CPU (row kernels) the self-attention kernel reads the cache length and writes its slot
itself. With MAX ops (the GPU) the step derives the position, the attention mask and the cache
writes from the length on the device (:func:`~.decoder.store_at_device_offset`), so that a
replay, which runs no host code, stays right.
"""

from __future__ import annotations

from max.dtype import DType
from max.graph import BufferType, DeviceRef, Graph, Module, TensorType, TensorValue, ops

from ...dims import ModelDimensions
from .decoder import (
    BATCH,
    N_NEW,
    cache_types,
    cross_types,
    decoder_forward,
    decoder_params,
    device_offset_mask,
    extensions,
    logits,
    store_at_device_offset,
    store_at_host_offset,
)
from .selection import SETTINGS, choose, first_rule_state, next_rule_state, row_rules, setting

STATE = ("history", "length", "rule_state", "sum_logprobs")
"""The decode state buffers, in the graphs' input order."""


def history_width(dims: ModelDimensions) -> int:
    """Columns of the token history: the decoder's context and the last token chosen."""
    return dims.n_text_ctx + 1


def state_types(dims: ModelDimensions, device: DeviceRef) -> list[BufferType]:
    """The :data:`STATE` buffers' types."""
    return [
        BufferType(DType.int64, [BATCH, history_width(dims)], device=device),
        BufferType(DType.int64, [1], device=device),
        BufferType(DType.int64, [BATCH, 3], device=device),
        BufferType(DType.float32, [BATCH], device=device),
    ]


def _fixed_types(dims: ModelDimensions, device: DeviceRef, per_window: bool) -> list[TensorType]:
    """A decode's fixed inputs: the mask ``(n_vocab,)``, the token ids ``0 .. n_vocab - 1``,
    :data:`~.selection.SETTINGS` and, on the CPU, each sequence's window ``(batch,)``."""
    return [
        TensorType(DType.float32, [dims.n_vocab], device=device),
        TensorType(DType.int64, [dims.n_vocab], device=device),
        TensorType(DType.int64, [len(SETTINGS)], device=device),
        *([TensorType(DType.int64, [BATCH], device=device)] if per_window else []),
    ]


def _take(
    history: TensorValue,
    length: TensorValue,
    chosen: TensorValue,
    logprobs: TensorValue,
    settings: TensorValue,
    ids: TensorValue,
) -> tuple[TensorValue, TensorValue, TensorValue, TensorValue]:
    """``GreedyDecoder.take``: sequences that had ended (last token end-of-text) keep emitting
    it and add nothing to their sum. Returns the tokens, the log-probabilities to add, the
    history with the tokens written at column ``length`` and the new length."""
    batch = history.shape[0]
    width = int(history.shape[1])
    eot = ops.reshape(setting(settings, "eot"), [1])
    last = ops.reshape(ops.gather(history, length - 1, axis=1), [batch])
    ended = last == eot
    tokens = ops.where(ended, ops.broadcast_to(eot, [batch]), chosen)
    added = ops.where(ended, ops.constant(0.0, DType.float32, device=logprobs.device), logprobs)
    at = ops.reshape(ids[:width], [1, width]) == ops.reshape(length, [1, 1])
    history = ops.where(at, ops.reshape(tokens, [batch, 1]), history)
    one = ops.constant(1, DType.int64, device=length.device)
    return tokens, added, history, length + one


def _unpack(inputs, n_extra: int, dims: ModelDimensions, per_window: bool) -> tuple:
    """A loop graph's inputs in their groups: the four state buffers, the fixed tensors (mask,
    token ids, settings, and the rows where there are per-window ones), ``n_extra`` tensors
    of the graph's own, and (cross keys/values, cache buffers)."""
    values = list(inputs)
    n_fixed = 4 if per_window else 3
    state = tuple(v.buffer for v in values[:4])
    fixed = [v.tensor for v in values[4 : 4 + n_fixed]]
    extra = [v.tensor for v in values[4 + n_fixed : 4 + n_fixed + n_extra]]
    rest = values[4 + n_fixed + n_extra :]
    cross = [v.tensor for v in rest[: 2 * dims.n_text_layer]]
    caches = [v.buffer for v in rest[2 * dims.n_text_layer :]]
    return state, fixed, extra, (cross, caches)


def build_decode_start_graph(
    dims: ModelDimensions,
    dtype: DType,
    device: DeviceRef,
    row_dtype: DType | None = None,
    int8: bool = False,
    module: Module | None = None,
) -> Graph:
    """The state buffers (:func:`state_types`; the history holds the prompt, the length is its
    length), the first step's mask, the token ids, the settings (rows on the CPU), the prompt's
    positions ``(n_new,)``, its causal mask ``(n_new, n_text_ctx + n_new)``, the position of
    ``<|startoftranscript|>`` and of the prompt's last token ``(2,)``, cross keys/values and
    the cache buffers -> the no-speech probability ``(batch,)`` float32 (NaN without a no-speech token); the state now holds the
    first sampled token."""
    p = decoder_params(dims, dtype, device, row_dtype, int8)
    per_window = row_dtype is not None
    cap = dims.n_text_ctx
    inputs = [
        *state_types(dims, device),
        *_fixed_types(dims, device, per_window),
        TensorType(DType.int64, [N_NEW], device=device),
        TensorType(DType.float32, [N_NEW, "n_visible"], device=device),
        TensorType(DType.int64, [2], device=device),
        *cross_types(dims, dtype, device, per_window, int8),
        *cache_types(dims, dtype, device, rows=per_window),
    ]
    with Graph(
        "whisper_decode_start" + ("_int8" if int8 else ""),
        input_types=inputs,
        custom_extensions=extensions(row_dtype),
        module=module,
    ) as graph:
        (history_buffer, length_buffer, state_buffer, sum_buffer), fixed, prompt_inputs, rest = (
            _unpack(graph.inputs, 3, dims, per_window)
        )
        mask, ids, settings, *rows = fixed
        positions, causal, logit_positions = prompt_inputs
        cross, caches = rest
        n_new = positions.shape[0]
        history = ops.buffer_load(history_buffer)
        length = ops.buffer_load(length_buffer)
        prompt = history[:, (slice(0, ops.shape_to_tensor([n_new]).reshape([])), n_new)]
        zero = ops.constant(0, DType.int64, device=DeviceRef.CPU())
        x = decoder_forward(
            prompt,
            positions,
            p,
            dims,
            cross,
            caches,
            zero,
            ops.rebind(causal, [n_new, cap + n_new]),
            rows[0] if rows else None,
            None if per_window else store_at_host_offset(zero, n_new),
        )
        out = logits(ops.gather(x, logit_positions, axis=1), p, dims.n_vocab)
        chosen, logprobs = choose(out[:, 1], mask, None, ids, settings)
        tokens, added, history, length = _take(history, length, chosen, logprobs, settings, ids)
        ops.buffer_store(history_buffer, history)
        ops.buffer_store(length_buffer, length)
        ops.buffer_store(state_buffer, first_rule_state(tokens, dims.n_vocab))
        ops.buffer_store(sum_buffer, added)
        graph.output(_no_speech_probability(out[:, 0], settings, ids))
    return graph


def _no_speech_probability(x: TensorValue, settings: TensorValue, ids: TensorValue) -> TensorValue:
    """softmax(x)[no_speech] per row of ``x (batch, n_vocab)``; NaN where there is no such token."""
    n_vocab = int(x.shape[-1])
    top = ops.max(x, axis=-1)
    weights = ops.exp(x - top)
    at = ops.reshape(ids, [1, n_vocab]) == setting(settings, "no_speech")
    zero = ops.constant(0.0, DType.float32, device=x.device)
    probability = ops.sum(ops.where(at, weights, zero), axis=-1) / ops.sum(weights, axis=-1)
    nan = ops.constant(float("nan"), DType.float32, device=x.device)
    has = ops.reshape(setting(settings, "no_speech") >= 0, [1, 1])
    return ops.reshape(ops.where(has, probability, nan), [x.shape[0]])


def build_decode_step_graph(
    dims: ModelDimensions,
    dtype: DType,
    device: DeviceRef,
    row_dtype: DType | None = None,
    int8: bool = False,
    module: Module | None = None,
) -> Graph:
    """The state buffers, the later steps' mask, the token ids, the settings (rows on the CPU),
    cross keys/values and the cache buffers -> the tokens chosen ``(batch,)`` int64 (end-of-text
    for ended sequences), also written into the state with everything they change."""
    p = decoder_params(dims, dtype, device, row_dtype, int8)
    per_window = row_dtype is not None
    inputs = [
        *state_types(dims, device),
        *_fixed_types(dims, device, per_window),
        *cross_types(dims, dtype, device, per_window, int8),
        *cache_types(dims, dtype, device, rows=per_window),
    ]
    with Graph(
        "whisper_decode_step" + ("_int8" if int8 else ""),
        input_types=inputs,
        custom_extensions=extensions(row_dtype),
        module=module,
    ) as graph:
        (history_buffer, length_buffer, state_buffer, sum_buffer), fixed, _, rest = _unpack(
            graph.inputs, 0, dims, per_window
        )
        mask, ids, settings, *rows = fixed
        cross, caches = rest
        history = ops.buffer_load(history_buffer)
        length = ops.buffer_load(length_buffer)
        state = ops.buffer_load(state_buffer)
        offset = length - 1  # (1,): the position of the token fed now
        slot_ids = ids[: dims.n_text_ctx]
        x = decoder_forward(
            ops.gather(history, offset, axis=1),
            offset,
            p,
            dims,
            cross,
            caches,
            offset,
            None if per_window else device_offset_mask(offset, slot_ids),
            rows[0] if rows else None,
            None if per_window else store_at_device_offset(offset, slot_ids),
        )
        out = ops.reshape(logits(x, p, dims.n_vocab), [history.shape[0], dims.n_vocab])
        chosen, logprobs = choose(out, mask, row_rules(state, settings), ids, settings)
        tokens, added, history, length = _take(history, length, chosen, logprobs, settings, ids)
        ops.buffer_store(history_buffer, history)
        ops.buffer_store(length_buffer, length)
        ops.buffer_store(state_buffer, next_rule_state(state, tokens, dims.n_vocab))
        ops.buffer_store(sum_buffer, ops.buffer_load(sum_buffer) + added)
        graph.output(tokens)
    return graph


__all__ = [
    "STATE",
    "build_decode_start_graph",
    "build_decode_step_graph",
    "history_width",
    "state_types",
]
