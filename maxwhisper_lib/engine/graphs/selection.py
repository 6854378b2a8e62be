"""Greedy token choice in a graph: openai-whisper's logit filters, their per-sequence state and
the argmax, as operations the decoding-loop graphs (:mod:`.loop`) run after each decoder step.

The arithmetic follows the host path (``LogitFilters.apply`` then ``GreedyDecoder.update`` at
temperature 0):

1. ``x = logits + mask`` (suppressed tokens, blank at the first step, ``<|notimestamps|>``, the
   first step's timestamp rules: :meth:`maxwhisper_lib.decoding.decode.LogitFilters.masks`);
2. per sequence: timestamps blocked after a closed pair, text (ids below end-of-text) blocked
   while a pair is open, timestamps before the last one blocked (:func:`row_rules`);
3. where the timestamp rules are on: if the timestamps' total probability outweighs the likeliest
   text token, every non-timestamp token is blocked;
4. the next token is the argmax, its log-probability ``max - logsumexp``.

What the rules need of the tokens so far is three integers per sequence, the rule state
(:data:`RULE_STATE`), updated on the device after each choice (:func:`next_rule_state`), so the
host never looks at the tokens while decoding. Everything here is integer logic or float32.
"""

from __future__ import annotations

from max.dtype import DType
from max.graph import TensorValue, ops

RULE_STATE = ("last_timestamp", "penultimate_timestamp", "last_timestamp_token")
"""Per-sequence integers ``(batch, 3)`` the timestamp rules read: whether the last and the
penultimate sampled tokens are timestamps (0/1; before the second token the penultimate counts
as one, as openai-whisper has it) and the last timestamp token sampled (0: none yet)."""
SETTINGS = ("eot", "timestamp_rules", "no_speech")
"""A decode's fixed integers ``(3,)`` int64: the end-of-text id, the timestamp rules on (0/1)
and the no-speech token id (-1: none)."""
N_TIMESTAMPS = 1501
"""Whisper's timestamp tokens ``<|0.00|> .. <|30.00|>``, the last ids of every vocabulary."""
_LOWEST = -3.0e38  # below any finite float32 logit: "is this maximum finite?"


def timestamp_begin(n_vocab: int) -> int:
    """The first timestamp token of a vocabulary of ``n_vocab`` tokens."""
    return n_vocab - N_TIMESTAMPS


def setting(settings: TensorValue, name: str) -> TensorValue:
    """One of :data:`SETTINGS` as a ``(1, 1)`` tensor (broadcasts against ``(batch, n_vocab)``)."""
    index = SETTINGS.index(name)
    return ops.reshape(settings[index : index + 1], [1, 1])


def _column(state: TensorValue, name: str) -> TensorValue:
    index = RULE_STATE.index(name)
    return state[:, index : index + 1]  # (batch, 1)


def _finite_max(x: TensorValue) -> TensorValue:
    """The maximum over the last axis (kept), 0 where a row has no finite entry."""
    top = ops.max(x, axis=-1)
    return ops.where(top > _LOWEST, top, ops.constant(0.0, DType.float32, device=top.device))


def _sum_exp(x: TensorValue, top: TensorValue) -> TensorValue:
    return ops.sum(ops.exp(x - top), axis=-1)


def row_rules(state: TensorValue, settings: TensorValue) -> dict[str, TensorValue]:
    """The timestamp rules of each sequence from its :data:`RULE_STATE`, each ``(batch, 1)``:
    ``block_timestamps`` (a pair just closed), ``block_text`` (a pair is open) and
    ``first_timestamp`` (the first timestamp token still allowed; 0: any), all off where the
    timestamp rules are."""
    on = setting(settings, "timestamp_rules") > 0
    last = ops.logical_and(_column(state, "last_timestamp") > 0, on)
    penultimate = _column(state, "penultimate_timestamp") > 0
    last_token = _column(state, "last_timestamp_token")
    open_pair = ops.logical_and(last, ops.logical_not(penultimate))
    one = ops.constant(1, DType.int64, device=state.device)
    zero = ops.constant(0, DType.int64, device=state.device)
    # the last timestamp again only to close its pair; after a pair, a later one
    first = ops.where(open_pair, last_token, last_token + one)
    first = ops.where(ops.logical_and(last_token > zero, on), first, zero)
    return {
        "block_timestamps": ops.logical_and(last, penultimate),
        "block_text": open_pair,
        "first_timestamp": first,
    }


