"""Greedy token choice on the device: openai-whisper's logit filters and the argmax in a graph.

On a GPU every decoder step's logits (batch x n_vocab floats) would otherwise travel to the host
for the filters and the choice of the next token: one synchronisation and copy per step. This
graph takes the step's logits where they are and returns only the chosen tokens and their
log-probabilities. What depends on the tokens so far is decided on the host, which knows them
(a few integers per sequence, :meth:`maxwhisper_lib.decoding.LogitFilters.row_rules`); what
is fixed for a decode is an additive mask uploaded once
(:meth:`~maxwhisper_lib.decoding.LogitFilters.masks`). The arithmetic follows the host path
(``LogitFilters.apply`` then ``GreedyDecoder.update`` at temperature 0):

1. ``x = logits + mask`` (suppressed tokens, blank at the first step, ``<|notimestamps|>``, the
   first step's timestamp rules);
2. per sequence: timestamps blocked after a closed pair, text (ids below end-of-text) blocked
   while a pair is open, timestamps before the last one blocked;
3. where the timestamp rules are on: if the timestamps' total probability outweighs the likeliest
   text token, every non-timestamp token is blocked;
4. the next token is the argmax, its log-probability ``max - logsumexp``.
"""

from __future__ import annotations

from max.dtype import DType
from max.graph import DeviceRef, Graph, Module, TensorType, TensorValue, ops

RULE_COLUMNS = ("block_timestamps", "block_text", "first_timestamp", "mass_rule", "begin", "eot")
"""Per-sequence integers of the ``rules`` input, in this order: block every timestamp (0/1),
block every text token (0/1), the first timestamp token still allowed, the timestamp-mass rule
on (0/1), the first timestamp token id and the end-of-text id."""
BATCH = "batch"
_LOWEST = -3.0e38  # below any finite float32 logit: "is this maximum finite?"


def _logsumexp(x: TensorValue) -> TensorValue:
    """``log(sum(exp(x)))`` over the last axis (kept), ``-inf`` where a row has no finite entry."""
    top = ops.max(x, axis=-1)
    top = ops.where(top > _LOWEST, top, ops.constant(0.0, DType.float32, device=top.device))
    return ops.log(ops.sum(ops.exp(x - top), axis=-1)) + top


def build_greedy_select_graph(
    n_vocab: int, device: DeviceRef, module: Module | None = None
) -> Graph:
    """float32 logits ``(batch, 1, n_vocab)`` (the decoder step's output, float32 whatever the
    model's dtype), an additive float32 mask
    ``(n_vocab,)``, rules ``(batch, 6)`` int64 (:data:`RULE_COLUMNS`) and the token ids
    ``0 .. n_vocab - 1`` ``(n_vocab,)`` int64 -> next tokens ``(batch,)`` int64 and their
    log-probabilities ``(batch,)`` float32.

    The ids come in as an input (uploaded once) rather than from ``ops.range``: MAX 26.7's CPU
    fusion has dropped masks computed in a graph from ``ops.range`` (see ``layers.decoder_block``).
    """
    inputs = [
        TensorType(DType.float32, [BATCH, 1, n_vocab], device=device),
        TensorType(DType.float32, [n_vocab], device=device),
        TensorType(DType.int64, [BATCH, len(RULE_COLUMNS)], device=device),
        TensorType(DType.int64, [n_vocab], device=device),
    ]
    with Graph("whisper_greedy_select", input_types=inputs, module=module) as graph:
        logits, mask, rules, ids = (value.tensor for value in graph.inputs)
        x = ops.reshape(logits, [BATCH, n_vocab]) + mask
        minus_inf = ops.constant(float("-inf"), DType.float32, device=device)
        ids = ops.reshape(ids, [1, n_vocab])

        def column(name: str) -> TensorValue:
            index = RULE_COLUMNS.index(name)
            return rules[:, index : index + 1]  # (batch, 1)

        is_timestamp = ids >= column("begin")
        is_text = ids < column("eot")
        blocked = ops.logical_or(
            ops.logical_and(column("block_timestamps") > 0, is_timestamp),
            ops.logical_and(column("block_text") > 0, is_text),
        )
        blocked = ops.logical_or(
            blocked, ops.logical_and(is_timestamp, ids < column("first_timestamp"))
        )
        x = ops.where(blocked, minus_inf, x)
        timestamp_mass = _logsumexp(ops.where(is_timestamp, x, minus_inf))
        best_text = ops.max(ops.where(is_timestamp, minus_inf, x), axis=-1)
        timestamp_wins = ops.logical_and(column("mass_rule") > 0, timestamp_mass > best_text)
        x = ops.where(ops.logical_and(timestamp_wins, ops.logical_not(is_timestamp)), minus_inf, x)
        top = ops.max(x, axis=-1)
        tokens = ops.reshape(ops.argmax(x, axis=-1), [BATCH])
        logprobs = ops.reshape(top - _logsumexp(x), [BATCH])
        graph.output(tokens, logprobs)
    return graph


__all__ = ["RULE_COLUMNS", "build_greedy_select_graph"]