def choose(
    logits: TensorValue,
    mask: TensorValue,
    rules: dict[str, TensorValue] | None,
    ids: TensorValue,
    settings: TensorValue,
) -> tuple[TensorValue, TensorValue]:
    """float32 ``logits (batch, n_vocab)``, the additive ``mask (n_vocab,)``, :func:`row_rules`
    (None: the first sampled token, which no pair rule constrains), the token ids
    ``(n_vocab,)`` and :data:`SETTINGS` -> the greedy tokens ``(batch,)`` int64 and their
    log-probabilities ``(batch,)`` float32.

    Text (ids below the timestamps) and timestamps are handled as the two slices they are, so
    that the full vocabulary is read three times (the best text token, its position, the sum of
    exponentials), as the host's NumPy does. The ids come in as an input (uploaded once) rather
    than from ``ops.range``: MAX 26.7's CPU fusion has dropped masks computed in a graph from
    ``ops.range`` (see ``layers.decoder_block``).
    """
    n_vocab = int(logits.shape[-1])
    begin = timestamp_begin(n_vocab)
    batch = logits.shape[0]
    device = logits.device
    minus_inf = ops.constant(float("-inf"), DType.float32, device=device)
    x = logits + mask
    text, stamps = x[:, :begin], x[:, begin:]
    if rules is not None:
        text_ids, stamp_ids = ops.reshape(ids[:begin], [1, begin]), ids[begin:]
        stamp_ids = ops.reshape(stamp_ids, [1, N_TIMESTAMPS])
        text_blocked = ops.logical_and(rules["block_text"], text_ids < setting(settings, "eot"))
        text = ops.where(text_blocked, minus_inf, text)
        stamps_blocked = ops.logical_or(
            rules["block_timestamps"], stamp_ids < rules["first_timestamp"]
        )
        stamps = ops.where(stamps_blocked, minus_inf, stamps)
    best_text = ops.max(text, axis=-1)
    top_stamp = _finite_max(stamps)
    stamp_mass = ops.log(_sum_exp(stamps, top_stamp)) + top_stamp  # -inf if all are blocked
    # a timestamp whenever all timestamps together outweigh the likeliest text token
    stamp_wins = ops.logical_and(setting(settings, "timestamp_rules") > 0, stamp_mass > best_text)
    best_stamp = ops.max(stamps, axis=-1)
    # the first maximal id, as NumPy's argmax: text before timestamps
    stamp_first = ops.logical_or(stamp_wins, best_stamp > best_text)
    offset = ops.constant(begin, DType.int64, device=device)
    token = ops.where(stamp_first, ops.argmax(stamps, axis=-1) + offset, ops.argmax(text, axis=-1))
    top = _finite_max(ops.concat([best_text, best_stamp], axis=-1))
    everything = ops.log(_sum_exp(text, top) + _sum_exp(stamps, top)) + top
    # where the timestamps win, the text is out: the timestamps' own sum is the whole
    logprob = ops.where(stamp_wins, best_stamp - stamp_mass, top - everything)
    return ops.reshape(token, [batch]), ops.reshape(logprob, [batch])


def _is_timestamp(tokens: TensorValue, n_vocab: int) -> TensorValue:
    return tokens >= ops.constant(timestamp_begin(n_vocab), DType.int64, device=tokens.device)


def first_rule_state(tokens: TensorValue, n_vocab: int) -> TensorValue:
    """The :data:`RULE_STATE` after the first sampled ``tokens (batch,)``."""
    is_timestamp = _is_timestamp(tokens, n_vocab)
    ones = ops.broadcast_to(ops.constant(1, DType.int64, device=tokens.device), tokens.shape)
    return _stack_state(
        is_timestamp,
        ones,
        tokens,
        ops.broadcast_to(ops.constant(0, DType.int64, device=tokens.device), tokens.shape),
    )


def next_rule_state(state: TensorValue, tokens: TensorValue, n_vocab: int) -> TensorValue:
    """The :data:`RULE_STATE` after ``tokens (batch,)`` followed ``state``."""
    is_timestamp = _is_timestamp(tokens, n_vocab)
    batch = tokens.shape[0]
    last = ops.reshape(_column(state, "last_timestamp"), [batch])
    last_token = ops.reshape(_column(state, "last_timestamp_token"), [batch])
    return _stack_state(is_timestamp, last, tokens, last_token)


def _stack_state(
    is_timestamp: TensorValue, penultimate: TensorValue, tokens: TensorValue, previous: TensorValue
) -> TensorValue:
    """``(batch, 3)`` from the new token's timestamp flag, the penultimate flag and the new
    last timestamp token (``tokens`` where a timestamp, else ``previous``)."""
    return ops.stack(
        [
            ops.cast(is_timestamp, DType.int64),
            penultimate,
            ops.where(is_timestamp, tokens, previous),
        ],
        axis=1,
    )


__all__ = [
    "N_TIMESTAMPS",
    "RULE_STATE",
    "SETTINGS",
    "choose",
    "first_rule_state",
    "next_rule_state",
    "row_rules",
    "setting",
    "timestamp_begin",
]
